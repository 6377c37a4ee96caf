package exchange

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Sichuan seals receipts to Guangdong's box key; Guangdong opens them;
// another key cannot; the envelope shows no subject or unit; the payload
// and the receipts inside are read strictly, naming the field.
func TestReceiptsEnvelope(t *testing.T) {
	f, ts := trustedFederation(t)
	at := f.start.Unix()
	gdKey, _ := certs.GenerateBoxKey()
	otherKey, _ := certs.GenerateBoxKey()
	rs := []Receipt{
		{Sub: "abcdefghijklmnopqrstuvwxyz", At: at - 30, Unit: "成都东站 gate 3", Role: "checkpoint", Colour: hcx.Green},
		{Sub: "bbcdefghijklmnopqrstuvwxyz", At: at - 10, Unit: "operator", Role: "operator", Colour: hcx.Yellow, Div: "510104"},
	}
	jws, err := SealReceipts(f.sc, "440000", at, gdKey.KID(), gdKey.Public(), rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"abcdefghijklmnopqrstuvwxyz", "成都东站", "gate 3", "510104"} {
		if strings.Contains(jws, s) || strings.Contains(string(mustPayload(t, jws)), s) {
			t.Errorf("%q in the envelope", s)
		}
	}
	env, err := Open(ts, jws)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckContent(env); err != nil {
		t.Fatal(err)
	}
	r, err := DecodeReceipts(env)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(r.CT)
	if len(ct)-certs.BoxOverhead != ReceiptsMinBucket {
		t.Errorf("two receipts sealed %d bytes, want the %d bucket", len(ct)-certs.BoxOverhead, ReceiptsMinBucket)
	}
	got, err := r.Open(gdKey)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(rs) {
		t.Fatalf("open: %v %+v", err, got)
	}
	if _, err := r.Open(otherKey); !errors.Is(err, certs.ErrBoxOpen) {
		t.Errorf("another key: %v", err)
	}
	// A box moved into an envelope with another at (or to, or kid) does
	// not open: the AAD binds it.
	moved := *r
	moved.At++
	if _, err := moved.Open(gdKey); !errors.Is(err, certs.ErrBoxOpen) {
		t.Errorf("moved box: %v", err)
	}

	// 1000 receipts with long units fit the largest bucket; the padded size
	// is a power of two.
	many := make([]Receipt, MaxReceipts)
	for i := range many {
		many[i] = Receipt{Sub: hcx.Subject(strings.Map(func(r rune) rune { return r - '0' + 'a' }, fmt.Sprintf("%026d", i))), At: at, Unit: strings.Repeat("检", MaxReceiptUnit/3), Role: "checkpoint", Colour: hcx.Red}
	}
	big, err := SealReceipts(f.sc, "440000", at, gdKey.KID(), gdKey.Public(), many)
	if err != nil || len(big) > MaxEnvelopeBytes {
		t.Fatalf("1000 receipts: %v, %d bytes", err, len(big))
	}
	if _, err := SealReceipts(f.sc, "440000", at, gdKey.KID(), gdKey.Public(), append(many, many[0])); err == nil {
		t.Error("1001 receipts sealed")
	}
	if _, err := SealReceipts(f.sc, "440000", at, otherKey.KID(), gdKey.Public(), rs); err == nil {
		t.Error("sealed with a kid that is not the key's")
	}
	bad := rs[0]
	bad.Role = "resident"
	if _, err := SealReceipts(f.sc, "440000", at, gdKey.KID(), gdKey.Public(), []Receipt{bad}); fieldOf(err) != "receipts[0].role" {
		t.Errorf("a resident's receipt: %v", err)
	}

	kid := gdKey.KID()
	b64 := base64.StdEncoding.EncodeToString
	okCT := r.CT
	for name, c := range map[string]struct{ payload, field string }{
		"to-self":        {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"510000","kid":"%s","ct":"%s"}`, at, kid, okCT), "to"},
		"to-not-a-prov":  {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"440100","kid":"%s","ct":"%s"}`, at, kid, okCT), "to"},
		"kid-upper":      {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"440000","kid":"%s","ct":"%s"}`, at, strings.ToUpper(kid), okCT), "kid"},
		"ct-not-bucket":  {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"440000","kid":"%s","ct":"%s"}`, at, kid, b64(make([]byte, certs.BoxOverhead+5000))), "ct"},
		"ct-too-small":   {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"440000","kid":"%s","ct":"%s"}`, at, kid, b64(make([]byte, certs.BoxOverhead+2048))), "ct"},
		"ct-not-base64":  {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"440000","kid":"%s","ct":"%s"}`, at, kid, "!!"), "ct"},
		"unknown-member": {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"to":"440000","kid":"%s","ct":"%s","n":2}`, at, kid, okCT), "n"},
		"missing-to":     {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"510000","at":%d,"kid":"%s","ct":"%s"}`, at, kid, okCT), "to"},
	} {
		t.Run(name, func(t *testing.T) {
			env, err := f.sc.SignJWS(HdrReceipts, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			e, err := Open(ts, env)
			if err == nil {
				err = CheckContent(e)
			}
			if fieldOf(err) != c.field || !errors.Is(err, certs.ErrMalformed) {
				t.Errorf("%v, want a malformed envelope naming %q", err, c.field)
			}
		})
	}
}

