// Package exchange is the federation's wire contract in code (PROTOCOL.md):
// the signed envelopes that become log leaves, code tokens, the hub client and
// the national recognition rule. Anything two provinces must agree on lives
// here, once.
package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Payload and header types of the envelope kinds (PROTOCOL.md §3). The JWS
// header carries the media type, the payload the versioned kind.
const (
	TypBatch     = "hcx.batch.v1"
	TypTrust     = "hcx.trust.v1"
	TypRiskAreas = "hcx.riskareas.v1"
	TypPolicy    = "hcx.policy.v1"
	TypVax       = "hcx.vax.v1"
	TypExposures = "hcx.exposures.v1"
	TypBoxKey    = "hcx.boxkey.v1"
	TypReceipts  = "hcx.receipts.v1"
	TypAuditHead = "hcx.audithead.v1"

	HdrBatch     = "hcx-batch+jws"
	HdrTrust     = "hcx-trust+jws"
	HdrRiskAreas = "hcx-riskareas+jws"
	HdrPolicy    = "hcx-policy+jws"
	HdrVax       = "hcx-vax+jws"
	HdrExposures = "hcx-exposures+jws"
	HdrCode      = "hcx-code+jws"
	HdrVenue     = "hcx-venue+jws"
	HdrBoxKey    = "hcx-boxkey+jws"
	HdrReceipts  = "hcx-receipts+jws"
	HdrAuditHead = "hcx-audit-head+jws"
)

// headerFor maps a payload type to its JWS header type and the role that may
// sign it.
var headerFor = map[string]struct {
	hdr  string
	role certs.Role
}{
	TypBatch:     {HdrBatch, certs.RoleProvince},
	TypTrust:     {HdrTrust, certs.RoleRoot},
	TypRiskAreas: {HdrRiskAreas, certs.RoleProvince},
	TypPolicy:    {HdrPolicy, certs.RoleProvince},
	TypVax:       {HdrVax, certs.RoleProvince},
	TypExposures: {HdrExposures, certs.RoleProvince},
	TypBoxKey:    {HdrBoxKey, certs.RoleProvince},
	TypReceipts:  {HdrReceipts, certs.RoleProvince},
	TypAuditHead: {HdrAuditHead, certs.RoleProvince},
}

// Limits on a colour batch (PROTOCOL.md §3).
const (
	MaxBatchAttestations = 1000
	MaxEnvelopeBytes     = 512 << 10
)

// RootIssuer is the iss of envelopes signed by the national root.
const RootIssuer = "root"

// Envelope is a verified log leaf: the exact compact JWS and what it says.
type Envelope struct {
	Raw     string // the leaf bytes
	Header  certs.Header
	Typ     string
	Iss     string
	At      int64
	Payload []byte
	Signer  *certs.Entry

	body any // the payload read strictly: *Batch, *TrustList, *RiskAreas, *PolicyPublication, *Vax, ..., *AuditHead
}

// Errors from Open, wrapped with detail. The certs errors (ErrSignature,
// ErrUnknownKey, ErrRevoked, ErrExpired, ErrNotYetValid, ErrMalformed) come
// through as they are.
var (
	ErrTooLarge    = errors.New("envelope too large")
	ErrWrongIssuer = errors.New("signer may not speak for this issuer")
)

// Open verifies a compact JWS envelope against the trust store: signature,
// that the signer's role may sign this kind, that a province signer's
// certificate names the envelope's iss, and that the key was valid and not
// revoked at the envelope's signed time. The payload is read strictly
// (DecodeStrict) as the kind its header names; a payload that is not exactly
// that kind's JSON is an *hcx.Error of class invalid naming the field, and
// wraps certs.ErrMalformed. Open does not check content: DecodeBatch,
// DecodeTrustList, DecodeRiskAreas, DecodePolicy and CheckContent do.
func Open(ts *certs.TrustStore, compact string) (*Envelope, error) {
	return open(ts, compact, time.Time{})
}

