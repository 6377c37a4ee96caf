package certs

import (
	"encoding/base64"
	"errors"
	"testing"
)

// signRaw signs a compact JWS whose header and payload parts are given as
// they are, to make the tokens SignJWS never makes.
func signRaw(t *testing.T, s *Signer, header, payloadB64 string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + payloadB64
	sig, err := SignSM2(s.Key, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestTheHeaderHasOneReading(t *testing.T) {
	p := newPKI(t)
	kid := p.gd.KID
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{}`))
	good := signRaw(t, p.gd, `{"alg":"SM2","kid":"`+kid+`","typ":"hcx-batch+jws"}`, payload)
	if _, err := p.ts.VerifyJWS(good); err != nil {
		t.Fatalf("a header as SignJWS writes it: %v", err)
	}
	for name, c := range map[string]struct{ header, payload string }{
		"reject/second-typ":            {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-code+jws","typ":"hcx-batch+jws"}`, payload},
		"reject/case-variant-kid":      {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-batch+jws","KID":"x"}`, payload},
		"reject/case-variant-only":     {`{"alg":"SM2","KID":"` + kid + `","typ":"hcx-batch+jws"}`, payload},
		"reject/unknown-member":        {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-batch+jws","crit":["x"]}`, payload},
		"reject/typ-missing":           {`{"alg":"SM2","kid":"` + kid + `"}`, payload},
		"reject/typ-not-a-string":      {`{"alg":"SM2","kid":"` + kid + `","typ":1}`, payload},
		"reject/whitespace":            {`{"alg":"SM2", "kid":"` + kid + `","typ":"hcx-batch+jws"}`, payload},
		"reject/trailing-bytes":        {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-batch+jws"}x`, payload},
		"reject/payload-bits-not-zero": {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-batch+jws"}`, "e31"},
		"reject/payload-padded":        {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-batch+jws"}`, "e30="},
		"reject/payload-std-alphabet":  {`{"alg":"SM2","kid":"` + kid + `","typ":"hcx-batch+jws"}`, base64.StdEncoding.EncodeToString([]byte("{\"a\":\"\xfb\xff\"}"))},
	} {
		t.Run(name, func(t *testing.T) {
			tok := signRaw(t, p.gd, c.header, c.payload)
			if _, err := p.ts.VerifyJWS(tok); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}
