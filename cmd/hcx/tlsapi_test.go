package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

func TestAPIsRefusePlainHTTPOffLoopback(t *testing.T) {
	nodeBase := []string{"--province", "440000", "--dir", t.TempDir(), "--cert", "p.crt", "--key", "p.key", "--root", "root.crt", "--keys", "keys.json"}
	hubBase := []string{"-root", "root.crt", "-cert", "hub-1.crt", "-key", "hub-1.key", "-dir", t.TempDir(), "-insecure-plaintext-members", "-raft", "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		run  func(context.Context, []string, io.Writer, io.Writer) error
		args []string
		want string
	}{
		{"reject/node-plain-on-all-addresses", runNode, append([]string{"--listen", "0.0.0.0:0", "--hub", "http://127.0.0.1:8700"}, nodeBase...), "not a loopback address"},
		{"reject/node-plain-on-empty-host", runNode, append([]string{"--listen", ":8744", "--hub", "http://127.0.0.1:8700"}, nodeBase...), "not a loopback address"},
		{"reject/node-plain-on-lan-ip", runNode, append([]string{"--listen", "192.168.1.10:8744", "--hub", "http://127.0.0.1:8700"}, nodeBase...), "--tls-cert"},
		{"reject/node-cert-without-key", runNode, append([]string{"--listen", "0.0.0.0:0", "--tls-cert", "a.crt", "--hub", "http://127.0.0.1:8700"}, nodeBase...), "give both --tls-cert and --tls-key"},
		{"reject/node-tls-and-insecure", runNode, append([]string{"--tls-cert", "a.crt", "--tls-key", "a.key", "--insecure-plaintext-api", "--hub", "http://127.0.0.1:8700"}, nodeBase...), "exclude each other"},
		{"reject/node-https-hub-without-hub-ca", runNode, append([]string{"--hub", "https://hub-1.example:8700"}, nodeBase...), "--hub-ca"},
		{"reject/node-plain-hub-on-another-machine", runNode, append([]string{"--hub", "http://hub-1.example:8700"}, nodeBase...), "plain HTTP to another machine"},
		{"reject/node-hub-not-a-url", runNode, append([]string{"--hub", "hub-1:8700"}, nodeBase...), "want a URL"},
		{"reject/node-tls-cert-unreadable", runNode, append([]string{"--tls-cert", "missing.crt", "--tls-key", "missing.key", "--hub", "http://127.0.0.1:8700"}, nodeBase...), "--tls-cert"},
		{"reject/hub-plain-on-all-addresses", runHub, append([]string{"-http", "0.0.0.0:7000"}, hubBase...), "-api-tls-cert"},
		{"reject/hub-api-cert-without-key", runHub, append([]string{"-http", "127.0.0.1:0", "-api-tls-cert", "a.crt"}, hubBase...), "give both --api-tls-cert and --api-tls-key"},
		{"reject/dev-on-all-addresses", runDev, []string{"--dir", t.TempDir(), "--host", "0.0.0.0"}, "--tls"},
		{"reject/dev-on-lan-ip", runDev, []string{"--dir", t.TempDir(), "--host", "10.1.2.3"}, "not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := tc.run(context.Background(), tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
			if out.Len() > 0 {
				t.Errorf("refused, yet printed %q", out.String())
			}
		})
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8744": true, "127.3.4.5:1": true, "[::1]:8700": true, "localhost:8744": true, "127.0.0.1": true,
		"0.0.0.0:8744": false, ":8744": false, "[::]:8700": false, "10.0.0.1:8744": false, "hub-1.example:8700": false,
	} {
		if got := isLoopbackAddr(addr); got != want {
			t.Errorf("isLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// startCommand runs a long-running command (runHub, runNode) until the test
// ends and returns the first match of started in its output.
func startCommand(t *testing.T, run func(context.Context, []string, io.Writer, io.Writer) error, args []string, started *regexp.Regexp) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%v: %v\n%s", args, err, errOut.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := started.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%v ended: %v\n%s%s", args, err, out.String(), errOut.String())
		default:
		}
	}
	t.Fatalf("%v did not start:\n%s%s", args, out.String(), errOut.String())
	return nil
}

func tlsClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func getStatus(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// `hcx hub` and `hcx node` with server certificates from `hcx ca issue
// --server`: the node follows the hub over TLS, verifying it against the
// CA's TLS root, and serves its own API over TLS.
func TestHubAndNodeFromTheCAServeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	mustCA := func(args ...string) {
		t.Helper()
		if out, err := runCAForTest(t, append(args, "--dir", ca)...); err != nil {
			t.Fatalf("hcx ca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	mustCA("init", "--name", "test root")
	mustCA("issue", "--role", "hub", "--name", "hub-1")
	mustCA("issue", "--server", "--name", "hub-1-api", "--dns", "localhost", "--ip", "127.0.0.1")
	mustCA("issue", "--role", "province", "--province", "440000", "--name", "province-440000")
	mustCA("issue", "--server", "--name", "node-440000-api", "--dns", "localhost", "--ip", "127.0.0.1")
	issued := func(name string) string { return filepath.Join(ca, "issued", name) }
	tlsRoot := filepath.Join(ca, certs.TLSRootCertFile)

	hub := startCommand(t, runHub, []string{"-id", "hub-1", "-dir", filepath.Join(dir, "hub-1"), "-raft", "127.0.0.1:0", "-http", "127.0.0.1:0", "-bootstrap",
		"-root", filepath.Join(ca, "root.crt"), "-cert", issued("hub-1.crt"), "-key", issued("hub-1.key"), "-insecure-plaintext-members",
		"-api-tls-cert", issued("hub-1-api.crt"), "-api-tls-key", issued("hub-1-api.key")},
		regexp.MustCompile(`hub member hub-1: API (https://\S+), Raft`))
	hubURL := hub[1]
	// `hcx ca publish` verifies the hub with the CA's own TLS root.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := runCAForTest(t, "publish", "--hub", hubURL, "--dir", ca)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hcx ca publish: %v\n%s", err, out)
		}
	}

	keys := filepath.Join(dir, "keys.json")
	b, _ := json.Marshal(nodeKeys{SubjectKeyVersion: 1, SubjectKey: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		FieldKeyVersion: 1, FieldKeys: map[int]string{1: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 16))}})
	if err := os.WriteFile(keys, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs("../../configs/rules/440000.yaml")
	if err != nil {
		t.Fatal(err)
	}
	node := startCommand(t, runNode, []string{"--province", "440000", "--dir", filepath.Join(dir, "node"), "--listen", "127.0.0.1:0",
		"--hub", hubURL, "--hub-ca", tlsRoot, "--cert", issued("province-440000.crt"), "--key", issued("province-440000.key"),
		"--root", filepath.Join(ca, "root.crt"), "--keys", keys, "--rules", rules,
		"--tls-cert", issued("node-440000-api.crt"), "--tls-key", issued("node-440000-api.key")},
		regexp.MustCompile(`serving on (https://\S+),`))
	nodeURL := node[1]

	anchor, err := certs.ReadTLSRoot(tlsRoot)
	if err != nil {
		t.Fatal(err)
	}
	good := tlsClient(certs.ClientTLS(anchor, ""))
	// Ready means the node has the trust list, which it read from the hub
	// log over TLS. Polled at the anonymous rate limit (2 per second per
	// address), so that the polls do not spend the bucket the curl check
	// below needs.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		st, err := getStatus(good, nodeURL+"/readyz")
		if err == nil && st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node over TLS not ready: %d, %v", st, err)
		}
	}
	if st, err := getStatus(good, hubURL+"/v1/checkpoint"); err != nil || st != http.StatusOK {
		t.Fatalf("hub checkpoint over TLS: %d, %v", st, err)
	}
	for _, tc := range []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"reject/plain-http-to-the-node", http.DefaultClient, strings.Replace(nodeURL, "https://", "http://", 1) + "/healthz"},
		{"reject/node-under-another-name", tlsClient(certs.ClientTLS(anchor, "node-510000.example")), nodeURL + "/healthz"},
		{"reject/hub-under-another-name", tlsClient(certs.ClientTLS(anchor, "hub-9.example")), hubURL + "/v1/checkpoint"},
		{"reject/no-trust-in-the-tls-root", http.DefaultClient, nodeURL + "/healthz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := getStatus(tc.c, tc.url)
			if err == nil && st != http.StatusBadRequest { // Go answers plain HTTP on a TLS port with 400
				t.Fatalf("status %d, want a refused connection", st)
			}
		})
	}
	if curl, err := exec.LookPath("curl"); err != nil {
		t.Log("curl is not installed: skipping the standard-client check")
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "*", "--cacert", tlsRoot, "-o", "/dev/null", "-w", "%{http_code}", nodeURL+"/healthz").CombinedOutput()
		if err != nil || string(out) != "200" {
			t.Fatalf("curl --cacert tls-root.crt %s/healthz: %q, %v", nodeURL, out, err)
		}
	}
}