// open is Open and OpenLogged: committed, when not zero, is when the log
// committed the envelope (see CheckSigner).
func open(ts *certs.TrustStore, compact string, committed time.Time) (*Envelope, error) {
	if len(compact) > MaxEnvelopeBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(compact), MaxEnvelopeBytes)
	}
	v, err := ts.VerifyJWS(compact)
	if err != nil {
		return nil, err
	}
	body, c, err := decodeBody(v.Header.Typ, v.Payload)
	if err != nil {
		return nil, err
	}
	want := headerFor[c.Typ]
	if v.Entry.Role != want.role {
		return nil, fmt.Errorf("%w: a %s certificate may not sign %s", ErrWrongIssuer, v.Entry.Role, c.Typ)
	}
	switch want.role {
	case certs.RoleProvince:
		if hcx.ProvinceCode(c.Iss) != v.Entry.Province {
			return nil, fmt.Errorf("%w: iss %q but the certificate %s is bound to province %s", ErrWrongIssuer, c.Iss, v.Entry.KID, v.Entry.Province)
		}
	case certs.RoleRoot:
		if c.Iss != RootIssuer {
			return nil, fmt.Errorf("%w: iss %q, want %q for the root", ErrWrongIssuer, c.Iss, RootIssuer)
		}
	}
	if c.At <= 0 {
		return nil, fmt.Errorf("%w: at must be Unix seconds", certs.ErrMalformed)
	}
	if err := CheckSigner(ts, v.Entry, time.Unix(c.At, 0), committed); err != nil {
		return nil, err
	}
	return &Envelope{Raw: compact, Header: v.Header, Typ: c.Typ, Iss: c.Iss, At: c.At, Payload: v.Payload, Signer: v.Entry, body: body}, nil
}

// common is the part every envelope payload shares.
type common struct {
	Typ string
	Iss string
	At  int64
}

// decodeBody reads a payload strictly as the kind the JWS header type names
// and checks that the payload's typ is that kind's.
func decodeBody(hdr string, payload []byte) (any, common, error) {
	var (
		body any
		c    common
		err  error
	)
	switch hdr {
	case HdrBatch:
		var b Batch
		if err = DecodeStrict(payload, &b); err == nil {
			body, c = &b, common{b.Typ, string(b.Iss), b.At}
		}
	case HdrTrust:
		var tl TrustList
		if err = DecodeStrict(payload, &tl); err == nil {
			body, c = &tl, common{tl.Typ, tl.Iss, tl.At}
		}
	case HdrRiskAreas:
		var ra RiskAreas
		if err = DecodeStrict(payload, &ra); err == nil {
			body, c = &ra, common{ra.Typ, string(ra.Iss), ra.At}
		}
	case HdrPolicy:
		var p PolicyPublication
		if err = DecodeStrict(payload, &p); err == nil {
			body, c = &p, common{p.Typ, string(p.Iss), p.At}
		}
	case HdrVax:
		var v Vax
		if err = DecodeStrict(payload, &v); err == nil {
			body, c = &v, common{v.Typ, string(v.Iss), v.At}
		}
	case HdrExposures:
		var x Exposures
		if err = DecodeStrict(payload, &x); err == nil {
			body, c = &x, common{x.Typ, string(x.Iss), x.At}
		}
	case HdrBoxKey:
		var k BoxKeyEnvelope
		if err = DecodeStrict(payload, &k); err == nil {
			body, c = &k, common{k.Typ, string(k.Iss), k.At}
		}
	case HdrReceipts:
		var r Receipts
		if err = DecodeStrict(payload, &r); err == nil {
			body, c = &r, common{r.Typ, string(r.Iss), r.At}
		}
	case HdrAuditHead:
		var h AuditHead
		if err = DecodeStrict(payload, &h); err == nil {
			body, c = &h, common{h.Typ, string(h.Iss), h.At}
		}
	default:
		return nil, c, fmt.Errorf("%w: header typ %q is not an envelope kind", certs.ErrMalformed, hdr)
	}
	if err != nil {
		return nil, c, err
	}
	for typ, k := range headerFor {
		if k.hdr == hdr && typ != c.Typ {
			return nil, c, malformed("typ", "payload typ %q does not match header typ %q (want %q)", c.Typ, hdr, typ)
		}
	}
	return body, c, nil
}

// DecodeStrict reads signed JSON into v with hcx.UnmarshalStrict, the one
// reading every hcx reader shares (PROTOCOL.md, conventions). A refusal is
// an *hcx.Error of class invalid naming the field, wrapping
// certs.ErrMalformed.
func DecodeStrict(payload []byte, v any) error {
	err := hcx.UnmarshalStrict(payload, v)
	var e *hcx.Error
	if errors.As(err, &e) {
		e.Err = certs.ErrMalformed
	}
	return err
}

// inField moves a validation error to field (such as "areas[3].div"),
// keeping its message.
func inField(field string, err error) error {
	var e *hcx.Error
	if !errors.As(err, &e) {
		return hcx.Invalidf(field, "%v", err)
	}
	c := *e
	c.Field, c.Code = field, hcx.Invalidf(field, "").Code
	return &c
}

