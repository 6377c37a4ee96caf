// Package e2e drives the federation of docker-compose.yml through the docker
// and docker-compose CLIs (issue 14). Its tests run only with
// HCX_E2E_DOCKER=1 (`make e2e-docker`, after `make image`), so `make test`
// stays green on machines without Docker.
package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

const project = "hcxe2e"

// endpoints are the published /readyz of every long-running service.
var endpoints = map[string]string{
	"hub-1": "https://localhost:7001", "hub-2": "https://localhost:7002", "hub-3": "https://localhost:7003",
	"node-110000": "https://localhost:8711", "node-310000": "https://localhost:8731",
	"node-440000": "https://localhost:8744", "node-510000": "https://localhost:8751",
}

type compose struct {
	t      *testing.T
	files  []string // docker-compose.yml and the suite's override
	client *http.Client
}

// exec runs a command for at most timeout and answers its combined output.
func exec(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := osexec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (c *compose) args(args ...string) []string {
	a := []string{"-p", project}
	for _, f := range c.files {
		a = append(a, "-f", f)
	}
	return append(a, args...)
}

func (c *compose) compose(args ...string) string {
	c.t.Helper()
	out, err := exec(5*time.Minute, "docker-compose", c.args(args...)...)
	if err != nil {
		c.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *compose) docker(args ...string) string {
	c.t.Helper()
	out, err := exec(2*time.Minute, "docker", args...)
	if err != nil {
		c.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func container(service string) string { return project + "_" + service + "_1" }

// ready reports whether service answers 200 on /readyz through its
// published port, verified against the federation's TLS root.
func (c *compose) ready(service string) bool {
	resp, err := c.client.Get(endpoints[service] + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until every service in services is ready, at most limit,
// and returns how long it took.
func (c *compose) waitReady(limit time.Duration, services ...string) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		var missing []string
		for _, s := range services {
			if !c.ready(s) {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			c.t.Fatalf("not ready after %v: %v", limit, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var hubs = []string{"hub-1", "hub-2", "hub-3"}

// hubGauges reads a hub member's /metrics gauges (hcx_hub_is_leader,
// hcx_hub_tree_size, …); nil if it does not answer.
func (c *compose) hubGauges(service string) map[string]int64 {
	resp, err := c.client.Get(endpoints[service] + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	return parseGauges(string(b), "hcx_hub_")
}

// parseGauges reads the counters and gauges named prefix* of a Prometheus
// text page, each summed over its series: a node labels every series with
// its province, and skipping labelled series (as this once did) read every
// node metric as 0, so the load test's fork check could never fire.
func parseGauges(page, prefix string) map[string]int64 {
	g := map[string]int64{}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		return g
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		var sum float64
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				sum += m.GetUntyped().GetValue()
			default:
				continue
			}
			g[name] = int64(sum)
		}
	}
	return g
}

// leader is the hub member that reports itself leader ("" if none does).
func (c *compose) leader() string {
	for _, h := range hubs {
		if c.hubGauges(h)["hcx_hub_is_leader"] == 1 {
			return h
		}
	}
	return ""
}

// waitHubConsistent waits until exactly one member leads and every member
// holds the same log tree and checkpoint size, at most limit.
func (c *compose) waitHubConsistent(limit time.Duration) {
	c.t.Helper()
	start := time.Now()
	for {
		leaders, sizes, cps := 0, map[int64]bool{}, map[int64]bool{}
		answered := 0
		for _, h := range hubs {
			g := c.hubGauges(h)
			if g == nil {
				continue
			}
			answered++
			leaders += int(g["hcx_hub_is_leader"])
			sizes[g["hcx_hub_tree_size"]] = true
			cps[g["hcx_hub_checkpoint_size"]] = true
		}
		if answered == len(hubs) && leaders == 1 && len(sizes) == 1 && len(cps) == 1 {
			return
		}
		if time.Since(start) > limit {
			c.t.Fatalf("hub not consistent after %v: %d of %d members answer, %d leaders, tree sizes %v, checkpoint sizes %v", limit, answered, len(hubs), leaders, sizes, cps)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func allServices() []string {
	var s []string
	for k := range endpoints {
		s = append(s, k)
	}
	return s
}

// proxied are the nodes whose hub traffic goes through the suite's TCP
// proxy (proxy_test.go) for the whole run: a writer and a verifier.
var proxied = []hcx.ProvinceCode{"440000", "510000"}

// startCompose brings docker-compose.yml up with the suite's override (the
// proxied nodes reach the hub through px, started here on the docker0
// gateway), waits until
// every member is ready and the hub consistent, and answers the federation
// with its credentials. Cleanup takes everything down, volumes included.
func startCompose(t *testing.T) (*compose, *fed, *tcpProxy) {
	if os.Getenv("HCX_E2E_DOCKER") != "1" {
		t.Skip("set HCX_E2E_DOCKER=1 (make e2e-docker) to run the federation in Docker")
	}
	base, err := filepath.Abs("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	gateway := hostGateway(t)
	dir := t.TempDir()
	px := startProxy(t, net.JoinHostPort(gateway, "7000"), nil) // where the proxied nodes find hub-N:7000
	c := &compose{t: t, files: []string{base, writeOverride(t, base, dir, gateway, proxied)}}
	start := time.Now()
	c.up()
	rootFile := filepath.Join(t.TempDir(), "tls-root.crt")
	c.docker("cp", container("init")+":/material/ca/tls-root.crt", rootFile)
	root := readRoot(t, rootFile)
	c.client = newClient(root, 3*time.Second)
	c.waitReady(3*time.Minute, allServices()...)
	c.waitHubConsistent(time.Minute)
	t.Logf("docker-compose up: every member ready after %v (load average %s)", time.Since(start).Round(time.Millisecond), loadavg())
	return c, newFed(t, c, gateway), px
}

// up brings the compose project up afresh (down -v first: a previous run
// interrupted) and takes it down, volumes included, when the test ends,
// with the last logs if it failed.
func (c *compose) up() {
	c.compose("down", "-v", "--remove-orphans")
	c.t.Cleanup(func() {
		if c.t.Failed() {
			out, _ := exec(time.Minute, "docker-compose", c.args("logs", "--tail", "40")...)
			c.t.Logf("logs:\n%s", out)
		}
		exec(3*time.Minute, "docker-compose", c.args("down", "-v", "--remove-orphans")...)
	})
	c.compose("up", "-d")
}

// readRoot reads the federation's TLS root from a PEM file.
func readRoot(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// fault is one fault of the suite: inject breaks the federation (and
// returns once it has lasted), heal mends it. service is a compose service,
// or "leader" / "follower" for the hub member in that role when the fault
// starts.
type fault struct {
	name    string
	service string
	inject  func(c *compose, ctr string)
	heal    func(c *compose, ctr string)
}

// faultHold is how long a partition, a pause or a drop lasts.
const faultHold = 5 * time.Second

// convergeLimit bounds the wait, after the heal, for every province to
// answer the same colour and for every acknowledged write to be visible.
const convergeLimit = 10 * time.Second

func kill(c *compose, ctr string)    { c.docker("kill", "-s", "KILL", ctr) }
func start(c *compose, ctr string)   { c.docker("start", ctr) }
func pause(c *compose, ctr string)   { c.docker("pause", ctr); time.Sleep(faultHold) }
func unpause(c *compose, ctr string) { c.docker("unpause", ctr) }
func disconnect(c *compose, ctr string) {
	c.docker("network", "disconnect", project+"_hcx", ctr)
	time.Sleep(faultHold)
}

// reconnect puts the container back on the network under its service name.
func reconnect(service string) func(c *compose, ctr string) {
	return func(c *compose, ctr string) {
		c.docker("network", "connect", "--alias", service, project+"_hcx", ctr)
	}
}

// drop makes the container's network namespace drop every packet in the
// given chains (INPUT, OUTPUT): silent loss, no reset, no unreachable.
func drop(chains ...string) func(c *compose, ctr string) {
	return func(c *compose, ctr string) {
		iptables(c, ctr, "-A", chains)
		time.Sleep(faultHold)
	}
}

func undrop(chains ...string) func(c *compose, ctr string) {
	return func(c *compose, ctr string) { iptables(c, ctr, "-D", chains) }
}

// iptables adds (-A) or deletes (-D) a DROP rule in each chain, inside the
// container's network namespace (nsenter; the suite runs as root).
func iptables(c *compose, ctr, op string, chains []string) {
	pid := strings.TrimSpace(c.docker("inspect", "-f", "{{.State.Pid}}", ctr))
	for _, ch := range chains {
		if out, err := exec(time.Minute, "nsenter", "-t", pid, "-n", "iptables", op, ch, "-j", "DROP"); err != nil {
			c.t.Fatalf("nsenter -t %s -n iptables %s %s -j DROP: %v\n%s", pid, op, ch, err, out)
		}
	}
}

// faults are the suite's faults, in the order they run.
func faults(px *tcpProxy) []fault {
	return []fault{
		{"kill -9 and restart the hub leader", "leader", kill, start},
		{"kill -9 and restart a hub follower", "follower", kill, start},
		{"pause 5s the hub leader", "leader", pause, unpause},
		{"pause 5s a province node (writer)", "node-440000", pause, unpause},
		{"kill -9 and restart a province node mid-feed (writer)", "node-110000", kill, start},
		{"partition 5s a hub follower", "follower", disconnect, nil},
		{"partition 5s the hub leader", "leader", disconnect, nil},
		{"partition 5s a province node (writer)", "node-440000", disconnect, nil},
		{"drop 5s all packets in and out of the hub leader (iptables)", "leader", drop("INPUT", "OUTPUT"), undrop("INPUT", "OUTPUT")},
		{"drop 5s packets into a hub follower only (iptables INPUT)", "follower", drop("INPUT"), undrop("INPUT")},
		{"drop 5s packets out of the hub leader only (iptables OUTPUT)", "leader", drop("OUTPUT"), undrop("OUTPUT")},
		{"stop a hub follower, start it at another address", "follower", func(*compose, string) {}, moveTo(movedIP)},
		{"delay and reorder 10s node-hub traffic (TCP proxy, up to 400 ms a chunk)", "proxy",
			func(c *compose, _ string) { px.disturb(400 * time.Millisecond); time.Sleep(2 * faultHold) },
			func(c *compose, _ string) { px.disturb(0) }},
	}
}

// negativeControl shows that the checks catch a loss: an acknowledgement
// the load invents, for a registered resident nobody wrote about, must be
// reported lost (and nothing else).
func negativeControl(t *testing.T, l *load) {
	doc := l.take(writers[0], 1)
	if len(doc) == 0 {
		t.Fatal("negative control: no resident left")
	}
	l.mu.Lock()
	l.acked = append(l.acked, ack{p: writers[0], sub: l.f.subject(writers[0], doc[0]), id: "invented", at: time.Now()})
	l.mu.Unlock()
	var found []string
	l.errorf = func(format string, args ...any) { found = append(found, fmt.Sprintf(format, args...)) }
	res := l.check("negative control", 2*time.Second)
	l.errorf = t.Errorf
	if res.lost != 1 || len(found) != 1 || !strings.Contains(found[0], "invented") {
		t.Errorf("negative control: an invented acknowledgement gave %d lost and the reports %q, want it reported lost alone", res.lost, found)
	}
}

// faultResult is one row of the results table.
type faultResult struct {
	fault    string
	recovery time.Duration // heal → every member ready, one leader, equal hub sizes
	checkResult
}

// TestComposeFaults brings the compose federation up and, under a steady
// load of writes at two provinces, verifications at the two others and
// appends and reads on the hub, injects one fault at a time, heals it,
// waits until the federation is whole and runs every check: no
// acknowledged write lost, no duplicate, the hub history linearizable,
// the same colour everywhere, consistent checkpoints.
func TestComposeFaults(t *testing.T) {
	c, f, px := startCompose(t)
	l := newLoad(f)
	var results []faultResult
	for _, ft := range faults(px) {
		service := ft.service
		switch service {
		case "leader":
			if service = c.leader(); service == "" {
				t.Fatal("no hub member reports itself leader")
			}
		case "follower":
			service = "hub-1"
			if service == c.leader() {
				service = "hub-3"
			}
		}
		heal := ft.heal
		if heal == nil {
			heal = reconnect(service)
		}
		ctr := container(service)
		l.begin()
		time.Sleep(2 * time.Second) // load before the fault
		l.redden()
		ft.inject(c, ctr)
		if strings.HasPrefix(ft.name, "kill") && c.ready(service) {
			t.Errorf("%s: %s still answers ready after SIGKILL", ft.name, service)
		}
		healed := time.Now()
		heal(c, ctr)
		c.waitReady(2*time.Minute, allServices()...)
		c.waitHubConsistent(time.Minute)
		recovery := time.Since(healed)
		time.Sleep(time.Second) // load after the heal
		l.end()
		name := ft.name
		if service != ft.service && ft.service != "proxy" {
			name += " (" + service + ")"
		}
		results = append(results, faultResult{fault: name, recovery: recovery, checkResult: l.check(name, convergeLimit)})
		t.Logf("%s: recovered in %v; %+v", name, recovery.Round(10*time.Millisecond), results[len(results)-1].checkResult)
		l.refill(writers[0], 200)
		l.refill(writers[1], 200)
		if len(results) == 1 {
			negativeControl(t, l)
		}
	}
	if px.chunks.Load() == 0 {
		t.Error("the TCP proxy delayed nothing: the proxied nodes did not reach the hub through it")
	}
	var tbl strings.Builder
	fmt.Fprintln(&tbl, "| fault | recovery | acked writes | lost | unknown outcome (cum.) | dup seq | dup n | hub ops (porcupine), of unknown outcome | same colour everywhere after |\n|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Fprintf(&tbl, "| %s | %v | %d | %d | %d | %d | %d | %d, %d | %v |\n", r.fault, r.recovery.Round(10*time.Millisecond), r.acked, r.lost, r.unknown, r.dupSeq, r.dupN, r.hubOps, r.hubUnknown, r.converge.Round(10*time.Millisecond))
	}
	if l.views == 0 {
		t.Errorf("no node served its view of the hub log (bundle header): %v", l.noView)
	}
	l.mu.Lock()
	t.Logf("verifications during the faults: %v; node views checked against the hub: %d, not served: %v", l.verified, l.views, l.noView)
	l.mu.Unlock()
	t.Logf("results (load average %s):\n%s", loadavg(), tbl.String())
}