// `hcx dev --tls`: a whole federation over TLS; a lab result at Guangdong
// reaches Sichuan through the hub, followed over TLS.
func TestDevFederationOverTLS(t *testing.T) {
	var logOut io.Writer = io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := startFederation(ctx, federationConfig{Dir: t.TempDir(), Provinces: []hcx.ProvinceCode{"440000", "510000"}, HubMembers: 1,
		Logger: slog.New(slog.NewTextHandler(logOut, nil)), TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for _, u := range append(f.HubURLs, f.NodeURLs["440000"], f.NodeURLs["510000"]) {
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("%s is not https", u)
		}
	}
	var guide bytes.Buffer
	printDevGuide(&guide, f)
	if !strings.Contains(guide.String(), "CURL_CA_BUNDLE="+filepath.Join(f.Dir, "ca", certs.TLSRootCertFile)) {
		t.Errorf("the guide does not say how curl verifies the servers:\n%s", guide.String())
	}

	gd, sc := f.NodeURLs["440000"], f.NodeURLs["510000"]
	// Every caller proves itself over TLS: the operator's enrolment code
	// starts the resident's session, the feed and the checkpoint sign.
	sub, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "440106199003070028", "name": "张三"})
	waitKnown(t, f, f.asFeed("440000"), gd+"/readyz")
	waitKnown(t, f, f.asCheckpoint("510000"), sc+"/readyz")
	var code struct {
		Code string `json:"code"`
	}
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
		t.Fatalf("code: status %d", st)
	}
	if st := callAs(t, f.client(), f.asFeed("440000"), "POST", gd+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive"}, nil); st != http.StatusOK {
		t.Fatalf("lab result: status %d", st)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var v struct {
			Colour hcx.Colour `json:"colour"`
		}
		if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": code.Code}, &v); st == http.StatusOK && v.Colour == hcx.Red {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Sichuan never saw Guangdong's positive result through the hub over TLS")
		}
	}

	// A node whose hub client trusts another TLS root cannot follow this hub.
	other, err := certs.NewTLSRoot("another TLS root", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange.NewHubClient(f.HubURLs, hubHTTPClient(certs.ClientTLS(other.Cert, ""))).Trust(ctx); err == nil {
		t.Error("a hub client trusting another TLS root read the hub's trust list")
	}
	// Revoking the hub member's API certificate shuts out a client that
	// checks the trust list's revocations.
	name, err := f.PKI.CA.Find("api-hub-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.PKI.CA.Revoke(name.KID, time.Now().Add(-time.Second), "key-compromise"); err != nil {
		t.Fatal(err)
	}
	ts, err := f.PKI.CA.TrustStore()
	if err != nil {
		t.Fatal(err)
	}
	revoked := exchange.NewHubClient(f.HubURLs, hubHTTPClient(certs.ClientTLSFrom(f.TLSRoot, "", func() *certs.TrustStore { return ts })))
	if _, err := revoked.Trust(ctx); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a revoked hub API certificate was accepted: %v", err)
	}
}

// `hcx dev --tls` reuses its server certificates across restarts, and issues
// a new one when the address it serves changes.
func TestDevServerTLSIsReusedUntilTheAddressChanges(t *testing.T) {
	now := time.Now()
	ca, err := certs.InitCA(filepath.Join(t.TempDir(), "ca"), "dev root", now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := devServerTLS(ca, "api-440000", "127.0.0.1:8744", now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := devServerTLS(ca, "api-440000", "127.0.0.1:8744", now.Add(time.Minute))
	if err != nil || again.KID != first.KID {
		t.Fatalf("restart: kid %v (%v), want the same %s", again, err, first.KID)
	}
	moved, err := devServerTLS(ca, "api-440000", "10.9.8.7:8744", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if moved.KID == first.KID || !strings.HasPrefix(moved.Name, "api-440000.") {
		t.Fatalf("new address: %s %s, want a new certificate named api-440000.<time>", moved.Name, moved.KID)
	}
	if err := moved.Cert.VerifyHostname("10.9.8.7"); err != nil {
		t.Errorf("the new certificate does not name the new address: %v", err)
	}
	all, err := devServerTLS(ca, "api-510000", "0.0.0.0:8751", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := all.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("listening on every address, the certificate lacks loopback: %v", err)
	}
	if name, err := os.Hostname(); err == nil {
		if err := all.Cert.VerifyHostname(name); err != nil {
			t.Errorf("listening on every address, the certificate lacks the host name: %v", err)
		}
	}
}
