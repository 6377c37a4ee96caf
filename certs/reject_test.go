package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// pki is a root, a trust store and a Guangdong signer valid for a day.
type pki struct {
	root  *Signer
	ts    *TrustStore
	gd    *Signer
	gdEnt *Entry
	now   time.Time
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	now := time.Unix(1763780000, 0)
	root, err := NewRoot("test national root", now.Add(-24*time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gd, err := Issue(root, IssueRequest{Role: RoleProvince, Province: "440000", Name: "gd-signer", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewTrustStore(root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ts.Add(gd.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{root: root, ts: ts, gd: gd, gdEnt: e, now: now}
}

// issueWith signs a province certificate after edit has changed its
// template, to make certificates our own Issue refuses to make.
func (p *pki) issueWith(t *testing.T, edit func(*x509.Certificate)) []byte {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate(IssueRequest{Role: RoleProvince, Province: "440000", Name: "edited", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)})
	edit(tmpl)
	der, err := signCert(p.root, tmpl, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// verificationErrors are the sentinels a verifier branches on; each rejection
// below must match its own and none of the others.
var verificationErrors = []error{ErrBadCertificate, ErrSignature, ErrUntrusted, ErrExpired, ErrNotYetValid, ErrKeyUsage, ErrWrongRole, ErrWrongProvince, ErrRevoked, ErrDuplicateKID, ErrUnknownKey, ErrMalformed}

func TestEachRejectionHasItsOwnError(t *testing.T) {
	p := newPKI(t)
	tok, err := p.gd.SignJWS("hcx-batch+jws", []byte(`{"typ":"hcx.batch.v1","iss":"440000"}`))
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, err := NewRoot("a rogue root", p.now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := Issue(otherRoot, IssueRequest{Role: RoleProvince, Province: "440000", Name: "gd-signer", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	checkpoint, err := Issue(p.root, IssueRequest{Role: RoleCheckpoint, Province: "440000", Name: "checkpoint-0042", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ts.Add(checkpoint.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	hubTLS, err := IssueTLS(p.root, "hub-1-tls", []string{"localhost"}, nil, p.now.Add(-time.Hour), p.now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		run  func() error
		want error
	}{
		{"reject/tampered-certificate", func() error {
			der := bytes.Replace(p.gd.Cert.Raw, []byte("gd-signer"), []byte("sc-signer"), 1)
			_, err := p.ts.Add(der)
			return err
		}, ErrBadCertificate},
		{"reject/truncated-certificate", func() error {
			_, err := p.ts.Add(p.gd.Cert.Raw[:len(p.gd.Cert.Raw)/2])
			return err
		}, ErrBadCertificate},
		{"reject/tampered-signature", func() error {
			sig := []byte(tok[strings.LastIndexByte(tok, '.')+1:])
			// Another base64url character: the signature still decodes, to
			// different bytes.
			if sig[10] == 'A' {
				sig[10] = 'B'
			} else {
				sig[10] = 'A'
			}
			_, err := p.ts.VerifyJWS(tok[:strings.LastIndexByte(tok, '.')+1] + string(sig))
			return err
		}, ErrSignature},
		{"reject/broken-chain-another-root", func() error {
			_, err := p.ts.Add(foreign.Cert.Raw)
			return err
		}, ErrUntrusted},
		{"reject/expired", func() error { return p.ts.CheckAt(p.gdEnt, p.gd.Cert.NotAfter.Add(time.Second)) }, ErrExpired},
		{"reject/not-yet-valid", func() error { return p.ts.CheckAt(p.gdEnt, p.gd.Cert.NotBefore.Add(-time.Second)) }, ErrNotYetValid},
		{"reject/key-usage-without-digital-signature", func() error {
			_, err := p.ts.Add(p.issueWith(t, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }))
			return err
		}, ErrKeyUsage},
		{"reject/key-usage-province-without-signing-eku", func() error {
			_, err := p.ts.Add(p.issueWith(t, func(c *x509.Certificate) { c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{OIDAuditorSigning} }))
			return err
		}, ErrKeyUsage},
		{"reject/key-usage-leaf-claims-ca", func() error {
			_, err := p.ts.Add(p.issueWith(t, func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }))
			return err
		}, ErrKeyUsage},
		{"reject/key-usage-tls-certificate-as-signer", func() error {
			_, err := p.ts.Add(hubTLS.Cert.Raw)
			return err
		}, ErrKeyUsage},
		{"reject/wrong-role-checkpoint-signs-a-code", func() error {
			code, err := checkpoint.SignJWS("hcx-code+jws", []byte(`{"iss":"440000"}`))
			if err != nil {
				return err
			}
			_, err = p.ts.VerifyJWS(code)
			return err
		}, ErrWrongRole},
		{"reject/wrong-province", func() error { return p.gdEnt.CheckIssuer(RoleProvince, hcx.ProvinceCode("510000")) }, ErrWrongProvince},
		{"reject/province-certificate-not-provincial-level", func() error {
			_, err := p.ts.Add(p.issueWith(t, func(c *x509.Certificate) { c.Subject.Province = []string{"440100"} }))
			return err
		}, ErrWrongProvince},
		{"reject/revoked", func() error {
			p.ts.Revoke(p.gd.KID, p.now)
			defer delete(p.ts.revoked, p.gd.KID)
			return p.ts.CheckAt(p.gdEnt, p.now.Add(time.Second))
		}, ErrRevoked},
		{"reject/second-certificate-with-a-known-kid", func() error {
			second, err := Issue(p.root, IssueRequest{Role: RoleProvince, Province: "440000", Name: "gd-2", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)})
			if err != nil {
				return err
			}
			p.ts.kidOf = func([]byte) string { return p.gd.KID } // force the collision a short kid would have
			defer func() { p.ts.kidOf = KID }()
			_, err = p.ts.Add(second.Cert.Raw)
			return err
		}, ErrDuplicateKID},
		{"reject/unknown-kid", func() error {
			tok, err := foreign.SignJWS("hcx-batch+jws", []byte(`{}`))
			if err != nil {
				return err
			}
			_, err = p.ts.VerifyJWS(tok)
			return err
		}, ErrUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, other := range verificationErrors {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err = %v also matches %v", err, other)
				}
			}
		})
	}
	// None of the rejected certificates slipped in.
	if got := len(p.ts.Entries()); got != 2 {
		t.Errorf("%d trusted certificates after the rejections, want 2 (gd, checkpoint)", got)
	}
}

func TestSignedBeforeRevocationStillVerifies(t *testing.T) {
	p := newPKI(t)
	revokedAt := p.now
	p.ts.Revoke(p.gd.KID, revokedAt)
	p.ts.Revoke(p.gd.KID, revokedAt.Add(time.Hour)) // a later revocation does not move it forward
	for _, tc := range []struct {
		name string
		at   time.Time
		want error
	}{
		{"signed-a-second-before", revokedAt.Add(-time.Second), nil},
		{"reject/signed-at-the-revocation", revokedAt, ErrRevoked},
		{"reject/signed-after", revokedAt.Add(30 * time.Minute), ErrRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.ts.CheckAt(p.gdEnt, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "revoked at "+revokedAt.UTC().Format(time.RFC3339)) {
				t.Errorf("error %q does not name the revocation", err)
			}
		})
	}
}

func TestIssueRefusesWhatTheProfilesForbid(t *testing.T) {
	p := newPKI(t)
	nb, na := p.now, p.now.Add(time.Hour)
	for _, tc := range []struct {
		name string
		req  IssueRequest
		want string
	}{
		{"reject/root-role", IssueRequest{Role: RoleRoot, Name: "x", NotBefore: nb, NotAfter: na}, "cannot be issued"},
		{"reject/province-not-provincial", IssueRequest{Role: RoleProvince, Province: "440100", Name: "x", NotBefore: nb, NotAfter: na}, "provincial"},
		{"reject/auditor-bound-to-province", IssueRequest{Role: RoleAuditor, Province: "440000", Name: "x", NotBefore: nb, NotAfter: na}, "only province signers"},
		{"reject/checkpoint-without-province", IssueRequest{Role: RoleCheckpoint, Name: "x", NotBefore: nb, NotAfter: na}, "checkpoint certificate"},
		{"reject/feed-without-province", IssueRequest{Role: RoleFeed, Name: "x", NotBefore: nb, NotAfter: na}, "feed certificate"},
		{"reject/feed-not-provincial", IssueRequest{Role: RoleFeed, Province: "440100", Name: "x", NotBefore: nb, NotAfter: na}, "provincial"},
		{"reject/dns-on-auditor", IssueRequest{Role: RoleAuditor, Name: "x", DNSNames: []string{"a"}, NotBefore: nb, NotAfter: na}, "only hub members"},
		{"reject/validity-backwards", IssueRequest{Role: RoleHub, Name: "x", NotBefore: na, NotAfter: nb}, "before it starts"},
		{"reject/outlives-root", IssueRequest{Role: RoleHub, Name: "x", NotBefore: nb, NotAfter: p.root.Cert.NotAfter.Add(time.Hour)}, "after the root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Issue(p.root, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestTrustStoreUnderConcurrentUse verifies while trust lists and
// revocations arrive (run with -race).
func TestTrustStoreUnderConcurrentUse(t *testing.T) {
	p := newPKI(t)
	tok, err := p.gd.SignJWS("hcx-batch+jws", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	extra := make([][]byte, 8)
	for i := range extra {
		s, err := Issue(p.root, IssueRequest{Role: RoleAuditor, Name: fmt.Sprintf("auditor-%d", i), NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		extra[i] = s.Cert.Raw
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				v, err := p.ts.VerifyJWS(tok)
				if err != nil {
					t.Error(err)
					return
				}
				_ = p.ts.CheckAt(v.Entry, p.now)
			}
		}()
	}
	for i, der := range extra {
		if err := p.ts.ApplyList(uint64(i+1), [][]byte{der}, map[string]time.Time{KID(der): p.now}); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	if got := len(p.ts.Entries()); got != 1+len(extra) {
		t.Errorf("%d entries, want %d", got, 1+len(extra))
	}
}
