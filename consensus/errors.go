package consensus

import (
	"errors"
	"fmt"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Errors the hub returns, beyond hcx.ErrNotLeader (re-exported below so
// callers of this package can test it with errors.Is at every layer).
var (
	// ErrNotLeader: this member is not the leader and the write could not be
	// forwarded to one.
	ErrNotLeader = hcx.ErrNotLeader
	// ErrClosed: the hub is shut down.
	ErrClosed = errors.New("hub is closed")
)

// classify turns verification and state errors into the federation's typed
// error with a stable code, so api can map it to a status. Errors already
// typed pass through.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var he *hcx.Error
	if errors.As(err, &he) {
		return err
	}
	mk := func(class hcx.ErrorCode, code string) error {
		return &hcx.Error{Class: class, Code: code, Message: err.Error(), Err: err}
	}
	switch {
	case errors.Is(err, exchange.ErrTooLarge):
		return mk(hcx.ETooLarge, "too_large")
	case errors.Is(err, certs.ErrUnknownKey), errors.Is(err, hcx.ErrUnknownIssuer):
		return mk(hcx.EUnauthorized, "unknown_issuer")
	case errors.Is(err, certs.ErrSignature):
		return mk(hcx.EUnauthorized, "bad_signature")
	case errors.Is(err, certs.ErrRevoked), errors.Is(err, hcx.ErrRevoked):
		return mk(hcx.EForbidden, "key_revoked")
	case errors.Is(err, certs.ErrExpired):
		return mk(hcx.EForbidden, "key_expired")
	case errors.Is(err, certs.ErrNotYetValid):
		return mk(hcx.EForbidden, "key_not_yet_valid")
	case errors.Is(err, exchange.ErrWrongIssuer), errors.Is(err, certs.ErrWrongRole), errors.Is(err, certs.ErrWrongProvince):
		// The signer may not speak for the envelope's iss.
		e := mk(hcx.EForbidden, "wrong_issuer").(*hcx.Error)
		e.Field = "iss"
		return e
	case errors.Is(err, certs.ErrStaleTrustList):
		return mk(hcx.EConflict, "stale_trust_list")
	case errors.Is(err, certs.ErrMalformed):
		return mk(hcx.EInvalid, "malformed")
	case errors.Is(err, hcx.ErrNotLeader), errors.Is(err, ErrClosed):
		return mk(hcx.EUnavailable, "not_leader")
	case errors.Is(err, hcx.ErrNotFound):
		return mk(hcx.ENotFound, "not_found")
	}
	return err
}

func seqConflict(iss string, seq, expected uint64, why string) error {
	return &hcx.Error{Class: hcx.EConflict, Code: "sequence_conflict", Field: "seq",
		Message: "issuer " + iss + ": batch sequence " + u64(seq) + " " + why + "; the hub expects " + u64(expected),
		Detail:  map[string]any{"expected": expected}}
}

// checkSkew refuses an envelope whose signed at is more than
// exchange.MaxEnvelopeSkew from ref, the hub's clock (Unix seconds) when the
// envelope was received or proposed: the error is clock_skew naming "at".
func checkSkew(at, ref int64, when string) error {
	d := time.Duration(at-ref) * time.Second
	if d.Abs() <= exchange.MaxEnvelopeSkew {
		return nil
	}
	stamp := func(u int64) string { return time.Unix(u, 0).UTC().Format(time.RFC3339) }
	return &hcx.Error{Class: hcx.EInvalid, Code: "clock_skew", Field: "at",
		Message: fmt.Sprintf("envelope at %s is %s from the hub's clock when it was %s (%s); at most %s is allowed: sign with a correct clock and submit at once (a batch that waited longer must be signed again)",
			stamp(at), d.Abs(), when, stamp(ref), exchange.MaxEnvelopeSkew),
		Detail: map[string]any{"hub_time": ref}}
}

func isClockSkew(err error) bool {
	var he *hcx.Error
	return errors.As(err, &he) && he.Code == "clock_skew"
}
