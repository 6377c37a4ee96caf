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

	HdrBatch     = "hcx-batch+jws"
	HdrTrust     = "hcx-trust+jws"
	HdrRiskAreas = "hcx-riskareas+jws"
	HdrPolicy    = "hcx-policy+jws"
	HdrCode      = "hcx-code+jws"
	HdrVenue     = "hcx-venue+jws"
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
}

// common is the part every envelope payload shares.
type common struct {
	Typ string `json:"typ"`
	Iss string `json:"iss"`
	At  int64  `json:"at"`
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
// revoked at the envelope's signed time.
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
	var c common
	if err := json.Unmarshal(v.Payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object: %v", certs.ErrMalformed, err)
	}
	want, ok := headerFor[c.Typ]
	if !ok {
		return nil, fmt.Errorf("%w: unknown envelope typ %q", certs.ErrMalformed, c.Typ)
	}
	if v.Header.Typ != want.hdr {
		return nil, fmt.Errorf("%w: header typ %q does not match payload typ %q (want %q)", certs.ErrMalformed, v.Header.Typ, c.Typ, want.hdr)
	}
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
	return &Envelope{Raw: compact, Header: v.Header, Typ: c.Typ, Iss: c.Iss, At: c.At, Payload: v.Payload, Signer: v.Entry}, nil
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

// DecodeBatch reads the batch in a verified envelope.
func DecodeBatch(env *Envelope) (*Batch, error) {
	if env.Typ != TypBatch {
		return nil, fmt.Errorf("envelope is %s, not a batch", env.Typ)
	}
	var b Batch
	if err := json.Unmarshal(env.Payload, &b); err != nil {
		return nil, fmt.Errorf("%w: batch: %v", certs.ErrMalformed, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}
