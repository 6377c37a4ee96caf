package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// devProvinces are the provinces of `hcx dev`, with the last two digits of
// each node's port: 87<first two digits of the province code>.
var devProvinces = []hcx.ProvinceCode{"110000", "310000", "440000", "510000"}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runDevToken(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("hcx dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "hcx-data", "data directory (made on first start, reused after)")
	host := fs.String("host", "127.0.0.1", "address to listen on")
	hubs := fs.Int("hubs", 3, "hub members (1, 3 or 5)")
	useTLS := fs.Bool("tls", false, "serve the hub's and nodes' APIs over TLS, with certificates from the dev CA's TLS root (required for a --host other than loopback)")
	verbose := fs.Bool("v", false, "log everything, not only warnings")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hcx dev [flags]\n\nRuns a whole federation in one process: a national hub of Raft members and\nprovince nodes for 110000 (Beijing), 310000 (Shanghai), 440000 (Guangdong) and\n510000 (Sichuan), each with its own rules, and a development OpenID provider\nfor operators, the auditor and residents.\n\n       hcx dev token --role operator --province 440000\n\nprints an ID token of a dev user (see hcx dev token -h).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hubs != 1 && *hubs != 3 && *hubs != 5 {
		return fmt.Errorf("--hubs %d: a hub cluster has 1, 3 or 5 members", *hubs)
	}
	if !*useTLS && !isLoopbackAddr(*host) {
		return fmt.Errorf("--host %s is not a loopback address: hcx dev serves plain HTTP only on loopback; add --tls to serve TLS there", *host)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	if !*verbose {
		handler = quietRaft{Handler: slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})}
	}
	logger := slog.New(handler)

	cfg := federationConfig{Dir: abs, Provinces: devProvinces, HubMembers: *hubs, NodeAddrs: map[hcx.ProvinceCode]string{}, IdPAddr: *host + ":8690", Logger: logger, TLS: *useTLS, Limits: devLimits}
	for i := 0; i < *hubs; i++ {
		cfg.HubHTTP = append(cfg.HubHTTP, fmt.Sprintf("%s:%d", *host, 8700+i))
		cfg.HubRaft = append(cfg.HubRaft, fmt.Sprintf("%s:%d", *host, 8800+i))
	}
	for _, p := range devProvinces {
		cfg.NodeAddrs[p] = fmt.Sprintf("%s:87%s", *host, string(p)[:2])
	}
	fmt.Fprintf(stdout, "hcx dev: starting a federation in %s\n", abs)
	f, err := startFederation(ctx, cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	onHangup(ctx, func() {
		for _, p := range devProvinces {
			if err := f.Nodes[p].ReloadRules(); err != nil {
				fmt.Fprintf(stdout, "hcx dev: %s keeps its rules: %v\n", p, err)
			} else {
				fmt.Fprintf(stdout, "hcx dev: %s rules in force: policy %s\n", p, f.Nodes[p].PolicyVersion())
			}
		}
	})
	printDevGuide(stdout, f)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nhcx dev: stopping (the data stays in", abs+")")
	return nil
}

func printDevGuide(w io.Writer, f *federation) {
	fmt.Fprintf(w, "\nNational hub (Raft, %d member(s)):\n", len(f.HubURLs))
	for _, u := range f.HubURLs {
		fmt.Fprintf(w, "  %s   (try %s/v1/checkpoint; the log itself is for province, hub and auditor certificates)\n", u, u)
	}
	fmt.Fprintln(w, "\nProvince nodes:")
	for _, p := range devProvinces {
		fmt.Fprintf(w, "  %s %-10s %s\n", p, p.Name(), f.NodeURLs[p])
	}
	if f.TLSRoot == nil {
		fmt.Fprintln(w, "\nThe APIs are plain HTTP, on loopback only (hcx dev --tls serves them over TLS).")
	} else {
		fmt.Fprintf(w, "\nThe APIs are TLS; curl verifies them with:  export CURL_CA_BUNDLE=%s\n", filepath.Join(f.Dir, "ca", certs.TLSRootCertFile))
	}
	printDevIdP(w, f)
	gd, sc := f.NodeURLs["440000"], f.NodeURLs["510000"]
	guide := `

Walkthrough: a Guangdong resident tests positive; a Sichuan checkpoint sees red.

  GD=` + gd + `
  SC=` + sc + `

  # 1. Register a resident at Guangdong's node (the answer carries the subject, the federation pseudonym)
  SUB=$(curl -s -X POST $GD/v1/residents -d '{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三"}' \
        | sed -n 's/.*"subject":"\([a-z2-7]*\)".*/\1/p'); echo $SUB

  # 2. The lab reports a positive result
  curl -s -X POST $GD/v1/residents/$SUB/labs -d '{"result":"positive"}'

  # 3. The resident opens their health code (a 60-second dynamic code)
  CODE=$(curl -s $GD/v1/residents/$SUB/code | sed -n 's/.*"code":"\([^"]*\)".*/\1/p'); echo $CODE

  # 4. A checkpoint in Sichuan scans it: red, with the masked name and the reasons
  curl -s -X POST $SC/v1/verify -d "{\"code\":\"$CODE\"}"

Machines (feeds, checkpoint devices) sign every request with their own certificate:
  hcx device keygen --out dev-gate --name gate-7
  hcx device enrol --node $GD --csr dev-gate/gate-7.csr --name gate-7      # prints the enrolment id
  # an operator of Guangdong approves: POST $GD/v1/devices/enrolments/<id>/approve
  hcx device fetch --node $GD --id <id> --out dev-gate/gate-7.crt
  curl -H "Authorization: $(hcx device token --cert dev-gate/gate-7.crt --key dev-gate/gate-7.key --url $GD/healthz)" $GD/healthz

Rules: edit ` + filepath.Join(f.Dir, "rules") + `/<province>.yaml, then kill -HUP ` + strconv.Itoa(os.Getpid()) + `
to reload them (a file that does not load is refused and the old rules stay).

Press Ctrl-C to stop.`
	fmt.Fprintln(w, strings.TrimPrefix(guide, "\n"))
}

// printDevIdP prints the identity provider, its users and how to act as
// each role.
func printDevIdP(w io.Writer, f *federation) {
	fmt.Fprintf(w, "\nIdentity provider (OpenID Connect, development only): %s\n", f.IdP.Issuer())
	fmt.Fprintln(w, "  user          password          role      province  document")
	for _, u := range f.IdP.Users() {
		doc := ""
		if u.DocNumber != "" {
			doc = string(u.DocType) + " " + u.DocNumber
		}
		fmt.Fprintf(w, "  %-13s %-17s %-9s %-9s %s\n", u.Name, u.Password, u.Role, u.Province, doc)
	}
	dirFlag := ""
	if abs, err := filepath.Abs("hcx-data"); err != nil || abs != f.Dir {
		dirFlag = " --dir " + f.Dir
	}
	fmt.Fprintf(w, `
Acting as each role:
  # an operator of Guangdong, the national auditor, a resident (ID tokens, good for %s)
  OP=$(hcx dev token%s --role operator --province 440000)
  AUDITOR=$(hcx dev token%s --role auditor)
  RESIDENT=$(hcx dev token%s --role resident --user li-lei)
  curl -H "Authorization: Bearer $OP" ...
  # in a browser: <node>/v1/auth/oidc/login?next=/ logs in with the users above
`, strings.TrimSuffix(devidp.IDTokenLifetime.String(), "0m0s"), dirFlag, dirFlag, dirFlag)
}

// devLimits are the default abuse limits, except that anonymous callers,
// who all come from loopback in a dev federation, share a bigger bucket.
func devLimits() *api.Limits {
	cfg := api.DefaultLimitsConfig()
	cfg.PerRole[auth.RoleAnonymous] = api.RoleLimit{Rate: 50, Burst: 100}
	return api.NewLimits(cfg)
}
