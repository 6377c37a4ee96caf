package consensus

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// A member with Config.APITLS serves its public API over TLS: its URL is
// https, a client verifying against the TLS root gets the API, and plain
// HTTP or another TLS root does not.
func TestMemberServesItsPublicAPIOverTLS(t *testing.T) {
	p := newPKI(t, 1)
	now := time.Now()
	root, err := certs.NewTLSRoot("test TLS root", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := certs.IssueServerTLS(root, certs.ServerTLSRequest{Name: "hub-1-api", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: now, NotAfter: now.Add(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	h := startOne(t, p, t.TempDir(), func(c *Config) {
		c.NoAPI = false
		c.Handler = func(*Hub) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "public api") })
		}
		c.APITLS = certs.ServerTLS(id)
	})
	defer h.Close()
	if !strings.HasPrefix(h.URL(), "https://") {
		t.Fatalf("URL %s, want https", h.URL())
	}
	get := func(c *http.Client, url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	client := func(anchor *certs.TLSRoot) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientTLS(anchor.Cert, "")}}
	}
	if body, err := get(client(root), h.URL()+"/"); err != nil || body != "public api" {
		t.Fatalf("over TLS: %q, %v", body, err)
	}
	other, err := certs.NewTLSRoot("another TLS root", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := get(client(other), h.URL()+"/"); err == nil {
		t.Fatalf("a client trusting another TLS root got %q", body)
	}
	if body, err := get(http.DefaultClient, strings.Replace(h.URL(), "https://", "http://", 1)+"/"); err == nil && body == "public api" {
		t.Fatal("the API answered plain HTTP")
	}
}
