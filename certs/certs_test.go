package certs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

func TestJWSRoundTrip(t *testing.T) {
	now := time.Now()
	root, err := NewRoot("test root", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gd, err := Issue(root, IssueRequest{Role: RoleProvince, Province: "440000", Name: "gd", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewTrustStore(root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Add(gd.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	tok, err := gd.SignJWS("hcx-batch+jws", []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.SplitN(tok, ".", 2)[0], b64(`{"alg":"SM2","kid":"`+gd.KID+`","typ":"hcx-batch+jws"}`); got != want {
		t.Errorf("header = %s, want %s (%+v)", got, want, h)
	}
	v, err := ts.VerifyJWS(tok)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Payload) != `{"a":1}` || v.Entry.Province != hcx.ProvinceCode("440000") || v.Entry.Role != RoleProvince {
		t.Errorf("verified = %+v", v)
	}
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + b64(`{"a":2}`) + "." + parts[2]
	if _, err := ts.VerifyJWS(tampered); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered payload: err = %v, want ErrSignature", err)
	}
}
