package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/web"
	"github.com/hcxfed/hcx/witness"
	"golang.org/x/term"
)

// errFindings makes hcx audit exit non-zero when the log has findings.
var errFindings = errors.New("the audit has findings (see the report)")

// maxGossipBytes bounds one gossiped checkpoint note.
const maxGossipBytes = 64 << 10

// runAudit is `hcx audit`: the national auditor (issue 13). It reads the
// hub's log from every member with an auditor certificate, verifies it
// (package audit) and prints a report; --watch keeps following and serves
// the findings as metrics.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hubs := fs.String("hub", "", "comma-separated hub member URLs, such as http://127.0.0.1:8700,http://127.0.0.1:8701")
	cert := fs.String("cert", "", "the auditor's certificate (PEM)")
	key := fs.String("key", "", "the auditor's private key (PEM)")
	root := fs.String("root", "", "the national root certificate to pin (PEM)")
	dev := fs.String("dir", "", "instead of --cert/--key/--root: the data directory of hcx dev, whose CA holds an auditor certificate")
	hubCA := fs.String("hub-ca", "", "the TLS root the hub members' certificates chain to (https hubs)")
	stateDir := fs.String("state", "hcx-audit", "the auditor's own store: a restart resumes where it stopped")
	gossip := fs.String("gossip", "", "comma-separated files or URLs of signed checkpoint notes seen by other auditors or nodes")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	watch := fs.Duration("watch", 0, "keep following the log, auditing again at this interval (such as 10s)")
	metrics := fs.String("metrics", "127.0.0.1:9470", "with --watch: address of the listener of /metrics, /healthz, the findings (GET /v1/findings, the page /app/) and the auditor's witness (POST /v1/witness/add-checkpoint, for hub members: point hcx hub --witness at http://ADDR/v1/witness)")
	logOpts := addLogFlags(fs)
	trails := trailFlags{}
	fs.Var(&trails, "trail", "CODE=URL: check province CODE's operator trail, read from its node at URL, against the trail heads it logged (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: hcx audit --hub URLS (--cert C --key K --root R | --dir DEVDIR) [flags]\n\nVerifies the hub's log: every envelope against the trust list in force at its\nindex, issuer sequences, per-subject n, every member's signed checkpoint and\nthe consistency of all checkpoints seen (split views), and with --trail the\noperator trails of provinces against the heads they logged. Exits 1 on findings.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: see hcx audit -h", fs.Arg(0))
	}
	if *hubs == "" {
		return errors.New("hcx audit needs --hub, the hub member URLs (hcx dev prints them)")
	}
	urls := strings.Split(*hubs, ",")
	if err := checkHubURLs(urls, *hubCA != "", false); err != nil {
		return err
	}
	signer, rootDER, err := auditIdentity(*dev, *cert, *key, *root)
	if err != nil {
		return err
	}
	var hc *http.Client
	if *hubCA != "" {
		anchor, err := certs.ReadTLSRoot(*hubCA)
		if err != nil {
			return fmt.Errorf("--hub-ca: %w", err)
		}
		hc = hubHTTPClient(certs.ClientTLSFrom(anchor, "", nil))
	}
	// A single pass logs only what goes wrong (its report is on stdout);
	// --watch runs as a service and logs at INFO.
	logger, err := logOpts.logger(stderr, *watch <= 0)
	if err != nil {
		return err
	}
	cfg := audit.Config{
		Hub:    exchange.NewHubClient(urls, hc).SignWith(signer, nil),
		Logger: logger,
		Trails: trails.sources(hc, signer),
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = func(done, total uint64) { fmt.Fprintf(stderr, "\raudited %d of %d leaves", done, total) }
	}
	if *gossip != "" {
		if cfg.Gossip, err = readGossip(ctx, strings.Split(*gossip, ",")); err != nil {
			return err
		}
	}
	v, err := audit.OpenVerifier(*stateDir, rootDER)
	if err != nil {
		return err
	}
	defer v.Close()
	if *watch <= 0 {
		rep, err := audit.Run(ctx, cfg, v)
		if cfg.Progress != nil {
			fmt.Fprintln(stderr)
		}
		if rep != nil {
			printAuditReport(stdout, rep, *asJSON)
		}
		if err != nil {
			return err
		}
		if len(rep.Findings) > 0 {
			return errFindings
		}
		return nil
	}
	return watchAudit(ctx, cfg, v, signer, *watch, *metrics, stdout, *asJSON)
}

// trailFlags are the --trail CODE=URL values: a province's node, by code.
type trailFlags map[hcx.ProvinceCode]string

