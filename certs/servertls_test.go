package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveTLS starts a real HTTPS server on loopback presenting cfg and
// answering "ok".
func serveTLS(t *testing.T, cfg *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// get fetches url with a client using cfg and returns the body or the error.
func get(t *testing.T, cfg *tls.Config, url string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return string(b), err
}

func newTestTLSRoot(t *testing.T) *TLSRoot {
	t.Helper()
	root, err := NewTLSRoot("test TLS root", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func issueLocalServer(t *testing.T, root *TLSRoot, nb, na time.Time) *TLSIdentity {
	t.Helper()
	id, err := IssueServerTLS(root, ServerTLSRequest{Name: "node-440000", DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: nb, NotAfter: na})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestServerTLSVerifiedByGoClient(t *testing.T) {
	now := time.Now()
	root := newTestTLSRoot(t)
	id := issueLocalServer(t, root, now.Add(-time.Minute), now.Add(time.Hour))
	srv := serveTLS(t, ServerTLS(id))
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	localhost := "https://localhost:" + strconv.Itoa(port)

	body, err := get(t, ClientTLS(root.Cert, ""), srv.URL)
	if err != nil || body != "ok" {
		t.Fatalf("by IP: %q, %v", body, err)
	}
	if body, err := get(t, ClientTLS(root.Cert, ""), localhost); err != nil || body != "ok" {
		t.Fatalf("by DNS name: %q, %v", body, err)
	}

	other := newTestTLSRoot(t)
	expired := ClientTLS(root.Cert, "")
	expired.Time = func() time.Time { return now.Add(2 * time.Hour) }
	notYet := ClientTLS(root.Cert, "")
	notYet.Time = func() time.Time { return now.Add(-2 * time.Hour) }
	tls12 := ClientTLS(root.Cert, "")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		url  string
		want string
	}{
		{"reject/wrong-host-name", ClientTLS(root.Cert, "node-510000.example"), srv.URL, "not node-510000.example"},
		{"reject/another-tls-root", ClientTLS(other.Cert, ""), srv.URL, "unknown authority"},
		{"reject/expired", expired, srv.URL, "expired"},
		{"reject/not-yet-valid", notYet, srv.URL, "not yet valid"},
		{"reject/tls-1.2-client", tls12, srv.URL, "protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := get(t, tc.cfg, tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, %v; want an error containing %q", body, err, tc.want)
			}
		})
	}
}

