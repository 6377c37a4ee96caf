package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// CodePrefix starts the QR text of a health code (PROTOCOL.md §6).
const CodePrefix = "HCX1:"

// Code lifetimes (PROTOCOL.md §6).
const (
	DynamicCodeTTL = 60 * time.Second
	OfflineCodeTTL = 24 * time.Hour
	// MaxCodeLifetime is the longest exp - iat a verifier accepts. The token
	// does not say whether it is dynamic or offline, so every code is held
	// to the longer of the two lifetimes; issuers give dynamic codes 60 s.
	MaxCodeLifetime = OfflineCodeTTL
	// MaxCodeSkew is how far ahead of the verifier's clock a code's iat may
	// be (the issuer's and the checkpoint's clocks disagree a little).
	MaxCodeSkew = 60 * time.Second
)

// CodeClaims is the payload of a health-code token.
type CodeClaims struct {
	Iss        hcx.ProvinceCode `json:"iss"`
	Sub        hcx.Subject      `json:"sub"`
	SKV        int              `json:"skv"`
	Col        hcx.Colour       `json:"col"`
	Name       string           `json:"nm"`
	IDTail     string           `json:"idt"`
	Vaccinated bool             `json:"vax"`
	IssuedAt   int64            `json:"iat"`
	Expires    int64            `json:"exp"`
}

