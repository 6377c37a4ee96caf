package certs

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// The direct JWS path (fastjws.go) against the jwx path it replaced: the same
// inputs, the same verdict (accepted with the same payload and key, or
// refused with the same error class).

type diffPKI struct {
	*pki
	sx      *Signer // a second province signer, revoked
	unknown *Signer // a province signer the store does not trust
}

func newDiffPKI(t testing.TB) *diffPKI {
	p := newPKI(t)
	sx, err := Issue(p.root, IssueRequest{Role: RoleProvince, Province: "610000", Name: "sx-signer", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := Issue(p.root, IssueRequest{Role: RoleProvince, Province: "110000", Name: "bj-signer", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ts.ApplyList(1, [][]byte{p.gd.Cert.Raw, sx.Cert.Raw}, map[string]time.Time{sx.KID: p.now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	return &diffPKI{pki: p, sx: sx, unknown: unknown}
}

var jwsErrClasses = []error{ErrMalformed, ErrSignature, ErrUnknownKey, ErrWrongRole, ErrRevoked}

func errClass(err error) string {
	if err == nil {
		return "accepted"
	}
	for _, c := range jwsErrClasses {
		if errors.Is(err, c) {
			return c.Error()
		}
	}
	return "other: " + err.Error()
}

// sameVerdict runs tok through both paths and fails t if they disagree. It
// returns the verdict.
func sameVerdict(t testing.TB, ts *TrustStore, tok string) string {
	t.Helper()
	nv, nerr := ts.verifyJWS(tok, byKey(verifyCompact))
	ov, oerr := ts.verifyJWS(tok, byKey(verifyJWSWithKeyJWX))
	nc, oc := errClass(nerr), errClass(oerr)
	if nc != oc {
		t.Fatalf("%q: direct path says %s (%v), jwx path %s (%v)", tok, nc, nerr, oc, oerr)
	}
	if strings.HasPrefix(nc, "other") {
		t.Fatalf("%q: an error of no known class: %v / %v", tok, nerr, oerr)
	}
	if nerr == nil && (!bytes.Equal(nv.Payload, ov.Payload) || nv.Entry != ov.Entry || nv.Header != ov.Header) {
		t.Fatalf("%q: both accept, but read it differently: %+v vs %+v", tok, nv, ov)
	}
	// VerifyParsedJWS (the header read once, by the caller) agrees.
	if h, err := ParseHeader(tok); err == nil {
		pv, perr := ts.VerifyParsedJWS(tok, h)
		if pc := errClass(perr); pc != nc || (perr == nil && (!bytes.Equal(pv.Payload, nv.Payload) || pv.Entry != nv.Entry)) {
			t.Fatalf("%q: VerifyParsedJWS says %s (%v), VerifyJWS %s", tok, pc, perr, nc)
		}
	}
	// The exported one-key entry point agrees too.
	if nerr == nil {
		if _, err := VerifyJWSWithKey(tok, nv.Entry.PublicKey()); err != nil {
			t.Fatalf("%q: VerifyJWSWithKey refuses what VerifyJWS accepts: %v", tok, err)
		}
	}
	return nc
}

// signParts signs header.payload as given (already encoded), to make the
// tokens SignJWS never makes.
func signParts(t testing.TB, s *Signer, hseg, pseg string) string {
	sig, err := SignSM2(s.Key, []byte(hseg+"."+pseg))
	if err != nil {
		t.Fatal(err)
	}
	return hseg + "." + pseg + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// diffCorpus is the inputs of the differential test and the fuzz seeds,
// each with the verdict the test expects of both paths.
func diffCorpus(t testing.TB, p *diffPKI) map[string]string {
	out := map[string]string{}
	add := func(verdict, tok string) { out[tok] = verdict }
	ok, mal, sig, unk, role := "accepted", ErrMalformed.Error(), ErrSignature.Error(), ErrUnknownKey.Error(), ErrWrongRole.Error()
	code := []byte(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz","skv":1,"col":"green","nm":"*三","idt":"1234","vax":true,"iat":1763780000,"exp":1763780060}`)
	hdr := func(s *Signer, typ string) string {
		return b64(`{"alg":"SM2","kid":"` + s.KID + `","typ":"` + typ + `"}`)
	}
	for _, typ := range []string{"hcx-code+jws", "hcx-venue+jws", "hcx-batch+jws", "hcx-request+jws", "hcx-audithead+jws"} {
		for _, sign := range []func(string, []byte) (string, error){p.gd.SignJWS, p.gd.signJWSJWX} {
			tok, err := sign(typ, code)
			if err != nil {
				t.Fatal(err)
			}
			add(ok, tok)
		}
	}
	// Other kinds: a trust list signed by the root; a root-signed code.
	tl, _ := p.root.SignJWS("hcx-trust+jws", []byte(`{"v":2}`))
	add(ok, tl)
	rc, _ := p.root.SignJWS("hcx-code+jws", code)
	add(role, rc)
	gtl, _ := p.gd.SignJWS("hcx-trust+jws", []byte(`{"v":2}`))
	add(role, gtl)
	// A revoked key still verifies here (revocation is CheckAt's question),
	// the same on both paths; an untrusted key is unknown.
	rv, _ := p.sx.SignJWS("hcx-code+jws", code)
	add(ok, rv)
	un, _ := p.unknown.SignJWS("hcx-code+jws", code)
	add(unk, un)

	good, _ := p.gd.SignJWS("hcx-code+jws", code)
	parts := strings.Split(good, ".")
	h, pl, s := parts[0], parts[1], parts[2]
	rawSig, _ := base64.RawURLEncoding.DecodeString(s)
	// The signature part in the spellings jwx tolerates.
	add(ok, h+"."+pl+"."+base64.URLEncoding.EncodeToString(rawSig))
	add(ok, h+"."+pl+"."+base64.StdEncoding.EncodeToString(rawSig))
	add(ok, h+"."+pl+"."+base64.RawStdEncoding.EncodeToString(rawSig))
	add(ok, h+"."+pl+"."+s[:10]+"\n"+s[10:]+"\r\n")
	add("", h+"."+pl+"."+s+"=") // padding: accepted when it fits the length
	add(mal, h+"."+pl+"."+s+"!")
	add(mal, h+"."+pl+"."+s+" ")
	add(sig, h+"."+pl+".")
	add(sig, h+"."+pl+"."+s[:len(s)-4])
	add(sig, h+"."+pl+"."+s+"AAAA")
	// Other keys' and other tokens' signatures.
	other, _ := p.gd.SignJWS("hcx-code+jws", []byte(`{}`))
	add(sig, h+"."+pl+"."+strings.Split(other, ".")[2])
	// Shapes.
	for _, bad := range []string{"", ".", "..", "...", h, h + "." + pl, h + "." + pl + "." + s + ".", h + ".." + s,
		"." + pl + "." + s, " " + good, good + " ", "{" + good, `{"payload":"` + pl + `","protected":"` + h + `","signature":"` + s + `"}`,
		h + "=." + pl + "." + s, h + "." + pl + "=." + s, h + "." + pl + "\n." + s} {
		add("", bad)
	}
	// Headers: alg, members, whitespace, duplicates, and a line break inside
	// the header part (which base64 skips).
	add(mal, signParts(t, p.gd, b64(`{"alg":"ES256","kid":"`+p.gd.KID+`","typ":"hcx-code+jws"}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"none","kid":"`+p.gd.KID+`","typ":"hcx-code+jws"}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"SM2","typ":"hcx-code+jws"}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"SM2","kid":"`+p.gd.KID+`","kid":"`+p.gd.KID+`","typ":"hcx-code+jws"}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"SM2","kid":"`+p.gd.KID+`","typ":"hcx-code+jws","b64":false}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"SM2","kid":"`+p.gd.KID+`","typ":"hcx-code+jws","crit":["b64"]}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"SM2", "kid":"`+p.gd.KID+`","typ":"hcx-code+jws"}`), pl))
	add(mal, signParts(t, p.gd, b64(`{"alg":"SM2","kid":"`+p.gd.KID+`","typ":"hcx-code+jws"}x`), pl))
	add(ok, signParts(t, p.gd, b64(`{"kid":"`+p.gd.KID+`","alg":"SM2","typ":"hcx-code+jws"}`), pl))
	add(ok, signParts(t, p.gd, hdr(p.gd, "hcx-code+jws"), b64(`not json at all`)))
	add(ok, signParts(t, p.gd, hdr(p.gd, "hcx-code+jws"), ""))
	hb := hdr(p.gd, "hcx-code+jws")
	wrapped := hb[:8] + "\n" + hb[8:]
	add(ok, signParts(t, p.gd, hb, pl)[:0]+wrapped+strings.TrimPrefix(signParts(t, p.gd, hb, pl), hb))
	add(sig, signParts(t, p.gd, wrapped, pl))
	// A payload with non-zero trailing bits, signed as written.
	pnz := pl[:len(pl)-1] + string(pl[len(pl)-1]^1)
	if len(pl)%4 != 0 {
		add(mal, signParts(t, p.gd, h, pnz))
	}
	// The other province's signature under gd's kid, and gd's under sx's.
	add(sig, signParts(t, p.sx, h, pl))
	add(sig, hdr(p.sx, "hcx-code+jws")+"."+pl+"."+s)
	return out
}

func TestDirectJWSAgreesWithJWX(t *testing.T) {
	p := newDiffPKI(t)
	corpus := diffCorpus(t, p)
	for tok, want := range corpus {
		got := sameVerdict(t, p.ts, tok)
		if want != "" && got != want {
			t.Errorf("%q: both paths say %s, want %s", tok, got, want)
		}
	}
	// Every one-character change of a valid token, at every position: each
	// refused by both, for the same reason.
	good, _ := p.gd.SignJWS("hcx-code+jws", []byte(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz","col":"red","iat":1,"exp":2}`))
	n := 0
	for i := 0; i < len(good); i++ {
		for _, c := range []byte{'A', '_', '-', '.', '=', '+', '\n'} {
			if good[i] == c {
				continue
			}
			tampered := good[:i] + string(c) + good[i+1:]
			if got := sameVerdict(t, p.ts, tampered); got == "accepted" {
				// A change the base64 decoders skip or a spelling of the same
				// bits: the same signature over the same bytes. Both accept.
				n++
			}
		}
	}
	t.Logf("%d tokens, %d tampered ones accepted by both (line breaks and spellings of the same bits)", len(corpus)+len(good)*7, n)
}

func TestSignJWSWritesWhatJWXWrote(t *testing.T) {
	p := newPKI(t)
	for _, typ := range []string{"hcx-code+jws", "hcx-batch+jws", "hcx-trust+jws"} {
		payload := []byte(`{"a":"` + strings.Repeat("x", len(typ)) + `"}`)
		newTok, err := p.gd.SignJWS(typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		oldTok, err := p.gd.signJWSJWX(typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		// SM2 signatures are randomised: the header and payload parts must
		// be byte-identical, and each token verify on both paths.
		ni, oi := strings.LastIndexByte(newTok, '.'), strings.LastIndexByte(oldTok, '.')
		if newTok[:ni] != oldTok[:oi] {
			t.Errorf("%s: signed part %q, jwx wrote %q", typ, newTok[:ni], oldTok[:oi])
		}
		for _, tok := range []string{newTok, oldTok} {
			if _, err := verifyJWSWithKeyJWX(tok, p.gd.Public()); err != nil {
				t.Errorf("%s: the jwx verifier refuses %q: %v", typ, tok, err)
			}
			if _, err := VerifyJWSWithKey(tok, p.gd.Public()); err != nil {
				t.Errorf("%s: the direct verifier refuses %q: %v", typ, tok, err)
			}
		}
	}
}

func FuzzDirectJWS(f *testing.F) {
	p := newDiffPKI(f)
	for tok := range diffCorpus(f, p) {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		sameVerdict(t, p.ts, tok)
	})
}

// BenchmarkCodeJWSVerify: one code-sized token verified through the trust
// store on the direct path, on the jwx path it replaced, and as bare SM2
// over the same signing input (the floor).
//
//	go test ./certs -run '^$' -bench CodeJWSVerify -count 3
func BenchmarkCodeJWSVerify(b *testing.B) {
	p := newPKI(b)
	tok, err := p.gd.SignJWS("hcx-code+jws", []byte(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH","skv":1,"col":"green","nm":"*三","idt":"1234","vax":true,"iat":1763780000,"exp":1763866400}`))
	if err != nil {
		b.Fatal(err)
	}
	dot := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:dot])
	sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	pub := p.gd.Public()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.ts.verifyJWS(tok, byKey(verifyCompact)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwx", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.ts.verifyJWS(tok, byKey(verifyJWSWithKeyJWX)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-sm2", func(b *testing.B) {
		for b.Loop() {
			if !VerifySM2(pub, input, sig) {
				b.Fatal("raw verify failed")
			}
		}
	})
}

// BenchmarkCodeJWSSign: SignJWS on the direct path, through jwx, and bare
// SM2 over a signing input of the same size.
func BenchmarkCodeJWSSign(b *testing.B) {
	p := newPKI(b)
	payload := []byte(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH","skv":1,"col":"green","nm":"*三","idt":"1234","vax":true,"iat":1763780000,"exp":1763866400}`)
	tok, _ := p.gd.SignJWS("hcx-code+jws", payload)
	input := []byte(tok[:strings.LastIndexByte(tok, '.')])
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.gd.SignJWS("hcx-code+jws", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwx", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.gd.signJWSJWX("hcx-code+jws", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-sm2", func(b *testing.B) {
		for b.Loop() {
			if _, err := SignSM2(p.gd.Key, input); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCodeJWSInterleaved runs the direct path, the jwx path and bare
// SM2 in turn on one token, each iteration all three, so that a machine
// shared with other work slows the three alike; it reports each one's time
// and the JWS paths' cost relative to bare SM2 (1.0 = no overhead).
//
//	go test ./certs -run '^$' -bench CodeJWSInterleaved -benchtime 3000x -count 3
func BenchmarkCodeJWSInterleaved(b *testing.B) {
	p := newPKI(b)
	payload := []byte(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH","skv":1,"col":"green","nm":"*三","idt":"1234","vax":true,"iat":1763780000,"exp":1763866400}`)
	tok, _ := p.gd.SignJWS("hcx-code+jws", payload)
	dot := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:dot])
	sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	pub := p.gd.Public()
	var direct, jwx, raw, sDirect, sJWX, sRaw time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := p.ts.verifyJWS(tok, byKey(verifyCompact)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := p.ts.verifyJWS(tok, byKey(verifyJWSWithKeyJWX)); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if !VerifySM2(pub, input, sig) {
			b.Fatal("raw verify failed")
		}
		t3 := time.Now()
		if _, err := p.gd.SignJWS("hcx-code+jws", payload); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		if _, err := p.gd.signJWSJWX("hcx-code+jws", payload); err != nil {
			b.Fatal(err)
		}
		t5 := time.Now()
		if _, err := SignSM2(p.gd.Key, input); err != nil {
			b.Fatal(err)
		}
		t6 := time.Now()
		direct, jwx, raw = direct+t1.Sub(t0), jwx+t2.Sub(t1), raw+t3.Sub(t2)
		sDirect, sJWX, sRaw = sDirect+t4.Sub(t3), sJWX+t5.Sub(t4), sRaw+t6.Sub(t5)
	}
	n := float64(b.N)
	b.ReportMetric(float64(direct.Nanoseconds())/n, "verify-direct-ns")
	b.ReportMetric(float64(jwx.Nanoseconds())/n, "verify-jwx-ns")
	b.ReportMetric(float64(raw.Nanoseconds())/n, "verify-raw-ns")
	b.ReportMetric(float64(direct)/float64(raw), "verify-direct/raw")
	b.ReportMetric(float64(jwx)/float64(raw), "verify-jwx/raw")
	b.ReportMetric(float64(sDirect)/float64(sRaw), "sign-direct/raw")
	b.ReportMetric(float64(sJWX)/float64(sRaw), "sign-jwx/raw")
}
