package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// TestProbe drives `hcx probe` against real servers: plain and TLS with the
// dev CA's server certificate, ready and not, and a server whose certificate
// comes from another CA.
func TestProbe(t *testing.T) {
	var ready atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			http.Error(w, "not ready: no hub leader", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})
	plain := httptest.NewServer(h)
	defer plain.Close()

	now := time.Now()
	ca, rootFile := probeCA(t, now)
	id, err := devServerTLS(ca, "api-probe", "127.0.0.1:0", now)
	if err != nil {
		t.Fatal(err)
	}
	secure := httptest.NewUnstartedServer(h)
	secure.TLS = certs.ServerTLS(id)
	secure.StartTLS()
	defer secure.Close()
	_, otherRoot := probeCA(t, now) // a CA that did not issue the server's certificate

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/readyz"
	ln.Close()

	for _, tc := range []struct {
		name    string
		notOK   bool // the server answers 503
		args    []string
		wantErr string // "" : exit 0
	}{
		{"accept/plain-200", false, []string{plain.URL + "/readyz"}, ""},
		{"accept/tls-200", false, []string{"--ca", rootFile, secure.URL + "/readyz"}, ""},
		{"reject/plain-503", true, []string{plain.URL + "/readyz"}, "503"},
		{"reject/tls-503", true, []string{"--ca", rootFile, secure.URL + "/readyz"}, "no hub leader"},
		{"reject/other-path", false, []string{plain.URL + "/nope"}, "503"},
		{"reject/tls-other-ca", false, []string{"--ca", otherRoot, secure.URL + "/readyz"}, "unreachable"},
		{"reject/tls-without-ca", false, []string{secure.URL + "/readyz"}, "give --ca"},
		{"reject/ca-for-plain-url", false, []string{"--ca", rootFile, plain.URL + "/readyz"}, "plain http"},
		{"reject/ca-unreadable", false, []string{"--ca", filepath.Join(t.TempDir(), "none.crt"), secure.URL + "/readyz"}, "--ca"},
		{"reject/nothing-listens", false, []string{"--timeout", "1s", closed}, "unreachable"},
		{"reject/not-a-url", false, []string{"hub-1:7000/readyz"}, "want an http:// or https:// URL"},
		{"reject/no-url", false, nil, "exactly one URL"},
		{"reject/two-urls", false, []string{plain.URL, plain.URL}, "exactly one URL"},
		{"reject/timeout-zero", false, []string{"--timeout", "0s", plain.URL + "/readyz"}, "--timeout"},
		{"reject/timeout-too-long", false, []string{"--timeout", "2m", plain.URL + "/readyz"}, "--timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready.Store(!tc.notOK)
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"probe"}, tc.args...), &out, &errOut)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("probe failed: %v", err)
				}
				if !strings.Contains(out.String(), "200") {
					t.Errorf("output %q does not show the status", out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
			}
			if out.Len() > 0 {
				t.Errorf("failed, yet printed %q", out.String())
			}
		})
	}
}

// probeCA makes a dev CA with its TLS root and returns it and the root's file.
func probeCA(t *testing.T, now time.Time) (*certs.CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	pki, err := certs.EnsureDevPKI(dir, nil, []string{"hub-1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.CA.TLSRoot(); err != nil {
		t.Fatal(err)
	}
	return pki.CA, filepath.Join(dir, certs.TLSRootCertFile)
}
