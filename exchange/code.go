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
)

// codeError wraps a detail under one of the stable token errors.
func codeError(base *hcx.Error, format string, args ...any) error {
	e := *base
	e.Message = base.Message + ": " + fmt.Sprintf(format, args...)
	e.Err = base
	return &e
}

// VerifyCode checks a health code's QR text against the trust store at time
// now and returns its claims. Errors carry the stable codes token_malformed,
// token_signature, unknown_issuer, key_revoked, key_not_valid, token_expired,
// wrong_issuer.
func VerifyCode(ts *certs.TrustStore, qr string, now time.Time) (*CodeClaims, *certs.Entry, error) {
	qr = strings.TrimSpace(qr)
	if !strings.HasPrefix(qr, CodePrefix) {
		return nil, nil, codeError(ErrTokenMalformed, "it must start with %q", CodePrefix)
	}
	tok := qr[len(CodePrefix):]
	if len(tok) > 4096 {
		return nil, nil, codeError(ErrTokenMalformed, "%d bytes is too long for a code", len(tok))
	}
	h, err := certs.ParseHeader(tok)
	if err != nil {
		return nil, nil, codeError(ErrTokenMalformed, "%v", err)
	}
	if h.Typ != HdrCode {
		return nil, nil, codeError(ErrTokenMalformed, "header typ is %q, want %q", h.Typ, HdrCode)
	}
	v, err := ts.VerifyJWS(tok)
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
	if err := ts.CheckAt(v.Entry, time.Unix(c.IssuedAt, 0)); err != nil {
		if errors.Is(err, certs.ErrRevoked) {
			return nil, nil, codeError(ErrKeyRevoked, "%v", err)
		}
		return nil, nil, codeError(ErrKeyNotValid, "%v", err)
	}
	if now.Unix() >= c.Expires {
		return nil, nil, codeError(ErrTokenExpired, "expired at %s", time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	if c.IssuedAt > now.Unix()+60 {
		return nil, nil, codeError(ErrTokenMalformed, "issued in the future (%s)", time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	return &c, v.Entry, nil
}
