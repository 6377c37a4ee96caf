package exchange

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// trustedFederation is the test federation with its trust list applied.
func trustedFederation(t testing.TB) (*federationCA, *certs.TrustStore) {
	t.Helper()
	f := newFederationCA(t)
	ts := f.emptyStore(t)
	_, list := f.sealedList(t, f.start)
	if _, err := ApplyTrustList(ts, list); err != nil {
		t.Fatal(err)
	}
	return f, ts
}

func TestOpenReadsEachPayloadStrictly(t *testing.T) {
	f, ts := trustedFederation(t)
	at := f.start.Unix()
	att := fmt.Sprintf(`{"sub":"abcdefghijklmnopqrstuvwxyz","col":"red","rsn":["lab.positive"],"eff":%d,"exp":%d,"pol":"00","n":1}`, at, at+3600)
	batch := func(members string) string {
		return fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"440000","seq":1,"at":%d,"skv":1%s}`, at, members)
	}
	good := batch(`,"atts":[` + att + `]`)
	env, err := f.gdOld.SignJWS(HdrBatch, []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := Open(ts, env); err != nil {
		t.Fatalf("a batch as SealBatch writes it: %v", err)
	} else if _, err := DecodeBatch(e); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ payload, field string }{
		"reject/unknown-member":      {batch(`,"atts":[` + att + `],"note":"x"`), "note"},
		"reject/duplicate-member":    {batch(`,"atts":[` + att + `],"seq":2`), "seq"},
		"reject/case-variant":        {batch(`,"atts":[` + att + `],"SEQ":2`), "SEQ"},
		"reject/null-for-a-string":   {batch(`,"atts":[{"sub":null` + att[len(`{"sub":"abcdefghijklmnopqrstuvwxyz"`):] + `]`), "atts[0].sub"},
		"reject/float-for-an-int":    {batch(`,"atts":[` + att[:len(att)-2] + `1.0}]`), "atts[0].n"},
		"reject/trailing-bytes":      {batch(`,"atts":[`+att+`]`) + "\n", ""},
		"reject/whitespace":          {batch(`, "atts":[` + att + `]`), ""},
		"reject/missing-member":      {batch(``), "atts"},
		"reject/typ-of-another-kind": {`{"typ":"hcx.policy.v1"` + batch(`,"atts":[` + att + `]`)[len(`{"typ":"hcx.batch.v1"`):], "typ"},
	} {
		t.Run(name, func(t *testing.T) {
			env, err := f.gdOld.SignJWS(HdrBatch, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Open(ts, env)
			var he *hcx.Error
			if !errors.As(err, &he) || he.Class != hcx.EInvalid || !errors.Is(err, certs.ErrMalformed) {
				t.Fatalf("got %v, want an invalid *hcx.Error wrapping certs.ErrMalformed", err)
			}
			if c.field != "" && he.Field != c.field {
				t.Fatalf("field %q, want %q (%v)", he.Field, c.field, err)
			}
		})
	}
}

func TestVerifyCodeReadsClaimsStrictly(t *testing.T) {
	f, ts := trustedFederation(t)
	iat := f.start.Unix() + 60
	now := time.Unix(iat+1, 0)
	claims := func(extra string) string {
		return fmt.Sprintf(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz","skv":1,"col":"green","nm":"张*","idt":"0014","vax":true,"iat":%d,"exp":%d%s}`, iat, iat+60, extra)
	}
	tok, err := f.gdOld.SignJWS(HdrCode, []byte(claims("")))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyCode(ts, CodePrefix+tok, now); err != nil {
		t.Fatalf("a code as IssueCode writes it: %v", err)
	}
	for name, extra := range map[string]string{
		"reject/second-col":       `,"col":"red"`,
		"reject/case-variant-col": `,"COL":"red"`,
		"reject/unknown-member":   `,"admin":true`,
		"reject/second-exp-later": fmt.Sprintf(`,"exp":%d`, iat+86400*365),
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := f.gdOld.SignJWS(HdrCode, []byte(claims(extra)))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := VerifyCode(ts, CodePrefix+tok, now); !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("got %v, want token_malformed", err)
			}
		})
	}
}

func TestTrustListContentIsChecked(t *testing.T) {
	f := newFederationCA(t)
	tl, _ := f.sealedList(t, f.start)
	edit := func(change func(*TrustList)) string {
		c := *tl
		c.Certs = append([]TrustedCert(nil), tl.Certs...)
		c.Revoked = append([]Revocation(nil), tl.Revoked...)
		change(&c)
		s, err := SealTrustList(f.ca.Root(), &c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hubAt := -1
	for i, c := range tl.Certs {
		if c.Role == certs.RoleHub {
			hubAt = i
		}
	}
	for _, c := range []struct{ name, compact, field string }{
		{"reject/kid-twice", edit(func(l *TrustList) { l.Certs = append(l.Certs, l.Certs[0]) }), fmt.Sprintf("certs[%d].kid", len(tl.Certs))},
		{"reject/kid-not-the-fingerprint", edit(func(l *TrustList) { l.Certs[0].KID = l.Certs[1].KID }), "certs[0].kid"},
		{"reject/der-not-base64", edit(func(l *TrustList) { l.Certs[0].DER = "%%%" }), "certs[0].der"},
		{"reject/hub-with-a-province", edit(func(l *TrustList) { l.Certs[hubAt].Province = "440000" }), fmt.Sprintf("certs[%d].province", hubAt)},
		{"reject/root-listed", edit(func(l *TrustList) { l.Certs[0].Role = certs.RoleRoot }), "certs[0].role"},
		{"reject/revoked-kid-malformed", edit(func(l *TrustList) { l.Revoked = []Revocation{{KID: "x", At: 1}} }), "revoked[0].kid"},
		{"reject/revoked-at-not-a-time", edit(func(l *TrustList) { l.Revoked = []Revocation{{KID: tl.Certs[0].KID, At: 0}} }), "revoked[0].at"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := f.emptyStore(t)
			_, err := ApplyTrustList(ts, c.compact)
			var he *hcx.Error
			if !errors.As(err, &he) || he.Class != hcx.EInvalid || he.Field != c.field || !errors.Is(err, certs.ErrMalformed) {
				t.Fatalf("got %v, want an invalid trust list naming %s", err, c.field)
			}
			if ts.Version() != 0 {
				t.Fatalf("a refused list was applied")
			}
		})
	}
}
