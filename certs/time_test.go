package certs

import (
	"errors"
	"testing"
	"time"
)

// TestRevocationAndValidityAreCheckedAtTheirOwnTimes: revocation at a time
// nobody signed (commit, presentation) and validity at the signed time are
// separate questions; CheckAt asks both at one time.
func TestRevocationAndValidityAreCheckedAtTheirOwnTimes(t *testing.T) {
	p := newPKI(t)
	revokedAt := p.now
	p.ts.Revoke(p.gd.KID, revokedAt)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"revoked/checked-before", p.ts.CheckRevokedAt(p.gdEnt, revokedAt.Add(-time.Second)), nil},
		{"reject/revoked/checked-at-the-revocation", p.ts.CheckRevokedAt(p.gdEnt, revokedAt), ErrRevoked},
		{"revoked/ignores-validity", p.ts.CheckRevokedAt(p.gdEnt, revokedAt.Add(-48*time.Hour)), nil},
		{"valid/ignores-revocation", p.ts.CheckValidAt(p.gdEnt, revokedAt.Add(time.Hour)), nil},
		{"reject/valid/after-notAfter", p.ts.CheckValidAt(p.gdEnt, revokedAt.Add(25*time.Hour)), ErrExpired},
		{"reject/valid/before-notBefore", p.ts.CheckValidAt(p.gdEnt, revokedAt.Add(-2*time.Hour)), ErrNotYetValid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) || (tc.want == nil && tc.err != nil) {
				t.Fatalf("err = %v, want %v", tc.err, tc.want)
			}
		})
	}
}