// A hub member's TLS certificate is signed by the SM2 national root, which
// no standard TLS client verifies: a client of the public API refuses it.
func TestServerTLSRefusesHubMemberCertificate(t *testing.T) {
	now := time.Now()
	nat, err := NewRoot("national", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	member, err := IssueTLS(nat, "hub-1", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, ServerTLS(member))
	if body, err := get(t, ClientTLS(newTestTLSRoot(t).Cert, ""), srv.URL); err == nil {
		t.Fatalf("a certificate from the SM2 root passed: %q", body)
	}
}

func TestServerTLSRevokedInTrustStore(t *testing.T) {
	now := time.Now()
	root := newTestTLSRoot(t)
	id := issueLocalServer(t, root, now.Add(-time.Minute), now.Add(time.Hour))
	srv := serveTLS(t, ServerTLS(id))
	nat, err := NewRoot("national", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewTrustStore(nat.Cert)
	if err != nil {
		t.Fatal(err)
	}
	var current *TrustStore // nil: no trust list known yet
	cfg := ClientTLSFrom(root.Cert, "", func() *TrustStore { return current })
	if _, err := get(t, cfg, srv.URL); err != nil {
		t.Fatalf("no trust store yet: %v", err)
	}
	current = ts
	ts.Revoke(id.KID, now.Add(time.Hour)) // revoked from a later time on
	if _, err := get(t, cfg, srv.URL); err != nil {
		t.Fatalf("revoked only from later: %v", err)
	}
	ts.Revoke(id.KID, now.Add(-time.Second))
	_, err = get(t, cfg, srv.URL)
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked certificate: got %v, want ErrRevoked", err)
	}
	if _, err := get(t, ClientTLS(root.Cert, ""), srv.URL); err != nil {
		t.Fatalf("without a trust store revocation is not checked: %v", err)
	}
}

func TestCAIssuesServerTLSFromItsTLSRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir, "test national root", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, TLSRootCertFile)); err == nil {
		t.Fatal("the TLS root exists before it is needed")
	}
	now := time.Now()
	for _, tc := range []struct {
		name string
		req  ServerTLSRequest
		want string
	}{
		{"reject/no-names", ServerTLSRequest{Name: "node-1", NotBefore: now, NotAfter: now.Add(time.Hour)}, "--dns"},
		{"reject/bad-name", ServerTLSRequest{Name: "../x", DNSNames: []string{"a"}, NotBefore: now, NotAfter: now.Add(time.Hour)}, "name"},
		{"reject/ends-before-start", ServerTLSRequest{Name: "node-1", DNSNames: []string{"a"}, NotBefore: now, NotAfter: now.Add(-time.Hour)}, "before it starts"},
		{"reject/outlives-root", ServerTLSRequest{Name: "node-1", DNSNames: []string{"a"}, NotBefore: now, NotAfter: now.Add(RootValidity + 24*time.Hour)}, "shorten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.IssueServerTLS(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	id, err := ca.IssueServerTLS(ServerTLSRequest{Name: "node-440000", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{TLSRootKeyFile, "issued/node-440000.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", f, st, err)
		}
	}
	// The stored identity loads and serves; a reopened CA keeps its TLS root.
	loaded, err := LoadTLSIdentity(filepath.Join(dir, "issued", "node-440000.crt"), filepath.Join(dir, "issued", "node-440000.key"))
	if err != nil || loaded.KID != id.KID {
		t.Fatalf("load: %v, %v", loaded, err)
	}
	ca2, err := OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	root2, err := ca2.TLSRoot()
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := ReadTLSRoot(filepath.Join(dir, TLSRootCertFile))
	if err != nil || !anchor.Equal(root2.Cert) {
		t.Fatalf("TLS root changed on reopening: %v", err)
	}
	srv := serveTLS(t, ServerTLS(loaded))
	if body, err := get(t, ClientTLS(anchor, ""), srv.URL); err != nil || body != "ok" {
		t.Fatalf("%q, %v", body, err)
	}
	if _, err := ReadTLSRoot(filepath.Join(dir, "root.crt")); err == nil || !strings.Contains(err.Error(), TLSRootCertFile) {
		t.Fatalf("the SM2 national root was taken as TLS root: %v", err)
	}
	// Revoking it in the CA puts it in the revocations a trust list carries.
	if err := ca2.Revoke(id.KID, now, "superseded"); err != nil {
		t.Fatal(err)
	}
	ts, err := ca2.TrustStore()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, ClientTLSFrom(anchor, "", func() *TrustStore { return ts }), srv.URL); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked in the CA: got %v, want ErrRevoked", err)
	}
}

// Standard clients (curl with OpenSSL 3) verify a server certificate from the
// TLS root, and cannot verify one against the SM2 national root: the reason
// the TLS root exists.
func TestServerTLSWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: the standard-client check needs it")
	}
	now := time.Now()
	dir := t.TempDir()
	ca, err := InitCA(filepath.Join(dir, "ca"), "test national root", now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.IssueServerTLS(ServerTLSRequest{Name: "node-440000", DNSNames: []string{"localhost"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, ServerTLS(id))
	url := "https://localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port) + "/"
	run := func(cacert string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "*", "--cacert", cacert, url).CombinedOutput()
		return string(out), err
	}
	if out, err := run(filepath.Join(dir, "ca", TLSRootCertFile)); err != nil || out != "ok" {
		t.Fatalf("curl --cacert tls-root.crt: %q, %v", out, err)
	}
	if out, err := run(filepath.Join(dir, "ca", "root.crt")); err == nil {
		t.Fatalf("curl verified against the SM2 root: %q", out)
	}
	other, err := InitCA(filepath.Join(dir, "other"), "another root", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.TLSRoot(); err != nil {
		t.Fatal(err)
	}
	if out, err := run(filepath.Join(dir, "other", TLSRootCertFile)); err == nil {
		t.Fatalf("curl verified against another TLS root: %q", out)
	}
}