func TestBoxKeyEnvelope(t *testing.T) {
	f, ts := trustedFederation(t)
	at := f.start.Unix()
	k, _ := certs.GenerateBoxKey()
	jws, err := SealBoxKey(f.gdOld, at, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	env, err := Open(ts, jws)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := DecodeBoxKey(env)
	if err != nil || bk.Iss != "440000" || bk.KID != k.KID() || !bytes.Equal(bk.PubBytes(), k.Public()) {
		t.Fatalf("%v %+v", err, bk)
	}
	other, _ := certs.GenerateBoxKey()
	offCurve := k.Public()
	offCurve[64] ^= 1
	b64 := base64.StdEncoding.EncodeToString
	for name, c := range map[string]struct{ payload, field string }{
		"kid-of-another":  {fmt.Sprintf(`{"typ":"hcx.boxkey.v1","iss":"440000","at":%d,"kid":"%s","pub":"%s"}`, at, other.KID(), b64(k.Public())), "kid"},
		"pub-off-curve":   {fmt.Sprintf(`{"typ":"hcx.boxkey.v1","iss":"440000","at":%d,"kid":"%s","pub":"%s"}`, at, certs.BoxKID(offCurve), b64(offCurve)), "pub"},
		"pub-short":       {fmt.Sprintf(`{"typ":"hcx.boxkey.v1","iss":"440000","at":%d,"kid":"%s","pub":"%s"}`, at, k.KID(), b64(k.Public()[:40])), "pub"},
		"missing-kid":     {fmt.Sprintf(`{"typ":"hcx.boxkey.v1","iss":"440000","at":%d,"pub":"%s"}`, at, b64(k.Public())), "kid"},
		"typ-of-receipts": {fmt.Sprintf(`{"typ":"hcx.receipts.v1","iss":"440000","at":%d,"kid":"%s","pub":"%s"}`, at, k.KID(), b64(k.Public())), "typ"},
	} {
		t.Run(name, func(t *testing.T) {
			env, err := f.gdOld.SignJWS(HdrBoxKey, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			e, err := Open(ts, env)
			if err == nil {
				err = CheckContent(e)
			}
			if fieldOf(err) != c.field || !errors.Is(err, certs.ErrMalformed) {
				t.Errorf("%v, want a malformed envelope naming %q", err, c.field)
			}
		})
	}
	// A box key signed by another province's key for 440000 is refused.
	forged := fmt.Sprintf(`{"typ":"hcx.boxkey.v1","iss":"440000","at":%d,"kid":"%s","pub":"%s"}`, at, k.KID(), b64(k.Public()))
	env2, _ := f.sc.SignJWS(HdrBoxKey, []byte(forged))
	if _, err := Open(ts, env2); !errors.Is(err, ErrWrongIssuer) {
		t.Errorf("Sichuan signs Guangdong's box key: %v", err)
	}
}

func fieldOf(err error) string {
	var e *hcx.Error
	if errors.As(err, &e) {
		return e.Field
	}
	return "<" + fmt.Sprint(err) + ">"
}

func mustPayload(t testing.TB, jws string) []byte {
	t.Helper()
	parts := strings.Split(jws, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}
