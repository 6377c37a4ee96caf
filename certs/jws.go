package certs

import (
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/hcxfed/hcx"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// AlgSM2 is the JWS algorithm "SM2": SM2 over SM3 with the default user id,
// signature ASN.1 DER (PROTOCOL.md §2). It is registered with jwx's
// custom-algorithm API on first use.
const AlgSM2 = jwa.SignatureAlgorithm("SM2")

var registerOnce sync.Once

// register adds SM2 to jwx's algorithm tables. jwx keeps those tables
// globally, so this is the one place we touch global state.
func register() {
	registerOnce.Do(func() {
		jws.RegisterSigner(AlgSM2, jws.SignerFactoryFn(func() (jws.Signer, error) { return sm2Signer{}, nil }))
		jws.RegisterVerifier(AlgSM2, jws.VerifierFactoryFn(func() (jws.Verifier, error) { return sm2Verifier{}, nil }))
	})
}

type sm2Signer struct{}

func (sm2Signer) Algorithm() jwa.SignatureAlgorithm { return AlgSM2 }

func (sm2Signer) Sign(payload []byte, key interface{}) ([]byte, error) {
	k, ok := key.(*sm2.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("SM2 signer needs an *sm2.PrivateKey, got %T", key)
	}
	return SignSM2(k, payload)
}

type sm2Verifier struct{}

func (sm2Verifier) Verify(payload, sig []byte, key interface{}) error {
	k, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("SM2 verifier needs an *ecdsa.PublicKey, got %T", key)
	}
	if !VerifySM2(k, payload, sig) {
		return ErrSignature
	}
	return nil
}

// Header is the protected header of an hcx JWS.
type Header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// signJWSJWX is the signer through jwx that SignJWS replaced (issue 12); the
// tests check that both write the same header and that each one's tokens
// verify on both paths.
func (s *Signer) signJWSJWX(typ string, payload []byte) (string, error) {
	register()
	h := jws.NewHeaders()
	if err := h.Set(jws.KeyIDKey, s.KID); err != nil {
		return "", err
	}
	if err := h.Set(jws.TypeKey, typ); err != nil {
		return "", err
	}
	out, err := jws.Sign(payload, jws.WithKey(AlgSM2, s.Key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", typ, err)
	}
	return string(out), nil
}

// Verification errors. Each is wrapped with detail; test with errors.Is.
var (
	ErrMalformed     = errors.New("malformed JWS")
	ErrSignature     = errors.New("signature does not verify")
	ErrUnknownKey    = errors.New("key id is not in the trust list")
	ErrRevoked       = errors.New("key was revoked")
	ErrExpired       = errors.New("certificate expired")
	ErrNotYetValid   = errors.New("certificate not yet valid")
	ErrWrongRole     = errors.New("certificate role may not sign this")
	ErrWrongProvince = errors.New("certificate is bound to another province")
)

// ParseHeader decodes the protected header of a compact JWS without checking
// the signature. The header is signed JSON and read as strictly as every
// signed payload (hcx.UnmarshalStrict): exactly the members alg, kid and typ,
// each once, as strings, no whitespace, nothing after the object; so jwx,
// which reads the header again when it verifies, cannot read it differently.
// The three parts must be canonical base64url without padding. The strict
// reading lives in the root package because certs cannot import exchange
// (exchange imports certs), and both need it.
func ParseHeader(compact string) (Header, error) {
	var h Header
	dot := strings.IndexByte(compact, '.')
	if dot <= 0 || strings.Count(compact, ".") != 2 {
		return h, fmt.Errorf("%w: want three base64url parts separated by dots", ErrMalformed)
	}
	raw, err := b64u.DecodeString(compact[:dot])
	if err != nil {
		return h, fmt.Errorf("%w: header is not canonical base64url: %v", ErrMalformed, err)
	}
	if err := hcx.UnmarshalStrict(raw, &h); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Alg != string(AlgSM2) {
		return h, fmt.Errorf("%w: alg is %q, want SM2", ErrMalformed, h.Alg)
	}
	if h.Kid == "" {
		return h, fmt.Errorf("%w: header has no kid", ErrMalformed)
	}
	return h, nil
}

// b64u is base64url without padding, refusing non-zero trailing bits, so
// that one payload has exactly one spelling.
var b64u = base64.RawURLEncoding.Strict()

// canonicalB64u reports whether seg is the one base64url spelling (no
// padding, zero trailing bits) of what it decodes to, without decoding it.
func canonicalB64u(seg string) bool {
	if len(seg)%4 == 1 {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	if len(seg) == 0 || len(seg)%4 == 0 {
		return true
	}
	// The last character carries 2 (after 3 characters) or 4 (after 2)
	// unused low bits, which must be zero.
	_, err := b64u.DecodeString(seg[len(seg)-len(seg)%4:])
	return err == nil
}

// verifyJWSWithKeyJWX is the verifier through jwx that VerifyJWSWithKey
// replaced (issue 12). It stays as the reference the differential test and
// fuzz target (fastjws_test.go) hold the direct path to.
func verifyJWSWithKeyJWX(compact string, pub *ecdsa.PublicKey) ([]byte, error) {
	register()
	// The payload we hand on is the one canonical reading of the signed
	// bytes, whatever jwx tolerates.
	d1, d2 := strings.IndexByte(compact, '.'), strings.LastIndexByte(compact, '.')
	if d1 < 0 || d2 == d1 || !canonicalB64u(compact[d1+1:d2]) {
		return nil, fmt.Errorf("%w: payload is not canonical base64url", ErrMalformed)
	}
	payload, err := jws.Verify([]byte(compact), jws.WithKey(AlgSM2, pub))
	if err != nil {
		if errors.Is(err, ErrSignature) || strings.Contains(err.Error(), "verif") {
			return nil, fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return payload, nil
}
