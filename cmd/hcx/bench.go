package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// benchScenarios are the loads hcx bench knows, in the order "all" runs them.
var benchScenarios = []string{"verify", "batch", "issue", "feed"}

// benchMaxDuration bounds one scenario: the codes fetched in setup are
// dynamic 60-second codes, so a longer scenario would measure expiry.
const benchMaxDuration = 50 * time.Second

// benchOpts are hcx bench's flags.
type benchOpts struct {
	dir, node, checkpointNode string
	province, checkpointProv  hcx.ProvinceCode
	scenario                  string
	duration, baseline        time.Duration
	workers, residents, batch int
	feedLines                 int
	rate                      float64
	json                      bool
}

// runBench is `hcx bench`: it loads a running federation (normally hcx dev)
// from this second process and prints throughput, latency percentiles and
// errors per scenario, beside the raw SM2 rates measured just before.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("hcx bench", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var o benchOpts
	var prov, cpProv string
	flags.StringVar(&o.dir, "dir", "hcx-data", "data directory of the running hcx dev (its CA and identity provider)")
	flags.StringVar(&o.node, "node", "http://127.0.0.1:8744", "the issuing province's node (residents, codes, feed)")
	flags.StringVar(&prov, "province", "440000", "the issuing node's province")
	flags.StringVar(&o.checkpointNode, "checkpoint-node", "http://127.0.0.1:8751", "the node the checkpoint verifies at")
	flags.StringVar(&cpProv, "checkpoint-province", "510000", "that node's province (the checkpoint certificate is checkpoint-<code>)")
	flags.StringVar(&o.scenario, "scenario", "all", "verify, batch, issue, feed or all")
	flags.DurationVar(&o.duration, "duration", 10*time.Second, "how long each scenario runs (at most 50s: codes live 60s)")
	flags.DurationVar(&o.baseline, "baseline", 2*time.Second, "how long each raw SM2 baseline (verify, sign) runs")
	flags.IntVar(&o.workers, "workers", 2*runtime.GOMAXPROCS(0), "concurrent requests")
	flags.IntVar(&o.residents, "residents", 40, "residents made in setup (each a session; a resident may fetch 5 codes/s)")
	flags.IntVar(&o.batch, "batch", 1000, "codes per batch request")
	flags.IntVar(&o.feedLines, "feed-lines", 100, "lab records per feed request")
	flags.Float64Var(&o.rate, "rate", 0, "open loop: start this many requests per second (0: closed loop, each worker sends when answered)")
	flags.BoolVar(&o.json, "json", false, "print the report as JSON")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: hcx bench [--dir hcx-data] [--scenario all] [--duration 10s] [--rate R]\n\nLoads a running federation (hcx dev) from this process: single verifications\n(POST /v1/verify), batches (POST /v1/verify/batch), code issuance\n(GET /v1/residents/{sub}/code) and the lab feed (POST /v1/feeds/labs). Setup\nmakes its own residents with the dev operator. Before the load it measures raw\nparallel SM2 verify and sign on all cores and prints the ratios to them.\n\nFlags:")
		flags.PrintDefaults()
	}
	if err := parseCmdFlags(flags, args, stdout); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: see hcx bench -h", flags.Arg(0))
	}
	o.province, o.checkpointProv = hcx.ProvinceCode(prov), hcx.ProvinceCode(cpProv)
	scenarios, err := o.validate()
	if err != nil {
		return err
	}
	b, err := newBench(o, stderr)
	if err != nil {
		return err
	}
	rep := benchReport{Node: o.node, CheckpointNode: o.checkpointNode, Cores: runtime.GOMAXPROCS(0), Workers: o.workers, Rate: o.rate, Loopback: isLoopbackURL(o.node) && isLoopbackURL(o.checkpointNode)}
	rep.RawVerify, rep.RawSign = rawSM2(ctx, o.baseline)
	start := time.Now()
	if err := b.setup(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	rep.Residents, rep.SetupSeconds = len(b.residents), time.Since(start).Seconds()
	b.logf("setup: %d residents with sessions and codes in %.1fs", len(b.residents), rep.SetupSeconds)
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		if s == "verify" || s == "batch" {
			if err := b.refreshCodes(ctx); err != nil {
				return fmt.Errorf("%s: fresh codes: %w", s, err)
			}
			if err := b.waitKnown(ctx); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		rep.Scenarios = append(rep.Scenarios, b.run(ctx, s))
	}
	rep.ratios()
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(stdout)
	return nil
}