// IssueCode signs a health-code token and returns its QR text.
func IssueCode(s *certs.Signer, c *CodeClaims) (string, error) {
	if s.Province != c.Iss {
		return "", fmt.Errorf("issue code: signer is bound to %s, code names %s", s.Province, c.Iss)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	tok, err := s.SignJWS(HdrCode, b)
	if err != nil {
		return "", err
	}
	return CodePrefix + tok, nil
}

// Code verification errors, each with the stable code of PROTOCOL.md §6.
var (
	ErrTokenMalformed = &hcx.Error{Class: hcx.EUnprocessable, Code: "token_malformed", Message: "the code is not an hcx health code"}
	ErrTokenExpired   = &hcx.Error{Class: hcx.EUnprocessable, Code: "token_expired", Message: "the code has expired"}
	ErrTokenSignature = &hcx.Error{Class: hcx.EUnprocessable, Code: "token_signature", Message: "the code's signature does not verify: it was altered or forged"}
	ErrUnknownIssuer  = &hcx.Error{Class: hcx.EUnprocessable, Code: "unknown_issuer", Message: "the code is signed by a key no province in the trust list holds"}
	ErrKeyRevoked     = &hcx.Error{Class: hcx.EUnprocessable, Code: "key_revoked", Message: "the code is signed by a revoked key"}
	ErrWrongProvince  = &hcx.Error{Class: hcx.EUnprocessable, Code: "wrong_issuer", Message: "the code is not signed by a province signer of its issuer"}
	ErrKeyNotValid    = &hcx.Error{Class: hcx.EUnprocessable, Code: "key_not_valid", Message: "the code was signed outside its key's certificate validity"}
	ErrTokenLifetime  = &hcx.Error{Class: hcx.EUnprocessable, Code: "token_lifetime", Message: "the code's lifetime (exp - iat) must be above 0 and at most 24h"}
	ErrTokenFuture    = &hcx.Error{Class: hcx.EUnprocessable, Code: "token_not_yet_valid", Message: "the code is issued in the future: the issuer's or this checkpoint's clock is wrong"}
)

// codeError wraps a detail under one of the stable token errors.
func codeError(base *hcx.Error, format string, args ...any) error {
	e := *base
	e.Message = base.Message + ": " + fmt.Sprintf(format, args...)
	e.Err = base
	return &e
}

// VerifyCode checks a health code's QR text against the trust store at time
// now (the moment it is presented) and returns its claims. The times the
// signer wrote are bounded: exp - iat in (0, 24h], iat at most 60 s ahead of
// now, exp after now. A key revoked at or before now is refused whatever the
// code's iat; the certificate's validity is checked at iat. Errors carry the
// stable codes token_malformed, token_signature, unknown_issuer, key_revoked,
// key_not_valid, token_lifetime, token_not_yet_valid, token_expired,
// wrong_issuer.
func VerifyCode(ts *certs.TrustStore, qr string, now time.Time) (*CodeClaims, *certs.Entry, error) {
	tok, h, err := qrToken(qr, CodePrefix, HdrCode, ErrTokenMalformed)
	if err != nil {
		return nil, nil, err
	}
	// qrToken read the header with certs.ParseHeader; it is not read twice.
	v, err := ts.VerifyParsedJWS(tok, h)
	switch {
	case errors.Is(err, certs.ErrUnknownKey):
		return nil, nil, codeError(ErrUnknownIssuer, "kid %s", h.Kid)
	case errors.Is(err, certs.ErrSignature):
		return nil, nil, codeError(ErrTokenSignature, "kid %s", h.Kid)
	case errors.Is(err, certs.ErrWrongRole), errors.Is(err, certs.ErrWrongProvince):
		return nil, nil, codeError(ErrWrongProvince, "%v", err)
	case err != nil:
		return nil, nil, codeError(ErrTokenMalformed, "%v", err)
	}
	var c CodeClaims
	if err := DecodeStrict(v.Payload, &c); err != nil {
		return nil, nil, codeError(ErrTokenMalformed, "payload: %v", err)
	}
	if err := c.Sub.Validate(); err != nil {
		return nil, nil, codeError(ErrTokenMalformed, "%v", err)
	}
	if err := c.Col.Validate(); err != nil {
		return nil, nil, codeError(ErrTokenMalformed, "%v", err)
	}
	if v.Entry.Role != certs.RoleProvince || v.Entry.Province != c.Iss {
		return nil, nil, codeError(ErrWrongProvince, "iss %s, key bound to %q", c.Iss, v.Entry.Province)
	}
	if err := checkCodeTimes(ts, v.Entry, &c, now); err != nil {
		return nil, nil, err
	}
	return &c, v.Entry, nil
}

// checkCodeTimes applies PROTOCOL.md §6's bounds on a verified code's times.
func checkCodeTimes(ts *certs.TrustStore, e *certs.Entry, c *CodeClaims, now time.Time) error {
	stamp := func(u int64) string { return time.Unix(u, 0).UTC().Format(time.RFC3339) }
	// Lifetime first: a code that claims years is refused as such, whatever
	// else is wrong with it.
	if life := c.Expires - c.IssuedAt; life <= 0 || life > int64(MaxCodeLifetime/time.Second) {
		return codeError(ErrTokenLifetime, "iat %s, exp %s: %ds, allowed 1s to %s", stamp(c.IssuedAt), stamp(c.Expires), life, MaxCodeLifetime)
	}
	if c.IssuedAt > now.Add(MaxCodeSkew).Unix() {
		return codeError(ErrTokenFuture, "iat %s is more than %s after this checkpoint's time %s", stamp(c.IssuedAt), MaxCodeSkew, now.UTC().Format(time.RFC3339))
	}
	// Revocation at presentation: a stolen key's codes stop counting the
	// moment the revocation is known, whatever iat they carry. A code dated
	// after a revocation still to come is refused too.
	if err := ts.CheckRevokedAt(e, now); err != nil {
		return codeError(ErrKeyRevoked, "%v", err)
	}
	if err := ts.CheckAt(e, time.Unix(c.IssuedAt, 0)); err != nil {
		if errors.Is(err, certs.ErrRevoked) {
			return codeError(ErrKeyRevoked, "%v", err)
		}
		return codeError(ErrKeyNotValid, "%v", err)
	}
	if now.Unix() >= c.Expires {
		return codeError(ErrTokenExpired, "expired at %s", stamp(c.Expires))
	}
	return nil
}

// qrToken takes the compact JWS out of a QR text that starts with prefix
// and checks its size and header typ; a refusal is base with the detail.
func qrToken(qr, prefix, typ string, base *hcx.Error) (string, certs.Header, error) {
	qr = strings.TrimSpace(qr)
	if !strings.HasPrefix(qr, prefix) {
		return "", certs.Header{}, codeError(base, "it must start with %q", prefix)
	}
	tok := qr[len(prefix):]
	if len(tok) > 4096 {
		return "", certs.Header{}, codeError(base, "%d bytes is too long for a code", len(tok))
	}
	h, err := certs.ParseHeader(tok)
	if err != nil {
		return "", certs.Header{}, codeError(base, "%v", err)
	}
	if h.Typ != typ {
		return "", certs.Header{}, codeError(base, "header typ is %q, want %q", h.Typ, typ)
	}
	return tok, h, nil
}
