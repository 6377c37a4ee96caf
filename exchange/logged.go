package exchange

import (
	"fmt"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// MaxEnvelopeSkew is how far an envelope's signed at may be from the hub's
// clock when it is submitted and from the time its Raft entry was proposed
// (PROTOCOL.md §3). It bounds how far back a stolen key can date what it
// signs.
const MaxEnvelopeSkew = 5 * time.Minute

// OpenLogged is Open for a reader of the hub's log: whether the signer's key
// was revoked is decided at committed, the time the log recorded for the
// leaf (Entries.Times), and at the signed at, whichever is later; the
// certificate's validity is checked at the signed at. A zero committed (a
// leaf logged before commit times were recorded) falls back to Open's rule,
// revocation at the signed at.
func OpenLogged(ts *certs.TrustStore, compact string, committed time.Time) (*Envelope, error) {
	return open(ts, compact, committed)
}

// CheckSigner checks that e could sign an envelope signed at at and
// committed to the log at committed: not revoked at either time (so neither
// a backdated at nor a late commit escapes a revocation), and its
// certificate valid at at. A zero committed checks at alone. Errors wrap
// certs.ErrRevoked, certs.ErrExpired or certs.ErrNotYetValid.
func CheckSigner(ts *certs.TrustStore, e *certs.Entry, at, committed time.Time) error {
	if !committed.IsZero() {
		if err := ts.CheckRevokedAt(e, committed); err != nil {
			return fmt.Errorf("%w (the log committed the envelope at %s)", err, committed.UTC().Format(time.RFC3339))
		}
	}
	return ts.CheckAt(e, at)
}