func (o *benchOpts) validate() ([]string, error) {
	if err := o.province.Validate(); err != nil {
		return nil, fmt.Errorf("--province: %w", err)
	}
	if err := o.checkpointProv.Validate(); err != nil {
		return nil, fmt.Errorf("--checkpoint-province: %w", err)
	}
	for name, u := range map[string]string{"--node": o.node, "--checkpoint-node": o.checkpointNode} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("%s %q: want a node's base URL, such as http://127.0.0.1:8744", name, u)
		}
	}
	switch {
	case o.duration <= 0 || o.duration > benchMaxDuration:
		return nil, fmt.Errorf("--duration %s: want more than 0 and at most %s (the codes are 60-second codes)", o.duration, benchMaxDuration)
	case o.baseline <= 0 || o.baseline > time.Minute:
		return nil, fmt.Errorf("--baseline %s: want more than 0 and at most 1m", o.baseline)
	case o.workers < 1 || o.workers > 1024:
		return nil, fmt.Errorf("--workers %d: want 1 to 1024", o.workers)
	case o.residents < 1 || o.residents > 10_000:
		return nil, fmt.Errorf("--residents %d: want 1 to 10000", o.residents)
	case o.batch < 1 || o.batch > api.MaxBatchCodes:
		return nil, fmt.Errorf("--batch %d: want 1 to %d codes", o.batch, api.MaxBatchCodes)
	case o.feedLines < 1 || o.feedLines > api.MaxFeedLines:
		return nil, fmt.Errorf("--feed-lines %d: want 1 to %d", o.feedLines, api.MaxFeedLines)
	case o.rate < 0 || math.IsNaN(o.rate) || o.rate > 1e6:
		return nil, fmt.Errorf("--rate %g: want 0 (closed loop) or up to 1000000 requests/s", o.rate)
	}
	if o.scenario == "all" {
		return benchScenarios, nil
	}
	for _, s := range benchScenarios {
		if s == o.scenario {
			return []string{s}, nil
		}
	}
	return nil, fmt.Errorf("--scenario %q: want %s or all", o.scenario, strings.Join(benchScenarios, ", "))
}

// bench is one run's clients, credentials and residents.
type bench struct {
	o          benchOpts
	hc         *http.Client
	operator   string
	checkpoint *certs.Signer
	feed       *certs.Signer
	residents  []benchResident
	codes      []string
	stderr     io.Writer
	terminal   bool
	seq        atomic.Int64
}

type benchResident struct {
	sub    hcx.Subject
	doc    string
	cookie []*http.Cookie
}