// asMalformed makes a content error also wrap certs.ErrMalformed, so that
// callers who test for a malformed envelope find it.
func asMalformed(err error) error {
	var e *hcx.Error
	if errors.As(err, &e) && e.Err == nil {
		c := *e
		c.Err = certs.ErrMalformed
		return &c
	}
	return err
}

// malformed is a content or shape error about field that wraps
// certs.ErrMalformed.
func malformed(field, format string, args ...any) error {
	e := hcx.Invalidf(field, format, args...)
	e.Err = certs.ErrMalformed
	return e
}

// seal marshals payload and signs it with the header type for typ.
func seal(s *certs.Signer, typ string, payload any) (string, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	return s.SignJWS(headerFor[typ].hdr, b)
}

// Batch is a colour batch (PROTOCOL.md §3).
type Batch struct {
	Typ  string            `json:"typ"`
	Iss  hcx.ProvinceCode  `json:"iss"`
	Seq  uint64            `json:"seq"`
	At   int64             `json:"at"`
	SKV  int               `json:"skv"`
	Atts []hcx.Attestation `json:"atts"`
}

// Validate checks a batch's fields, naming the first wrong one.
func (b *Batch) Validate() error {
	if b.Typ != TypBatch {
		return hcx.Invalidf("typ", "batch typ is %q, want %q", b.Typ, TypBatch)
	}
	if err := b.Iss.Validate(); err != nil {
		return err
	}
	if b.Seq == 0 {
		return hcx.Invalidf("seq", "batch sequence starts at 1")
	}
	if len(b.Atts) == 0 || len(b.Atts) > MaxBatchAttestations {
		return hcx.Invalidf("atts", "a batch holds 1 to %d attestations, this one %d", MaxBatchAttestations, len(b.Atts))
	}
	for i := range b.Atts {
		if err := b.Atts[i].Validate(); err != nil {
			var e *hcx.Error
			if errors.As(err, &e) {
				e.Field = fmt.Sprintf("atts[%d].%s", i, e.Field)
			}
			return err
		}
	}
	return nil
}

// SealBatch validates and signs a colour batch.
func SealBatch(s *certs.Signer, b *Batch) (string, error) {
	b.Typ = TypBatch
	if err := b.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypBatch, b)
}

// DecodeBatch reads the batch in a verified envelope and checks its content.
func DecodeBatch(env *Envelope) (*Batch, error) { return decodeValid[Batch](env, TypBatch) }

// decodeValid returns env's payload as a *T (bodyOf) after T's Validate.
// Content errors also wrap certs.ErrMalformed.
func decodeValid[T any, PT interface {
	*T
	Validate() error
}](env *Envelope, typ string) (*T, error) {
	b, err := bodyOf[T](env, typ)
	if err != nil {
		return nil, err
	}
	if err := PT(b).Validate(); err != nil {
		return nil, asMalformed(err)
	}
	return b, nil
}

// bodyOf returns the strictly read payload of env as a *T, reading it now
// if env was not made by Open.
func bodyOf[T any](env *Envelope, typ string) (*T, error) {
	if env.Typ != typ {
		return nil, fmt.Errorf("%w: envelope is %s, not %s", certs.ErrMalformed, env.Typ, typ)
	}
	if b, ok := env.body.(*T); ok {
		return b, nil
	}
	var b T
	if err := DecodeStrict(env.Payload, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// CheckContent checks a verified envelope's content for its kind (PROTOCOL.md
// §3): what the hub checks before it logs an envelope and what a follower
// checks when it reads one. Errors are *hcx.Error naming the field.
func CheckContent(env *Envelope) error {
	var err error
	switch env.Typ {
	case TypBatch:
		_, err = DecodeBatch(env)
	case TypTrust:
		_, err = DecodeTrustList(env)
	case TypRiskAreas:
		_, err = DecodeRiskAreas(env)
	case TypPolicy:
		_, err = DecodePolicy(env)
	case TypVax:
		_, err = DecodeVax(env)
	case TypExposures:
		_, err = DecodeExposures(env)
	case TypBoxKey:
		_, err = DecodeBoxKey(env)
	case TypReceipts:
		_, err = DecodeReceipts(env)
	case TypAuditHead:
		_, err = DecodeAuditHead(env)
	default:
		err = malformed("typ", "unknown envelope typ %q", env.Typ)
	}
	return err
}
