// Package e2e drives the federation of docker-compose.yml through the docker
// and docker-compose CLIs (issue 14). Its tests run only with
// HCX_E2E_DOCKER=1 (`make e2e-docker`, after `make image`), so `make test`
// stays green on machines without Docker.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	file   string
	client *http.Client
}

func (c *compose) cmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (c *compose) compose(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(5*time.Minute, "docker-compose", append([]string{"-p", project, "-f", c.file}, args...)...)
	if err != nil {
		c.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *compose) docker(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(2*time.Minute, "docker", args...)
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
	g := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		var name string
		var v int64
		if n, _ := fmt.Sscanf(line, "%s %d", &name, &v); n == 2 && strings.HasPrefix(name, "hcx_hub_") && !strings.Contains(name, "{") {
			g[name] = v
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

func startCompose(t *testing.T) *compose {
	if os.Getenv("HCX_E2E_DOCKER") != "1" {
		t.Skip("set HCX_E2E_DOCKER=1 (make e2e-docker) to run the federation in Docker")
	}
	file, err := filepath.Abs("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	c := &compose{t: t, file: file}
	c.compose("down", "-v", "--remove-orphans") // a previous run interrupted
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.cmd(time.Minute, "docker-compose", "-p", project, "-f", file, "logs", "--tail", "40")
			t.Logf("logs:\n%s", out)
		}
		c.cmd(3*time.Minute, "docker-compose", "-p", project, "-f", file, "down", "-v", "--remove-orphans")
	})
	start := time.Now()
	c.compose("up", "-d")
	rootFile := filepath.Join(t.TempDir(), "tls-root.crt")
	c.docker("cp", container("init")+":/material/ca/tls-root.crt", rootFile)
	b, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", rootFile)
	}
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	c.client = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}}}
	c.waitReady(3*time.Minute, allServices()...)
	c.waitHubConsistent(time.Minute)
	t.Logf("docker-compose up: every member ready after %v", time.Since(start).Round(time.Millisecond))
	return c
}

// TestComposeFaults brings the compose federation up, then kills, freezes
// and restarts members one at a time, each time waiting until the whole
// federation answers ready again and recording how long that took.
func TestComposeFaults(t *testing.T) {
	c := startCompose(t)
	type result struct {
		fault    string
		recovery time.Duration
	}
	var results []result
	for _, f := range []struct {
		name    string
		service string
		inject  func(ctr string)
		heal    func(ctr string)
	}{
		{"kill -9 and restart the hub leader", "leader", func(ctr string) { c.docker("kill", "-s", "KILL", ctr) }, func(ctr string) { c.docker("start", ctr) }},
		{"kill -9 and restart a hub follower", "follower", func(ctr string) { c.docker("kill", "-s", "KILL", ctr) }, func(ctr string) { c.docker("start", ctr) }},
		{"pause 5s a province node", "node-440000", func(ctr string) { c.docker("pause", ctr); time.Sleep(5 * time.Second) }, func(ctr string) { c.docker("unpause", ctr) }},
		{"kill -9 and restart a province node", "node-110000", func(ctr string) { c.docker("kill", "-s", "KILL", ctr) }, func(ctr string) { c.docker("start", ctr) }},
		{"partition 5s a hub member", "hub-2", func(ctr string) {
			c.docker("network", "disconnect", project+"_hcx", ctr)
			time.Sleep(5 * time.Second)
		}, func(ctr string) { c.docker("network", "connect", "--alias", "hub-2", project+"_hcx", ctr) }},
	} {
		service := f.service
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
		ctr := container(service)
		f.inject(ctr)
		if strings.HasPrefix(f.name, "kill") && c.ready(service) {
			t.Errorf("%s: %s still answers ready after SIGKILL", f.name, service)
		}
		healed := time.Now()
		f.heal(ctr)
		c.waitReady(2*time.Minute, allServices()...)
		c.waitHubConsistent(time.Minute)
		results = append(results, result{f.name + " (" + service + ")", time.Since(healed)})
	}
	var tbl strings.Builder
	fmt.Fprintln(&tbl, "| fault | recovery (heal → every member ready, one leader, equal hub tree and checkpoint sizes) |\n|---|---|")
	for _, r := range results {
		fmt.Fprintf(&tbl, "| %s | %v |\n", r.fault, r.recovery.Round(10*time.Millisecond))
	}
	t.Logf("results:\n%s", tbl.String())
}