func newBench(o benchOpts, stderr io.Writer) (*bench, error) {
	ca, err := certs.OpenCA(filepath.Join(o.dir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("no dev CA in %s: start hcx dev first (or give --dir): %w", o.dir, err)
	}
	b := &bench{o: o, stderr: stderr}
	if b.checkpoint, err = ca.LoadCurrent("checkpoint-"+string(o.checkpointProv), time.Now()); err != nil {
		return nil, fmt.Errorf("dev certificate checkpoint-%s: %w", o.checkpointProv, err)
	}
	if b.feed, err = ca.LoadCurrent("feed-"+string(o.province), time.Now()); err != nil {
		return nil, fmt.Errorf("dev certificate feed-%s: %w", o.province, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.workers + 4
	b.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if fd, ok := stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		b.terminal = true
	}
	return b, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "hcx bench: "+format+"\n", args...)
}

// setup logs the dev operator in and makes o.residents residents, each with
// an enrolment code and a session.
func (b *bench) setup(ctx context.Context) error {
	st, err := devidp.ReadState(filepath.Join(b.o.dir, "idp"))
	if err != nil {
		return fmt.Errorf("no identity provider in %s: start hcx dev first (or give --dir): %w", b.o.dir, err)
	}
	name := devidp.OperatorName(b.o.province)
	for _, u := range st.Users {
		if u.Name == name {
			if b.operator, err = devidp.FetchToken(ctx, nil, st.Issuer, u.Name, u.Password); err != nil {
				return fmt.Errorf("log %s in: %w", name, err)
			}
		}
	}
	if b.operator == "" {
		return fmt.Errorf("no dev operator %s in %s", name, b.o.dir)
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	run := uint32(nonce[0])<<8 | uint32(nonce[1])
	for i := range b.o.residents {
		// A birth date and sequence unique to this run, so a rerun makes new people.
		first17 := fmt.Sprintf("440106%04d%02d%02d%03d", 1950+int(run%50), 1+i/28%12, 1+i%28, (int(run>>6)+i/336)%1000)
		doc := first17 + string(hcx.CNIDCheckDigit(first17))
		r, err := b.enrol(ctx, doc)
		if err != nil {
			return fmt.Errorf("resident %d of %d: %w", i+1, b.o.residents, err)
		}
		b.residents = append(b.residents, r)
	}
	return nil
}

func (b *bench) enrol(ctx context.Context, doc string) (benchResident, error) {
	body, _ := json.Marshal(map[string]string{"doc_type": "CN-ID", "doc_number": doc, "name": "测试员"})
	var e struct {
		Code    string      `json:"code"`
		Subject hcx.Subject `json:"subject"`
	}
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, "POST", b.o.node+"/v1/enrolments", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+b.operator)
		req.Header.Set(auth.HeaderReason, "hcx bench: load-test resident")
		st, rb, err := b.do(req)
		if err != nil {
			return benchResident{}, err
		}
		if st == http.StatusTooManyRequests && attempt < 20 {
			time.Sleep(benchRetryWait)
			continue
		}
		if st != http.StatusCreated {
			return benchResident{}, fmt.Errorf("enrolment code: %d %s", st, clipBody(rb))
		}
		if err := json.Unmarshal(rb, &e); err != nil {
			return benchResident{}, err
		}
		break
	}
	jar, _ := cookiejar.New(nil)
	hc := *b.hc
	hc.Jar = jar
	body, _ = json.Marshal(map[string]string{"code": e.Code})
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, "POST", b.o.node+"/v1/auth/enrol", bytes.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			return benchResident{}, err
		}
		rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 20 {
			time.Sleep(benchRetryWait)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return benchResident{}, fmt.Errorf("enrol: %d %s", resp.StatusCode, clipBody(rb))
		}
		break
	}
	u, _ := url.Parse(b.o.node)
	return benchResident{sub: e.Subject, doc: doc, cookie: jar.Cookies(u)}, nil
}

// refreshCodes fetches each resident's current code.
func (b *bench) refreshCodes(ctx context.Context) error {
	codes := make([]string, 0, len(b.residents))
	for i := range b.residents {
		for attempt := 0; ; attempt++ {
			st, rb, err := b.do(b.codeRequest(ctx, i))
			if err != nil {
				return err
			}
			if st == http.StatusTooManyRequests && attempt < 20 {
				time.Sleep(benchRetryWait)
				continue
			}
			var c struct {
				Code string `json:"code"`
			}
			if st != http.StatusOK || json.Unmarshal(rb, &c) != nil || c.Code == "" {
				return fmt.Errorf("code of resident %d: %d %s", i+1, st, clipBody(rb))
			}
			codes = append(codes, c.Code)
			break
		}
	}
	b.codes = codes
	return nil
}

