package exchange

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// TrustList is the root-signed list of trusted certificates and revocations
// (PROTOCOL.md §3). It travels in the hub log like every other envelope.
type TrustList struct {
	Typ     string        `json:"typ"`
	Iss     string        `json:"iss"`
	At      int64         `json:"at"`
	Ver     uint64        `json:"ver"`
	Certs   []TrustedCert `json:"certs"`
	Revoked []Revocation  `json:"revoked"`
}

// TrustedCert is one certificate in a trust list.
type TrustedCert struct {
	KID      string           `json:"kid"`
	Role     certs.Role       `json:"role"`
	Province hcx.ProvinceCode `json:"province,omitempty"`
	DER      string           `json:"der"` // standard base64
}

// Revocation says a key stopped counting at a time.
type Revocation struct {
	KID string `json:"kid"`
	At  int64  `json:"at"`
}

// SealTrustList signs a trust list with the root.
func SealTrustList(root *certs.Signer, tl *TrustList) (string, error) {
	tl.Typ, tl.Iss = TypTrust, RootIssuer
	if tl.Ver == 0 {
		return "", hcx.Invalidf("ver", "trust list versions start at 1")
	}
	if tl.Certs == nil {
		tl.Certs = []TrustedCert{}
	}
	if tl.Revoked == nil {
		tl.Revoked = []Revocation{}
	}
	return seal(root, TypTrust, tl)
}

// TrustedCertOf describes a signer's certificate for a trust list.
func TrustedCertOf(s *certs.Signer) TrustedCert {
	return TrustedCert{KID: s.KID, Role: s.Role, Province: s.Province, DER: base64.StdEncoding.EncodeToString(s.Cert.Raw)}
}

// Bounds on a trust list's content.
const (
	MaxTrustCerts   = 4096
	MaxTrustRevoked = 4096
	MaxCertDER      = 8 << 10
)

// Validate checks a trust list's content, naming the first wrong field:
// version from 1, bounded lists, each certificate's kid the fingerprint of its
// DER, a known signing role, a province exactly for province certificates,
// no kid twice, and revocations of well-formed kids at Unix seconds. That each
// certificate chains to the root and says the role listed is checked when
// the list is applied (ApplyTrustList).
func (tl *TrustList) Validate() error {
	if tl.Typ != TypTrust {
		return hcx.Invalidf("typ", "trust list typ is %q, want %q", tl.Typ, TypTrust)
	}
	if tl.Iss != RootIssuer {
		return hcx.Invalidf("iss", "trust list iss is %q, want %q", tl.Iss, RootIssuer)
	}
	if tl.Ver == 0 {
		return hcx.Invalidf("ver", "trust list versions start at 1")
	}
	if len(tl.Certs) > MaxTrustCerts {
		return hcx.Invalidf("certs", "a trust list holds at most %d certificates, this one %d", MaxTrustCerts, len(tl.Certs))
	}
	if len(tl.Revoked) > MaxTrustRevoked {
		return hcx.Invalidf("revoked", "a trust list holds at most %d revocations, this one %d", MaxTrustRevoked, len(tl.Revoked))
	}
	seen := make(map[string]bool, len(tl.Certs))
	for i, c := range tl.Certs {
		f := func(m string) string { return fmt.Sprintf("certs[%d].%s", i, m) }
		if len(c.DER) > base64.StdEncoding.EncodedLen(MaxCertDER) {
			return hcx.Invalidf(f("der"), "certificate is over %d bytes", MaxCertDER)
		}
		der, err := base64.StdEncoding.Strict().DecodeString(c.DER)
		if err != nil {
			return hcx.Invalidf(f("der"), "der must be standard base64: %v", err)
		}
		if got := certs.KID(der); got != c.KID {
			return hcx.Invalidf(f("kid"), "kid %q but the certificate's fingerprint is %s", c.KID, got)
		}
		if seen[c.KID] {
			return hcx.Invalidf(f("kid"), "kid %s is listed twice", c.KID)
		}
		seen[c.KID] = true
		switch c.Role {
		case certs.RoleProvince, certs.RoleFeed, certs.RoleCheckpoint:
			if err := c.Province.Validate(); err != nil {
				return inField(f("province"), err)
			}
		case certs.RoleHub, certs.RoleAuditor:
			if c.Province != "" {
				return hcx.Invalidf(f("province"), "a %s certificate has no province, got %q", c.Role, c.Province)
			}
		default:
			return hcx.Invalidf(f("role"), "role %q may not be listed; want province, hub, checkpoint, feed or auditor", c.Role)
		}
	}
	revoked := make(map[string]bool, len(tl.Revoked))
	for i, r := range tl.Revoked {
		if len(r.KID) != 22 {
			return hcx.Invalidf(fmt.Sprintf("revoked[%d].kid", i), "kid %q is not a key id (22 base64url characters)", r.KID)
		}
		if revoked[r.KID] {
			return hcx.Invalidf(fmt.Sprintf("revoked[%d].kid", i), "kid %s is revoked twice", r.KID)
		}
		revoked[r.KID] = true
		if r.At <= 0 {
			return hcx.Invalidf(fmt.Sprintf("revoked[%d].at", i), "at must be Unix seconds, got %d", r.At)
		}
	}
	return nil
}

