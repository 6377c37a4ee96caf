package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// devProvinces are the provinces of `hcx dev`; each node listens at the port
// base (8700) plus the first two digits of its province code.
var devProvinces = []hcx.ProvinceCode{"110000", "310000", "440000", "510000"}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runDevToken(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "init" {
		return runDevInit(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "idp" {
		return runDevIdP(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("hcx dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultDataDir, "data directory (made on first start, reused after)")
	host := fs.String("host", defaultHost, "address to listen on")
	hubs := fs.Int("hubs", 3, "hub members (1, 3 or 5)")
	useTLS := fs.Bool("tls", false, "serve the hub's and nodes' APIs over TLS, with certificates from the dev CA's TLS root (required for a --host other than loopback)")
	logOpts := addLogFlags(fs)
	benchLimits := fs.Bool("bench-limits", false, "lift the per-caller request rates of checkpoints, residents and feeds (in-flight bounds stay), so hcx bench measures the nodes rather than the abuse limits")
	var witnesses listFlag
	fs.Var(&witnesses, "witness", "another witness of the dev hub besides the nodes, such as hcx audit --watch's http://127.0.0.1:9470/v1/witness (repeatable)")
	admin := fs.String("admin", "", adminFlagHelp+"; one process, so its profiles cover the whole dev federation")
	portBase := fs.Int("port-base", defaultPortBase, "first hub API port; the identity provider listens at base-10, the hub's Raft at base+100, and each node at base+<first two digits of its province> (two hcx dev on one machine need bases 200 apart)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: hcx dev [flags]\n\nRuns a whole federation in one process: a national hub of Raft members and\nprovince nodes for 110000 (Beijing), 310000 (Shanghai), 440000 (Guangdong) and\n510000 (Sichuan), each with its own rules, and a development OpenID provider\nfor operators, the auditor, national platform staff and residents.\n\n       hcx dev token --role operator --province 440000\n\nprints an ID token of a dev user (see hcx dev token -h).\n\n       hcx dev init --dir DIR\n       hcx dev idp --dir DIR --listen ADDR\n\nwrite a federation's material for members on separate hosts, and serve its\nidentity provider on its own (docker-compose.yml).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if *hubs != 1 && *hubs != 3 && *hubs != 5 {
		return fmt.Errorf("--hubs %d: a hub cluster has 1, 3 or 5 members", *hubs)
	}
	if *portBase < 1024 || *portBase > 65535-200 {
		return fmt.Errorf("--port-base %d: want a port from 1024 to %d, with the 200 ports above it free", *portBase, 65535-200)
	}
	if !*useTLS && !isLoopbackAddr(*host) {
		return fmt.Errorf("--host %s is not a loopback address: hcx dev serves plain HTTP only on loopback; add --tls to serve TLS there", *host)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	logger, err := logOpts.logger(stderr, false)
	if err != nil {
		return err
	}

	cfg := federationConfig{Dir: abs, Provinces: devProvinces, HubMembers: *hubs, NodeAddrs: map[hcx.ProvinceCode]string{}, IdPAddr: idpAddr(*host, *portBase), Logger: logger, TLS: *useTLS, Limits: devLimits, Witnesses: witnesses}
	if *benchLimits {
		cfg.Limits = devBenchLimits
		fmt.Fprintln(stdout, "hcx dev: --bench-limits: checkpoints, residents and feeds are not rate limited per caller")
	}
	for i := 0; i < *hubs; i++ {
		cfg.HubHTTP = append(cfg.HubHTTP, hubHTTPAddr(*host, *portBase, i))
		cfg.HubRaft = append(cfg.HubRaft, hubRaftAddr(*host, *portBase, i))
	}
	for _, p := range devProvinces {
		cfg.NodeAddrs[p] = nodeAddr(*host, *portBase, p)
	}
	fmt.Fprintf(stdout, "hcx dev: starting a federation in %s\n", abs)
	f, err := startFederation(ctx, cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	stopAdmin, err := startAdmin(*admin, stdout, logger)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer stopAdmin()
	onHangup(ctx, func() {
		for _, p := range devProvinces {
			if err := f.Nodes[p].ReloadRules(); err != nil {
				fmt.Fprintf(stdout, "hcx dev: %s keeps its rules: %v\n", p, err)
			} else {
				fmt.Fprintf(stdout, "hcx dev: %s rules in force: policy %s\n", p, f.Nodes[p].PolicyVersion())
			}
		}
	})
	// The walkthrough's machines are known to a node once it has the
	// trust list from the hub: print it when every node can serve it.
	waitDevReady(ctx, f, 30*time.Second, stdout)
	printDevGuide(stdout, f)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nhcx dev: stopping (the data stays in", abs+")")
	return nil
}

// waitDevReady waits up to timeout for every node to be ready (to have the
// trust list that names the dev certificates), and says which is not.
func waitDevReady(ctx context.Context, f *federation, timeout time.Duration, w io.Writer) {
	deadline := time.Now().Add(timeout)
	for _, p := range devProvinces {
		for {
			err := f.Nodes[p].Ready()
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				fmt.Fprintf(w, "hcx dev: %s is not ready yet (%v): the commands below work once %s/readyz answers 200\n", p, err, f.NodeURLs[p])
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func printDevGuide(w io.Writer, f *federation) {
	fmt.Fprintf(w, "\nNational hub (Raft, %d member(s)):\n", len(f.HubURLs))
	for _, u := range f.HubURLs {
		fmt.Fprintf(w, "  %s   (try %s/v1/checkpoint; the log itself is for province, hub and auditor certificates)\n", u, u)
	}
	fmt.Fprintf(w, "  The province nodes witness its checkpoints: %s/v1/checkpoint/witnessed carries their cosignatures.\n", f.HubURLs[0])
	fmt.Fprintln(w, "\nProvince nodes:")
	for _, p := range devProvinces {
		fmt.Fprintf(w, "  %s %-10s %s\n", p, p.Name(), f.NodeURLs[p])
	}
	// The pages are at the passkeys' origin: an IP address cannot be a
	// WebAuthn relying party (nodeHandler's PasskeyURL).
	fmt.Fprintf(w, "  Each node serves the pages people use at /app/, such as %s/app/ (Guangdong)\n", strings.Replace(f.NodeURLs["440000"], "127.0.0.1", "localhost", 1))
	if f.TLSRoot == nil {
		fmt.Fprintln(w, "\nThe APIs are plain HTTP, on loopback only (hcx dev --tls serves them over TLS).")
	} else {
		fmt.Fprintf(w, "\nThe APIs are TLS; curl verifies them with:  export CURL_CA_BUNDLE=%s\n", filepath.Join(f.Dir, "ca", certs.TLSRootCertFile))
	}
	printDevIdP(w, f)
	fmt.Fprintln(w, "\nWalkthrough: a Guangdong resident tests positive; a Sichuan checkpoint sees red.")
	fmt.Fprintln(w, "(In another terminal, with hcx on PATH: make build && export PATH=$PWD:$PATH)")
	fmt.Fprintln(w)
	for _, line := range strings.Split(devWalkthrough(f.NodeURLs["440000"], f.NodeURLs["510000"], f.HubURLs[0], devDirFlag(f)), "\n") {
		if line == "" {
			fmt.Fprintln(w)
		} else {
			fmt.Fprintln(w, "  "+line)
		}
	}
	dir := devDirFlag(f)
	guide := `
The dev certificates sign requests with hcx dev token` + dir + ` --cert NAME (feed-<code>, checkpoint-<code>,
auditor, province-<code>) --method M --url U --data BODY.

Rules: edit ` + filepath.Join(f.Dir, "rules") + `/<province>.yaml, then kill -HUP ` + strconv.Itoa(os.Getpid()) + `
to reload them (a file that does not load is refused and the old rules stay).

Press Ctrl-C to stop.`
	fmt.Fprintln(w, guide)
}

// devWalkthrough is the walkthrough's shell commands, the same in the README
// (with hcx dev's default addresses) and in what hcx dev prints; dirFlag is
// " --dir DIR" when hcx dev token must be told where the data is. Each step
// begins with a "# N." comment; cmd/hcx/walkthrough_test.go runs them as
// printed.
func devWalkthrough(gd, sc, hub, dirFlag string) string {
	tok := "hcx dev token" + dirFlag
	return `GD=` + gd + `
SC=` + sc + `
HUB=` + hub + `

# 1. Guangdong's operator logs in at the dev identity provider (an ID token, good for an hour)
OP=$(` + tok + ` --role operator --province 440000)

# 2. Having checked 张三's ID card in person, the operator hands out a one-time enrolment code
#    (operators say why in X-HCX-Reason; the node's audit trail keeps it)
ENROL=$(curl -s -X POST $GD/v1/enrolments -H "Authorization: Bearer $OP" -H 'X-HCX-Reason: ID card checked at the counter' \
        -d '{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三"}'); echo "$ENROL"
SUB=$(echo "$ENROL" | sed -n 's/.*"subject":"\([a-z2-7]*\)".*/\1/p')
ENROL_CODE=$(echo "$ENROL" | sed -n 's/.*"code":"\([^"]*\)".*/\1/p')

# 3. 张三 enrols with the code: the answer sets their session cookie (kept in zhangsan.jar)
curl -s -c zhangsan.jar -X POST $GD/v1/auth/enrol -d "{\"code\":\"$ENROL_CODE\"}"; echo

# 4. 张三 opens their health code (a 60-second dynamic code), still green
CODE=$(curl -s -b zhangsan.jar $GD/v1/residents/$SUB/code | sed -n 's/.*"code":"\([^"]*\)".*/\1/p'); echo "$CODE"

# 5. Guangdong's lab feed posts a positive result, signed with its certificate
#    (the token covers method, URL and body, and is good once)
LAB='{"result":"positive"}'
curl -s -X POST $GD/v1/residents/$SUB/labs -d "$LAB" \
     -H "Authorization: $(` + tok + ` --role feed --province 440000 --method POST --url $GD/v1/residents/$SUB/labs --data "$LAB")"; echo

# 6. A checkpoint device in Sichuan scans the code: red (from Guangdong's attestation in the hub's log),
#    with the masked name, the ID tail and the reasons
SCAN="{\"code\":\"$CODE\"}"
curl -s -X POST $SC/v1/verify -d "$SCAN" \
     -H "Authorization: $(` + tok + ` --role checkpoint --province 510000 --method POST --url $SC/v1/verify --data "$SCAN")"; echo

# 7. The national auditor reads Guangdong's audit trail (who did what, when and why) ...
AUDITOR=$(` + tok + ` --role auditor)
curl -s $GD/v1/audit -H "Authorization: Bearer $AUDITOR"; echo
#    ... and, with the auditor's federation certificate, the hub's attestations about 张三
curl -s $HUB/v1/subjects/$SUB -H "Authorization: $(` + tok + ` --cert auditor --url $HUB/v1/subjects/$SUB)"; echo

# 8. A checkpoint device of Guangdong's own makes its key and files its CSR; the operator approves
#    (the node issues the certificate); the device fetches it and scans a fresh code of 张三's
hcx device keygen --out dev-gate --name gate-7
ENR=$(hcx device enrol --node $GD --csr dev-gate/gate-7.csr --name gate-7 | sed -n 's/^Enrolment \([^ ]*\) filed.*/\1/p'); echo "$ENR"
curl -s -X POST $GD/v1/devices/enrolments/$ENR/approve -H "Authorization: Bearer $OP" -H 'X-HCX-Reason: gate 7 installed' \
     | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p'
hcx device fetch --node $GD --id $ENR --out dev-gate/gate-7.crt
CODE=$(curl -s -b zhangsan.jar $GD/v1/residents/$SUB/code | sed -n 's/.*"code":"\([^"]*\)".*/\1/p')
printf '{"code":"%s"}' "$CODE" > scan.json
curl -s -X POST $GD/v1/verify --data-binary @scan.json \
     -H "Authorization: $(hcx device token --cert dev-gate/gate-7.crt --key dev-gate/gate-7.key --method POST --url $GD/v1/verify --body scan.json)"; echo`
}

// devDirFlag is " --dir DIR" when hcx dev's data is not ./hcx-data, where
// hcx dev token looks by default.
func devDirFlag(f *federation) string {
	if abs, err := filepath.Abs("hcx-data"); err != nil || abs != f.Dir {
		return " --dir " + f.Dir
	}
	return ""
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
	dirFlag := devDirFlag(f)
	fmt.Fprintf(w, `
Acting as each role with curl:
  operator    OP=$(hcx dev token%[2]s --role operator --province 440000)   (an ID token, good for %[1]s)
              curl -H "Authorization: Bearer $OP" -H 'X-HCX-Reason: why' ...   (a reason on audited routes)
  auditor     AUDITOR=$(hcx dev token%[2]s --role auditor)   at the nodes, as a bearer token;
              at the hub: curl -H "Authorization: $(hcx dev token%[2]s --cert auditor --url URL)" URL
  national    NAT=$(hcx dev token%[2]s --role national)   national platform staff: confirm red CDC orders
              (POST <node>/v1/residents/SUB/orders/ID/confirm, with X-HCX-Reason)
  feed, checkpoint   curl -d "$BODY" -H "Authorization: $(hcx dev token%[2]s --role feed --province 440000 --method POST --url URL --data "$BODY")" URL
              (a request token signed by the dev certificate, for that method, URL and body, good once)
  resident    an operator's enrolment code, POST /v1/auth/enrol, then the session cookie (curl -c/-b);
              passkeys at /v1/auth/passkeys/*; or in a browser <node>/v1/auth/oidc/login?next=/v1/me
              as a resident above (binds their document); RESIDENT=$(hcx dev token%[2]s --role resident --user li-lei)
              is that resident's ID token
`, strings.TrimSuffix(devidp.IDTokenLifetime.String(), "0m0s"), dirFlag)
}

// devLimits are the default abuse limits, except that anonymous callers,
// who all come from loopback in a dev federation, share a bigger bucket.
func devLimits() *api.Limits { return api.NewLimits(devLimitsConfig()) }

func devLimitsConfig() api.LimitsConfig {
	cfg := api.DefaultLimitsConfig()
	cfg.PerRole[auth.RoleAnonymous] = api.RoleLimit{Rate: 50, Burst: 100}
	return cfg
}

// devBenchLimits are devLimits without the per-caller rates of the callers
// hcx bench plays (one checkpoint certificate, a few residents, one feed);
// the in-flight bounds per priority still shed load with 503.
func devBenchLimits() *api.Limits { return api.NewLimits(devBenchLimitsConfig()) }

func devBenchLimitsConfig() api.LimitsConfig {
	cfg := devLimitsConfig()
	for _, r := range []auth.Role{auth.RoleCheckpoint, auth.RoleResident, auth.RoleFeed} {
		cfg.PerRole[r] = api.RoleLimit{Rate: rate.Inf}
	}
	return cfg
}