// waitKnown waits (up to benchKeyWait) until the checkpoint's node knows
// the issuing province's key: a node that has just started learns it from
// the hub, and until then answers 401 unknown_key.
func (b *bench) waitKnown(ctx context.Context) error {
	deadline := time.Now().Add(benchKeyWait)
	verify := b.op("verify")
	for logged := false; ; {
		_, _, _, code := verify(ctx, 0)
		if code != "401 unknown_key" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s still does not know %s's key after %s: is it following the hub? (see its /readyz)", b.o.checkpointNode, b.o.province, benchKeyWait)
		}
		if !logged {
			b.logf("waiting for %s to learn %s's key from the hub", b.o.checkpointNode, b.o.province)
			logged = true
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *bench) codeRequest(ctx context.Context, i int) *http.Request {
	r := b.residents[i]
	req, _ := http.NewRequestWithContext(ctx, "GET", b.o.node+"/v1/residents/"+string(r.sub)+"/code", nil)
	for _, c := range r.cookie {
		req.AddCookie(c)
	}
	return req
}

func (b *bench) do(req *http.Request) (int, []byte, error) {
	resp, err := b.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, rb, err
}

// op is one request of a scenario: it returns the items it carried (codes,
// records), how many of them the node refused, their error codes, and the
// request's own error code ("" when answered 200).
type benchOp func(ctx context.Context, n int64) (items, failed int, itemErrs map[string]int, errCode string)

func (b *bench) op(s string) benchOp {
	switch s {
	case "verify":
		return func(ctx context.Context, n int64) (int, int, map[string]int, string) {
			body, _ := json.Marshal(map[string]string{"code": b.codes[n%int64(len(b.codes))]})
			return b.signed(ctx, b.o.checkpointNode+"/v1/verify", "application/json", body, b.checkpoint, 1, nil)
		}
	case "batch":
		return func(ctx context.Context, n int64) (int, int, map[string]int, string) {
			codes := make([]string, b.o.batch)
			for i := range codes {
				codes[i] = b.codes[(int(n)+i)%len(b.codes)]
			}
			body, _ := json.Marshal(map[string][]string{"codes": codes})
			return b.signed(ctx, b.o.checkpointNode+"/v1/verify/batch", "application/json", body, b.checkpoint, len(codes), batchItemErrors)
		}
	case "issue":
		return func(ctx context.Context, n int64) (int, int, map[string]int, string) {
			st, rb, err := b.do(b.codeRequest(ctx, int(n%int64(len(b.residents)))))
			return 1, 0, nil, statusCode(st, rb, err)
		}
	default: // feed
		at := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
		return func(ctx context.Context, n int64) (int, int, map[string]int, string) {
			var body bytes.Buffer
			for i := 0; i < b.o.feedLines; i++ {
				r := b.residents[(int(n)*b.o.feedLines+i)%len(b.residents)]
				fmt.Fprintf(&body, `{"id":"bench-%d-%d-%d","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"negative"}`+"\n", time.Now().UnixNano(), n, i, r.doc, at)
			}
			return b.signed(ctx, b.o.node+"/v1/feeds/labs", api.ContentTypeNDJSON, body.Bytes(), b.feed, b.o.feedLines, feedItemErrors)
		}
	}
}

// signed posts body with a request token of s (good once: a fresh token per
// request, an SM2 signature this process pays for).
func (b *bench) signed(ctx context.Context, target, ctype string, body []byte, s *certs.Signer, items int, itemErrs func([]byte) (int, map[string]int)) (int, int, map[string]int, string) {
	req, _ := http.NewRequestWithContext(ctx, "POST", target, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if err := auth.SignRequest(req, body, s, time.Now()); err != nil {
		return items, 0, nil, "sign: " + err.Error()
	}
	st, rb, err := b.do(req)
	code := statusCode(st, rb, err)
	if code != "" || itemErrs == nil {
		return items, 0, nil, code
	}
	failed, errs := itemErrs(rb)
	return items, failed, errs, ""
}

// batchItemErrors counts the batch answers that are errors, by code.
func batchItemErrors(rb []byte) (int, map[string]int) {
	var res struct {
		Results []struct {
			Error *struct {
				Code string `json:"code"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rb, &res); err != nil {
		return 1, map[string]int{"bad_answer": 1}
	}
	var errs map[string]int
	n := 0
	for _, r := range res.Results {
		if r.Error != nil {
			if errs == nil {
				errs = map[string]int{}
			}
			errs[r.Error.Code]++
			n++
		}
	}
	return n, errs
}

// feedItemErrors counts the feed's refused lines, by code.
func feedItemErrors(rb []byte) (int, map[string]int) {
	var res api.FeedResult
	if err := json.Unmarshal(rb, &res); err != nil {
		return 1, map[string]int{"bad_answer": 1}
	}
	if res.Failed == 0 {
		return 0, nil
	}
	errs := map[string]int{}
	for _, e := range res.Errors {
		errs[e.Code]++
	}
	if res.ErrorsOmitted > 0 {
		errs["unlisted"] += res.ErrorsOmitted
	}
	return res.Failed, errs
}

// statusCode is "" for 200/201, else the error's code from its body, or
// the HTTP status.
func statusCode(st int, rb []byte, err error) string {
	switch {
	case err != nil:
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return "cancelled"
		}
		return "network"
	case st == http.StatusOK || st == http.StatusCreated:
		return ""
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(rb, &e) == nil && e.Error.Code != "" {
		return strconv.Itoa(st) + " " + e.Error.Code
	}
	return strconv.Itoa(st)
}

// run runs one scenario for o.duration, closed loop (o.workers requests in
// flight) or open loop (o.rate requests started per second, latency counted
// from when each was due).
func (b *bench) run(parent context.Context, s string) benchResult {
	ctx, cancel := context.WithTimeout(parent, b.o.duration)
	defer cancel()
	op := b.op(s)
	var (
		mu      sync.Mutex
		res     = benchResult{Scenario: s, Errors: map[string]int{}, ItemErrors: map[string]int{}}
		hist    latencyHistogram
		ops     atomic.Int64
		late    atomic.Int64
		wg      sync.WaitGroup
		due     chan time.Time
		started = time.Now()
	)
	if b.o.rate > 0 {
		due = make(chan time.Time, 4096)
		go func() {
			defer close(due)
			interval := time.Duration(float64(time.Second) / b.o.rate)
			next := time.Now()
			for {
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				} else if ctx.Err() != nil {
					return
				}
				select {
				case due <- next:
				default:
					late.Add(1) // the workers cannot keep up: counted, not queued without bound
				}
				next = next.Add(interval)
			}
		}()
	}
	worker := func() {
		defer wg.Done()
		var h latencyHistogram
		local := benchResult{Errors: map[string]int{}, ItemErrors: map[string]int{}}
		for {
			begin := time.Now()
			if due != nil {
				t, ok := <-due
				if !ok {
					break
				}
				begin = t
			} else if ctx.Err() != nil {
				break
			}
			items, failed, itemErrs, code := op(ctx, b.seq.Add(1))
			if code == "cancelled" && ctx.Err() != nil {
				break // the scenario ended mid-request: not an error of the node
			}
			h.record(time.Since(begin))
			ops.Add(1)
			switch {
			case code == "":
				local.Ops++
				local.Items += int64(items - failed)
				local.ItemsFailed += int64(failed)
				for k, v := range itemErrs {
					local.ItemErrors[k] += v
				}
			case strings.HasPrefix(code, "429"):
				local.Throttled++
				local.Errors[code]++
				if due == nil {
					// Closed loop: pause rather than spin on refusals,
					// which would take the cores from the federation.
					select {
					case <-time.After(benchThrottlePause):
					case <-ctx.Done():
					}
				}
			default:
				local.Failed++
				local.Errors[code]++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		hist.merge(&h)
		res.Ops += local.Ops
		res.Items += local.Items
		res.ItemsFailed += local.ItemsFailed
		res.Failed += local.Failed
		res.Throttled += local.Throttled
		for k, v := range local.Errors {
			res.Errors[k] += v
		}
		for k, v := range local.ItemErrors {
			res.ItemErrors[k] += v
		}
	}
	for range b.o.workers {
		wg.Add(1)
		go worker()
	}
	stop := b.progress(ctx, s, started, &ops)
	wg.Wait()
	stop()
	res.Seconds = time.Since(started).Seconds()
	res.Late = late.Load()
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	res.ItemsPerSec = float64(res.Items) / res.Seconds
	res.Latency = hist.summary()
	return res
}

// progress shows a bar over the scenario's duration on a terminal, plain
// lines every 5 s otherwise; the returned func ends it.
func (b *bench) progress(ctx context.Context, s string, started time.Time, ops *atomic.Int64) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var bar *progressbar.ProgressBar
		every := 5 * time.Second
		if b.terminal {
			bar = progressbar.NewOptions64(b.o.duration.Milliseconds(), progressbar.OptionSetWriter(b.stderr),
				progressbar.OptionSetDescription("hcx bench "+s), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
			every = 250 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if bar != nil {
					_ = bar.Finish()
				}
				return
			case <-t.C:
				el := time.Since(started)
				if bar != nil {
					bar.Describe(fmt.Sprintf("hcx bench %s: %d requests", s, ops.Load()))
					_ = bar.Set64(min(el.Milliseconds(), b.o.duration.Milliseconds()))
				} else {
					b.logf("%s: %s of %s, %d requests, %.0f/s", s, el.Round(time.Second), b.o.duration, ops.Load(), float64(ops.Load())/el.Seconds())
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// latencyHistogram is a bounded log-linear histogram of latencies in
// microseconds: each power of two from 1 µs to 2^histOctaves µs (about 18
// minutes) is split into histSub equal buckets, so a percentile is exact to
// 1/histSub of its value whatever the run's length; longer latencies land in
// the last bucket (max keeps the exact value).
type latencyHistogram struct {
	counts   [histOctaves * histSub]int64
	n        int64
	maxMicro int64
}

const (
	histOctaves = 30
	histSub     = 16
)

func (h *latencyHistogram) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	h.counts[histBucket(us)]++
	h.n++
	h.maxMicro = max(h.maxMicro, us)
}

// histBucket is the bucket of us >= 1.
func histBucket(us int64) int {
	oct := bits.Len64(uint64(us)) - 1 // 2^oct <= us < 2^(oct+1)
	if oct >= histOctaves {
		return histOctaves*histSub - 1
	}
	base := int64(1) << oct
	sub := int((us - base) * histSub / base)
	return oct*histSub + sub
}

// histUpper is the upper bound (exclusive) in µs of bucket i.
func histUpper(i int) int64 {
	oct, sub := i/histSub, i%histSub
	base := int64(1) << oct
	return base + (base*int64(sub+1)+histSub-1)/histSub // rounded up: the low octaves' buckets are narrower than 1 µs
}

func (h *latencyHistogram) merge(o *latencyHistogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.maxMicro = max(h.maxMicro, o.maxMicro)
}

// quantile is the upper bound of the bucket holding the q-th latency, in
// milliseconds (never more than the maximum seen).
func (h *latencyHistogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return float64(min(histUpper(i), h.maxMicro)) / 1000
		}
	}
	return float64(h.maxMicro) / 1000
}

func (h *latencyHistogram) summary() benchLatency {
	return benchLatency{P50: h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99), P999: h.quantile(0.999), Max: float64(h.maxMicro) / 1000}
}

// benchLatency is in milliseconds.
type benchLatency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

type benchResult struct {
	Scenario    string         `json:"scenario"`
	Seconds     float64        `json:"seconds"`
	Ops         int64          `json:"ops"`
	OpsPerSec   float64        `json:"ops_per_sec"`
	Items       int64          `json:"items"` // codes or records answered without an error
	ItemsPerSec float64        `json:"items_per_sec"`
	ItemsFailed int64          `json:"items_failed"`
	Failed      int64          `json:"failed"`    // requests answered with an error (not 429)
	Throttled   int64          `json:"throttled"` // requests answered 429 (the node's per-caller limit)
	Late        int64          `json:"late"`      // open loop: requests not started because every worker was busy
	Errors      map[string]int `json:"errors"`
	ItemErrors  map[string]int `json:"item_errors"`
	Latency     benchLatency   `json:"latency"`
}

type benchReport struct {
	Node           string        `json:"node"`
	CheckpointNode string        `json:"checkpoint_node"`
	Loopback       bool          `json:"loopback"` // the client shares the machine with the federation
	Cores          int           `json:"cores"`
	Workers        int           `json:"workers"`
	Rate           float64       `json:"rate"`
	Residents      int           `json:"residents"`
	SetupSeconds   float64       `json:"setup_seconds"`
	RawVerify      float64       `json:"raw_sm2_verify_per_sec"`
	RawSign        float64       `json:"raw_sm2_sign_per_sec"`
	Scenarios      []benchResult `json:"scenarios"`
	// Ratios are the speed goals: verify codes/s, batch codes/s ÷
	// raw verify/s; issuance tokens/s ÷ raw sign/s.
	Ratios map[string]float64 `json:"ratios"`
}

func (r *benchReport) ratios() {
	r.Ratios = map[string]float64{}
	for _, s := range r.Scenarios {
		switch {
		case (s.Scenario == "verify" || s.Scenario == "batch") && r.RawVerify > 0:
			r.Ratios[s.Scenario+"/raw_verify"] = s.ItemsPerSec / r.RawVerify
		case s.Scenario == "issue" && r.RawSign > 0:
			r.Ratios["issue/raw_sign"] = s.ItemsPerSec / r.RawSign
		}
	}
}

func (r *benchReport) print(w io.Writer) {
	fmt.Fprintf(w, "hcx bench: %s (checkpoint at %s), %d cores, %d workers", r.Node, r.CheckpointNode, r.Cores, r.Workers)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", open loop at %g requests/s\n", r.Rate)
	} else {
		fmt.Fprintln(w, ", closed loop")
	}
	if r.Loopback {
		fmt.Fprintln(w, "note: the target is loopback: this client shares the machine's cores with the federation (and signs a request token per request)")
	}
	fmt.Fprintf(w, "setup: %d residents in %.1fs\n", r.Residents, r.SetupSeconds)
	fmt.Fprintf(w, "raw SM2 on all cores (measured just before the load): verify %.0f/s, sign %.0f/s\n\n", r.RawVerify, r.RawSign)
	fmt.Fprintf(w, "%-8s %9s %10s %11s %8s %8s %8s %8s %8s %6s %6s\n", "scenario", "requests", "req/s", "items/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms", "errors", "429")
	for _, s := range r.Scenarios {
		l := s.Latency
		fmt.Fprintf(w, "%-8s %9d %10.1f %11.1f %8.2f %8.2f %8.2f %8.2f %8.2f %6d %6d\n", s.Scenario, s.Ops, s.OpsPerSec, s.ItemsPerSec, l.P50, l.P90, l.P99, l.P999, l.Max, s.Failed+s.ItemsFailed, s.Throttled)
		for _, m := range []map[string]int{s.Errors, s.ItemErrors} {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "         %s: %d\n", k, m[k])
			}
		}
		if s.Late > 0 {
			fmt.Fprintf(w, "         %d requests not started: every worker was busy (raise --workers)\n", s.Late)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nratios (issue 12 speed goals):")
		for _, k := range []string{"verify/raw_verify", "batch/raw_verify", "issue/raw_sign"} {
			if v, ok := r.Ratios[k]; ok {
				fmt.Fprintf(w, "  %-18s %.3f\n", k, v)
			}
		}
	}
}

// rawSM2 measures generic SM2 verify and sign on every core for d each.
func rawSM2(ctx context.Context, d time.Duration) (verify, sign float64) {
	key, err := certs.GenerateKey()
	if err != nil {
		return 0, 0
	}
	msg := []byte("hcx bench: raw SM2 baseline, a message the size of a code's signing input .......................")
	sig, err := certs.SignSM2(key, msg)
	if err != nil {
		return 0, 0
	}
	measure := func(f func()) float64 {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var n atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					f()
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / time.Since(start).Seconds()
	}
	verify = measure(func() { certs.VerifySM2(&key.PublicKey, msg, sig) })
	sign = measure(func() { _, _ = certs.SignSM2(key, msg) })
	return verify, sign
}

// benchRetryWait is how long setup waits after a 429 (the operator's and
// residents' limits refill within a second).
const benchRetryWait = 500 * time.Millisecond

// benchKeyWait bounds the wait for the checkpoint's node to know the
// issuing province's key.
const benchKeyWait = 30 * time.Second

// benchThrottlePause is how long a closed-loop worker pauses after a 429.
const benchThrottlePause = 100 * time.Millisecond

func clipBody(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// isLoopbackURL says whether a node's base URL is on this machine.
func isLoopbackURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && isLoopbackAddr(p.Host)
}