func (t trailFlags) String() string {
	var out []string
	for p, u := range t {
		out = append(out, string(p)+"="+u)
	}
	return strings.Join(out, ",")
}

// Set reads one CODE=URL, refusing a code that is not a province's, a URL
// that is not absolute http(s), and a province given twice.
func (t trailFlags) Set(v string) error {
	code, u, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q: want CODE=URL, such as 440000=http://127.0.0.1:8801", v)
	}
	p := hcx.ProvinceCode(code)
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%q: CODE: %v", v, err)
	}
	if pu, err := url.Parse(u); err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
		return fmt.Errorf("%q: URL: want the node's base URL, such as http://127.0.0.1:8801", v)
	}
	if _, dup := t[p]; dup {
		return fmt.Errorf("%q: province %s is given twice", v, p)
	}
	t[p] = u
	return nil
}

// sources are the trails to read, each with the auditor's request tokens,
// over hc's transport if set.
func (t trailFlags) sources(hc *http.Client, s *certs.Signer) map[hcx.ProvinceCode]audit.TrailSource {
	if len(t) == 0 {
		return nil
	}
	var base http.RoundTripper
	if hc != nil {
		base = hc.Transport
	}
	c := &http.Client{Timeout: 60 * time.Second, Transport: &auth.SigningTransport{Base: base, Signer: s}}
	out := map[hcx.ProvinceCode]audit.TrailSource{}
	for p, u := range t {
		out[p] = &audit.TrailClient{Base: u, HTTP: c}
	}
	return out
}

// auditIdentity is the auditor's signer and the pinned root, from files or
// from hcx dev's CA.
func auditIdentity(dev, cert, key, root string) (*certs.Signer, []byte, error) {
	if dev != "" {
		if cert != "" || key != "" || root != "" {
			return nil, nil, errors.New("give either --dir or --cert, --key and --root, not both")
		}
		ca, err := certs.OpenCA(filepath.Join(dev, "ca"))
		if err != nil {
			return nil, nil, fmt.Errorf("no dev CA in %s: start hcx dev first (or give --dir): %w", dev, err)
		}
		s, err := ca.LoadCurrent("auditor", time.Now())
		if err != nil {
			return nil, nil, fmt.Errorf("the dev auditor certificate: %w", err)
		}
		return s, ca.Root().Cert.Raw, nil
	}
	var missing []string
	for name, v := range map[string]string{"cert": cert, "key": key, "root": root} {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("hcx audit needs %s (or --dir of hcx dev)", strings.Join(missing, ", "))
	}
	s, err := certs.LoadSigner(cert, key)
	if err != nil {
		return nil, nil, fmt.Errorf("auditor certificate: %w", err)
	}
	if s.Role != certs.RoleAuditor {
		return nil, nil, fmt.Errorf("--cert is a %s certificate; the hub serves its log to an auditor certificate", s.Role)
	}
	rc, err := certs.ReadCert(root)
	if err != nil {
		return nil, nil, fmt.Errorf("national root: %w", err)
	}
	return s, rc.Raw, nil
}

// readGossip reads checkpoint notes from files or http(s) URLs, each at
// most maxGossipBytes.
func readGossip(ctx context.Context, srcs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, src := range srcs {
		var rd io.ReadCloser
		if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
			if err != nil {
				return nil, fmt.Errorf("--gossip %s: %w", src, err)
			}
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				return nil, fmt.Errorf("--gossip %s: %w", src, err)
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				return nil, fmt.Errorf("--gossip %s: answered %s", src, resp.Status)
			}
			rd = resp.Body
		} else {
			f, err := os.Open(src)
			if err != nil {
				return nil, fmt.Errorf("--gossip: %w", err)
			}
			rd = f
		}
		b, err := io.ReadAll(io.LimitReader(rd, maxGossipBytes+1))
		rd.Close()
		if err != nil {
			return nil, fmt.Errorf("--gossip %s: %w", src, err)
		}
		if len(b) > maxGossipBytes {
			return nil, fmt.Errorf("--gossip %s: over %d bytes, not a checkpoint note", src, maxGossipBytes)
		}
		out[src] = b
	}
	return out, nil
}

