package certs

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs a real mutual-TLS handshake over loopback and returns the
// client's and the server's errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = io.Copy(tc, io.LimitReader(tc, 4)) // echo "ping"
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, client)
	clientErr = tc.Handshake()
	if clientErr == nil {
		if _, err := tc.Write([]byte("ping")); err != nil {
			clientErr = err
		} else {
			buf := make([]byte, 4)
			if _, err := io.ReadFull(tc, buf); err != nil {
				clientErr = err
			} else if string(buf) != "ping" {
				clientErr = errors.New("echo mismatch")
			}
		}
	}
	tc.Close()
	return clientErr, <-done
}

func TestHubTLSHandshake(t *testing.T) {
	now := time.Now()
	ca, err := InitCA(t.TempDir(), "tls root", now)
	if err != nil {
		t.Fatal(err)
	}
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	hub1, err := ca.IssueHubTLS("hub-1-tls", "hub-1", []string{"localhost"}, lo, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hub2, err := ca.IssueHubTLS("hub-2-tls", "hub-2", []string{"localhost"}, lo, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hub2, err = ca.LoadTLS("hub-2-tls") // from disk, as a restarted member would
	if err != nil {
		t.Fatal(err)
	}
	ts, err := ca.TrustStore()
	if err != nil {
		t.Fatal(err)
	}

	other, err := InitCA(t.TempDir(), "another root", now)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueHubTLS("hub-9-tls", "hub-9", []string{"localhost"}, lo, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueHubTLS("hub-3-tls", "hub-3", []string{"localhost"}, lo, now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := ca.IssueHubTLS("hub-4-tls", "hub-4", []string{"localhost"}, lo, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ts.Revoke(revoked.KID, now.Add(-time.Minute))
	// A province signer's certificate made into a TLS identity: right root,
	// wrong role.
	gd, err := ca.Issue(IssueRequest{Role: RoleProvince, Province: "440000", Name: "province-440000", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	provTLS, err := IssueTLS(ca.Root(), "not-a-hub", nil, lo, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	provTLS.Cert = mustReissueWithRole(t, ca.Root(), provTLS, gd)

	t.Run("two-hub-members-talk", func(t *testing.T) {
		cErr, sErr := handshake(t, HubServerTLS(hub1, ts), HubClientTLS(hub2, ts))
		if cErr != nil || sErr != nil {
			t.Fatalf("client %v, server %v", cErr, sErr)
		}
	})
	for _, tc := range []struct {
		name     string
		client   *TLSIdentity
		server   *TLSIdentity
		want     error
		atServer bool
	}{
		{"reject/client-from-another-root", foreign, hub1, ErrUntrusted, true},
		{"reject/server-from-another-root", hub2, foreign, ErrUntrusted, false},
		{"reject/client-with-province-certificate", provTLS, hub1, ErrWrongRole, true},
		{"reject/expired-client", expired, hub1, ErrExpired, true},
		{"reject/revoked-server", hub2, revoked, ErrRevoked, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cErr, sErr := handshake(t, HubServerTLS(tc.server, ts), HubClientTLS(tc.client, ts))
			if cErr == nil && sErr == nil {
				t.Fatal("handshake succeeded")
			}
			got := cErr
			if tc.atServer {
				got = sErr
			}
			if !errors.Is(got, tc.want) && !strings.Contains(got.Error(), tc.want.Error()) {
				t.Errorf("err = %v, want %v", got, tc.want)
			}
		})
	}
}

// mustReissueWithRole signs id's key into a certificate with gd's subject (a
// province role) and TLS usages, to stand for "a province certificate used for
// TLS".
func mustReissueWithRole(t *testing.T, root *Signer, id *TLSIdentity, gd *Signer) *smx509Cert {
	t.Helper()
	tmpl := tlsTemplate("province-as-tls", []string{"localhost"}, nil, gd.Cert.NotBefore, gd.Cert.NotAfter)
	tmpl.Subject = gd.Cert.Subject
	der, err := signCert(root, tmpl, &id.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCert(der)
	if err != nil {
		t.Fatal(err)
	}
	id.KID = KID(der)
	return c
}

func TestHubTLSCertificateNamesItsMemberAndKeepsItWhenLoaded(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	ca, err := InitCA(dir, "tls root", now)
	if err != nil {
		t.Fatal(err)
	}
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	id, err := ca.IssueHubTLS("hub-1-tls", "hub-1", nil, lo, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "hub-1-tls" || id.Member != "hub-1" || id.Cert.Subject.CommonName != "hub-1" {
		t.Fatalf("issued name %q member %q common name %q; want hub-1-tls, hub-1, hub-1", id.Name, id.Member, id.Cert.Subject.CommonName)
	}
	loaded, err := ca.LoadTLS("hub-1-tls")
	if err != nil {
		t.Fatal(err)
	}
	fromFiles, err := LoadTLSIdentity(ca.certPath("hub-1-tls"), ca.keyPath("hub-1-tls"))
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Member != "hub-1" || fromFiles.Member != "hub-1" {
		t.Fatalf("loaded member %q, from files %q; want hub-1", loaded.Member, fromFiles.Member)
	}
	if _, err := ca.IssueHubTLS("hub-2-tls", "Hub 2!", nil, lo, now.Add(-time.Hour), now.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "member id") {
		t.Fatalf("a malformed member id: err = %v, want one naming the member id", err)
	}
}
