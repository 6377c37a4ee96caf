package certs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueCSRBindsTheDevicesKeyToItsProvince(t *testing.T) {
	ca, err := InitCA(t.TempDir(), "test national root", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := CreateCSR(key, "gate-7")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueCSR(csr, RoleCheckpoint, "440000", "gate-7", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("the certificate does not bind the CSR's key")
	}
	ts, err := ca.TrustStore()
	if err != nil {
		t.Fatal(err)
	}
	e, err := ts.Lookup(KID(cert.Raw))
	if err != nil {
		t.Fatalf("a CSR-issued certificate is not in the CA's trust store: %v", err)
	}
	if e.Role != RoleCheckpoint || e.Province != "440000" {
		t.Errorf("entry = %s %q, want checkpoint 440000", e.Role, e.Province)
	}
	// The device signs with its own key; the trust store verifies it.
	s, err := signerFromDER(cert.Raw, key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.SignJWS("hcx-req+jws", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.VerifyJWS(tok); err != nil {
		t.Errorf("device token: %v", err)
	}
	if _, err := ca.Load("gate-7"); err == nil || !strings.Contains(err.Error(), "stays with the device") {
		t.Errorf("Load of a CSR-issued certificate: err = %v, want one saying the key stays with the device", err)
	}
	if _, err := ca.IssueCSR(csr, RoleCheckpoint, "440000", "gate-7", time.Hour); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("second issue under the same name: err = %v", err)
	}
	fd, err := ca.IssueCSR(csr, RoleFeed, "510000", "lab-cd-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r, p := roleOf(fd); r != RoleFeed || p != "510000" {
		t.Errorf("feed certificate says %s %s", r, p)
	}
}

func TestIssueCSRRefusesWhatIsNotAProofOfPossession(t *testing.T) {
	ca, err := InitCA(t.TempDir(), "test national root", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := GenerateKey()
	csr, err := CreateCSR(key, "d")
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte of the signature (the DER's last bytes) and re-encode.
	blk := csr
	der := pemBody(t, blk)
	der[len(der)-3] ^= 0x01
	tampered := CertPEM(der)
	tampered = bytes.Replace(tampered, []byte("CERTIFICATE"), []byte("CERTIFICATE REQUEST"), 2)
	for _, tc := range []struct {
		name string
		pem  []byte
		role Role
		prov string
		want error
		msg  string
	}{
		{"reject/not-pem", []byte("hello"), RoleCheckpoint, "440000", ErrBadCSR, "CERTIFICATE REQUEST"},
		{"reject/tampered-signature", tampered, RoleCheckpoint, "440000", ErrBadCSR, ""},
		{"reject/trailing-bytes", append(append([]byte{}, csr...), []byte("junk")...), RoleCheckpoint, "440000", ErrBadCSR, "after"},
		{"reject/too-large", bytes.Repeat([]byte("A"), MaxCSRPEM+1), RoleCheckpoint, "440000", ErrBadCSR, "at most"},
		{"reject/checkpoint-without-province", csr, RoleCheckpoint, "", nil, "province"},
		{"reject/hub-role-with-province", csr, RoleHub, "440000", nil, "only province signers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.IssueCSR(tc.pem, tc.role, hcxProvince(tc.prov), "dev-"+strings.ReplaceAll(tc.name[7:], "/", "-"), time.Hour)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v saying %q", err, tc.want, tc.msg)
			}
		})
	}
	list, err := ca.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("refused requests left %d certificates in the index", len(list))
	}
}