func printAuditReport(w io.Writer, rep *audit.Report, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return
	}
	fmt.Fprintf(w, "audited leaves %d..%d (root %s), %d signed checkpoints\n", rep.Start, rep.Size, rep.Root, rep.Checkpoints)
	for _, p := range rep.Trails {
		fmt.Fprintf(w, "checked the operator trail of %s\n", p)
	}
	for _, m := range rep.Unreachable {
		fmt.Fprintf(w, "unreachable: %s\n", m)
	}
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "FINDING %s\n", f)
		for _, n := range f.Notes {
			fmt.Fprintf(w, "  note:\n    %s\n", strings.ReplaceAll(strings.TrimSpace(n), "\n", "\n    "))
		}
	}
	if rep.Dropped > 0 {
		fmt.Fprintf(w, "... and %d more findings\n", rep.Dropped)
	}
	if len(rep.Findings) == 0 {
		fmt.Fprintln(w, "no findings")
	}
}

// watchAudit audits every interval and serves the totals at /metrics
// (auditMetrics, in the watcher's own registry) and /healthz, the findings
// over its passes at GET /v1/findings and on its pages under /app/
// (auditFindings), and is a witness of the hub with the auditor's key
// (auditWitness).
func watchAudit(ctx context.Context, cfg audit.Config, v *audit.Verifier, signer *certs.Signer, every time.Duration, addr string, stdout io.Writer, asJSON bool) error {
	wit, err := witness.New(witness.Config{Signer: signer, Store: v.WitnessStore(), Logger: cfg.Logger,
		LogKeys: func(at time.Time) []*ecdsa.PublicKey { return exchange.HubKeys(v.Trust(), at) }})
	if err != nil {
		return err
	}
	m := newAuditMetrics(wit)
	found, err := openAuditFindings(v, wit, cfg.Logger)
	if err != nil {
		return err
	}
	defer found.save()
	pages, err := web.NewWatch(web.WatchConfig{Logger: cfg.Logger, State: func() web.WatchState {
		st, _ := found.state(audit.MaxHistory)
		return st
	}})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var lastErr error
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", api.MetricsHandler(m.reg, cfg.Logger))
	mux.HandleFunc("GET /v1/findings", found.serveJSON)
	mux.Handle(web.Prefix, pages)
	mux.Handle("POST /v1/witness/add-checkpoint", auditWitness(wit, v, cfg.Logger))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if lastErr != nil {
			http.Error(w, "the last audit pass failed: "+lastErr.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics %s: %w", addr, err)
	}
	srv := api.NewServer(api.AccessLog(mux, cfg.Logger), api.ServerTimeouts{ReadHeader: 5 * time.Second, Write: 10 * time.Second})
	go srv.Serve(ln)
	defer srv.Close()
	cfg.Logger.Info("auditing; metrics at /metrics", "addr", ln.Addr().String(), "every", every)
	for {
		start := time.Now()
		rep, err := audit.Run(ctx, cfg, v)
		if ctx.Err() != nil {
			return nil
		}
		m.pass.Observe(time.Since(start).Seconds())
		found.record(start, time.Since(start), rep, err)
		mu.Lock()
		lastErr = err
		mu.Unlock()
		m.runs.Inc()
		if err != nil {
			m.failures.Inc()
		}
		if rep != nil {
			m.size.Set(float64(rep.Size))
			for _, f := range rep.Findings {
				m.findings.WithLabelValues(f.Kind).Inc() // f.Kind is one of audit.Kinds
			}
		}
		if err != nil {
			cfg.Logger.Error("audit pass failed; trying again", "err", err, "retry_in", every)
		}
		if rep != nil && len(rep.Findings) > 0 {
			printAuditReport(stdout, rep, asJSON)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// auditWitness serves the auditor's witness (C2SP tlog-witness
// add-checkpoint) to hub members: a caller proves it is one with a request
// token signed by a hub certificate of the trust list the auditor has
// verified, and is named after it in the witness's log and conflicts (the
// member that showed another history is the one named).
func auditWitness(wit *witness.Witness, v *audit.Verifier, log *slog.Logger) http.Handler {
	authn := &auth.RequestTokens{Trust: v.Trust, Replay: auth.NewReplayCache(0), MaxBody: witness.MaxRequestBody}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := authn.Authenticate(r)
		switch {
		case err != nil:
		case p == nil:
			err = hcx.Errorf(hcx.EUnauthorized, "unauthenticated", "a witness takes checkpoints from hub members only: sign the request with a hub member's request token")
		case p.Role != auth.RoleHub:
			err = hcx.Errorf(hcx.EForbidden, "forbidden_role", "a witness takes checkpoints from hub members only, not from a %s certificate", p.Role)
		}
		if err != nil {
			api.WriteError(w, log, err)
			return
		}
		wit.ServeAdd(w, r, "hub member "+p.Name)
	})
}