// DecodeTrustList reads the trust list in a verified envelope and checks its
// content.
func DecodeTrustList(env *Envelope) (*TrustList, error) { return decodeValid[TrustList](env, TypTrust) }

// ApplyTrustList verifies a trust-list envelope and applies it to ts: an
// unsigned, wrongly signed or older list is refused and changes nothing.
// Every certificate's kid and role must match the certificate itself.
func ApplyTrustList(ts *certs.TrustStore, compact string) (*TrustList, error) {
	env, err := Open(ts, compact)
	if err != nil {
		return nil, err
	}
	tl, err := DecodeTrustList(env)
	if err != nil {
		return nil, err
	}
	ders := make([][]byte, len(tl.Certs))
	for i, c := range tl.Certs {
		der, _ := base64.StdEncoding.DecodeString(c.DER) // checked by Validate
		e, err := ts.CheckCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("trust list certs[%d] (kid %s): %w", i, c.KID, err)
		}
		if e.Role != c.Role || e.Province != c.Province {
			return nil, fmt.Errorf("%w: trust list certs[%d]: listed as %s %q but the certificate says %s %q", certs.ErrMalformed, i, c.Role, c.Province, e.Role, e.Province)
		}
		ders[i] = der
	}
	rev := make(map[string]time.Time, len(tl.Revoked))
	for _, r := range tl.Revoked {
		rev[r.KID] = time.Unix(r.At, 0)
	}
	if err := ts.ApplyList(tl.Ver, ders, rev); err != nil {
		return nil, err
	}
	return tl, nil
}

// TrustedCertOfEntry describes a trusted certificate for a trust list.
func TrustedCertOfEntry(e *certs.Entry) TrustedCert {
	return TrustedCert{KID: e.KID, Role: e.Role, Province: e.Province, DER: base64.StdEncoding.EncodeToString(e.Cert.Raw)}
}

// BuildTrustList makes the CA's next trust list as of at: every signing
// certificate it ever issued (revoked and expired ones too, so that what they
// signed before stays verifiable) and every revocation, under a version above
// both the CA's last one and atLeast (the version in force in the log). The
// version is recorded in the CA even if the list is never published; versions
// need only increase, not be consecutive.
func BuildTrustList(ca *certs.CA, at time.Time, atLeast uint64) (*TrustList, error) {
	entries, err := ca.SigningCertificates()
	if err != nil {
		return nil, fmt.Errorf("build trust list: %w", err)
	}
	rev, err := ca.Revocations()
	if err != nil {
		return nil, fmt.Errorf("build trust list: %w", err)
	}
	ver, err := ca.NextTrustVersion(atLeast)
	if err != nil {
		return nil, fmt.Errorf("build trust list: %w", err)
	}
	tl := &TrustList{At: at.Unix(), Ver: ver, Certs: []TrustedCert{}, Revoked: []Revocation{}}
	for _, e := range entries {
		tl.Certs = append(tl.Certs, TrustedCertOfEntry(e))
	}
	for kid, t := range rev {
		tl.Revoked = append(tl.Revoked, Revocation{KID: kid, At: t.Unix()})
	}
	sort.Slice(tl.Revoked, func(i, j int) bool { return tl.Revoked[i].KID < tl.Revoked[j].KID })
	return tl, nil
}

// TrustListVersion reads the version of a trust-list envelope after checking
// it against ts (root signature and shape), without applying it.
func TrustListVersion(ts *certs.TrustStore, compact string) (uint64, error) {
	env, err := Open(ts, compact)
	if err != nil {
		return 0, err
	}
	tl, err := DecodeTrustList(env)
	if err != nil {
		return 0, err
	}
	return tl.Ver, nil
}

// PublishTrustList builds the CA's next trust list, signs it with the root and
// submits it to the hub as a log entry. The version is above the one the hub
// serves now (when it serves one), so a CA directory restored from an old
// backup still moves the list forward. It returns the list and where it
// landed in the log.
func PublishTrustList(ctx context.Context, ca *certs.CA, hub *HubClient, now time.Time) (*TrustList, SubmitResult, error) {
	var inForce uint64
	if cur, err := hub.Trust(ctx); err == nil && cur != "" {
		ts, err := certs.NewTrustStore(ca.Root().Cert)
		if err != nil {
			return nil, SubmitResult{}, err
		}
		if inForce, err = TrustListVersion(ts, cur); err != nil {
			return nil, SubmitResult{}, fmt.Errorf("the hub's current trust list does not verify against this CA's root: %w", err)
		}
	} else if err != nil {
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			return nil, SubmitResult{}, fmt.Errorf("read the hub's current trust list: %w", err)
		}
	}
	tl, err := BuildTrustList(ca, now, inForce)
	if err != nil {
		return nil, SubmitResult{}, err
	}
	compact, err := SealTrustList(ca.Root(), tl)
	if err != nil {
		return nil, SubmitResult{}, err
	}
	res, err := hub.Submit(ctx, compact)
	if err != nil {
		return nil, SubmitResult{}, fmt.Errorf("submit trust list version %d: %w", tl.Ver, err)
	}
	return tl, res, nil
}
