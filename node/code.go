package node

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

func jsonMarshal(v any) ([]byte, error)   { return json.Marshal(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Code is a health code issued to a resident.
type Code struct {
	QR        string     `json:"code"`
	Colour    hcx.Colour `json:"colour"`
	IssuedAt  time.Time  `json:"issued_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	// RefreshAt is when a dynamic code should be fetched again.
	RefreshAt time.Time `json:"refresh_at"`
	// Cities are the cities the resident stayed in during the last
	// CityDays days, most recent first ("two codes in one", travel.go).
	// They are shown beside the code, never put in it: a checkpoint sees
	// the masked name and ID tail only (docs/decisions.md).
	Cities []City `json:"cities"`
}

// IssueCode signs a health code for a resident: a dynamic code that lives 60
// seconds, or with offline set, one that lives 24 hours. Its colour is the
// resident's status: this province's decision combined with the other
// provinces' attestations in force (combine), never milder than either.
func (n *Node) IssueCode(ctx context.Context, sub hcx.Subject, offline bool) (*Code, error) {
	r, err := n.Resident(ctx, sub)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC().Truncate(time.Second)
	ttl := exchange.DynamicCodeTTL
	if offline {
		ttl = exchange.OfflineCodeTTL
	}
	claims := exchange.CodeClaims{Iss: n.cfg.Province, Sub: sub, SKV: n.cfg.SubjectKey.Version, Col: r.Status.Colour,
		Name: r.MaskedName, IDTail: r.IDTail, Vaccinated: r.Status.Vaccinated, IssuedAt: now.Unix(), Expires: now.Add(ttl).Unix()}
	qr, err := exchange.IssueCode(n.cfg.Signer, &claims)
	if err != nil {
		return nil, err
	}
	cities, err := n.citiesVisited(sub)
	if err != nil {
		return nil, err
	}
	n.metrics.codes.Add(1)
	return &Code{QR: qr, Colour: claims.Col, IssuedAt: now, ExpiresAt: now.Add(ttl), RefreshAt: now.Add(ttl / 2), Cities: cities}, nil
}

// Verification is the answer to a checkpoint's scan (PROTOCOL.md §6),
// built by exchange.Answer, the one place the offline verifier shares.
type Verification = exchange.Verification

// Verify checks a health code from any province and answers with the
// national recognition rule over this node's view of the log. A rejected
// code changes nothing.
func (n *Node) Verify(ctx context.Context, qr string) (*Verification, error) {
	start := time.Now() // latency, not the node's clock (which tests may stop)
	now := n.cfg.Now()
	claims, _, err := exchange.VerifyCode(n.trust, qr, now)
	if err != nil {
		n.metrics.verifyRefused.Observe(time.Since(start).Seconds())
		n.metrics.verifyRejected.Add(1)
		n.statRefused(now, err)
		return nil, err
	}
	var atts []exchange.LoggedAttestation
	var size uint64
	err = n.db.View(func(txn *badger.Txn) error {
		var err error
		if size, err = getU64(txn, kFollowNext); err != nil {
			return err
		}
		atts, err = foreignAttestations(txn, claims.Sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	v := exchange.Answer(claims, atts, now, size)
	n.metrics.verified.Add(1)
	n.metrics.verifyOK.Observe(time.Since(start).Seconds())
	if c, ok := checkOf(ctx, now, v.Colour); ok {
		n.statVerified(now, c, claims.Iss, v.Colour)
	}
	if claims.Iss == n.cfg.Province {
		n.recordCheck(ctx, claims.Sub, now, v.Colour)
	} else {
		n.queueReceipt(ctx, claims.Iss, claims.Sub, now, v.Colour) // receipts.go: sent home sealed
	}
	return v, nil
}

// ParseSubject reads a subject from a URL path, with a clear error.
func ParseSubject(s string) (hcx.Subject, error) {
	sub := hcx.Subject(strings.TrimSpace(s))
	return sub, sub.Validate()
}
