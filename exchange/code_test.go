package exchange

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// storeWithList is a trust store that applied the CA's trust list as of at.
func (f *federationCA) storeWithList(t *testing.T, at time.Time) *certs.TrustStore {
	t.Helper()
	_, v := f.sealedList(t, at)
	ts := f.emptyStore(t)
	if _, err := ApplyTrustList(ts, v); err != nil {
		t.Fatal(err)
	}
	return ts
}

// codeAt issues a Guangdong health code with the given iat and exp.
func codeAt(t *testing.T, s *certs.Signer, iat, exp time.Time) string {
	t.Helper()
	qr, err := IssueCode(s, &CodeClaims{Iss: "440000", Sub: "abcdefghijklmnopqrstuvwxyz", SKV: 1, Col: hcx.Green,
		Name: "张*", IDTail: "0014", IssuedAt: iat.Unix(), Expires: exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return qr
}

func codeOf(err error) string {
	var he *hcx.Error
	if errors.As(err, &he) {
		return he.Code
	}
	return ""
}

// TestVerifyCodeBoundsItsTimes: a stolen key cannot mint a code that lives
// for years, nor one dated ahead, nor one dated before the key's revocation
// and shown after it (issue 8, finding 6; PROTOCOL.md §6).
func TestVerifyCodeBoundsItsTimes(t *testing.T) {
	f := newFederationCA(t)
	ts := f.storeWithList(t, f.start)
	now := f.start.Add(2 * time.Hour)
	for _, tc := range []struct {
		name     string
		iat, exp time.Time
		want     string // "" = valid
	}{
		{"dynamic-code-of-60s", now.Add(-10 * time.Second), now.Add(50 * time.Second), ""},
		{"offline-code-of-24h", now.Add(-time.Hour), now.Add(23 * time.Hour), ""},
		{"iat-within-the-60s-skew", now.Add(50 * time.Second), now.Add(110 * time.Second), ""},
		{"reject/ten-year-lifetime", now.Add(-time.Minute), now.Add(10 * 365 * 24 * time.Hour), "token_lifetime"},
		{"reject/lifetime-24h-and-a-second", now.Add(-time.Minute), now.Add(24*time.Hour - time.Minute + time.Second), "token_lifetime"},
		{"reject/exp-before-iat", now.Add(-time.Second), now.Add(-time.Minute), "token_lifetime"},
		{"reject/exp-equal-to-iat", now.Add(30 * time.Second), now.Add(30 * time.Second), "token_lifetime"},
		{"reject/iat-two-minutes-ahead", now.Add(2 * time.Minute), now.Add(3 * time.Minute), "token_not_yet_valid"},
		{"reject/expired", now.Add(-2 * time.Minute), now.Add(-time.Minute), "token_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := VerifyCode(ts, codeAt(t, f.gdNew, tc.iat, tc.exp), now)
			if got := codeOf(err); got != tc.want || (tc.want == "" && err != nil) {
				t.Fatalf("err = %v (code %q), want code %q", err, got, tc.want)
			}
			if err != nil && tc.want == "token_lifetime" && !strings.Contains(err.Error(), "24h") {
				t.Errorf("error %q does not say the limit", err)
			}
		})
	}
}

// TestACodeSignedBeforeARevocationIsRefusedWhenPresentedAfterIt: revocation
// is decided at presentation, whatever the iat the signer wrote.
func TestACodeSignedBeforeARevocationIsRefusedWhenPresentedAfterIt(t *testing.T) {
	f := newFederationCA(t)
	ts := f.storeWithList(t, f.start)
	revokedAt := f.start.Add(3 * time.Hour)
	if err := f.ca.Revoke(f.gdOld.KID, revokedAt, "key stolen"); err != nil {
		t.Fatal(err)
	}
	_, v2 := f.sealedList(t, revokedAt)
	if _, err := ApplyTrustList(ts, v2); err != nil {
		t.Fatal(err)
	}
	iat := revokedAt.Add(-time.Hour) // backdated, or honestly issued before the theft was known
	qr := codeAt(t, f.gdOld, iat, iat.Add(OfflineCodeTTL))
	if _, _, err := VerifyCode(ts, qr, revokedAt.Add(-time.Second)); err != nil {
		t.Fatalf("presented before the revocation: %v", err)
	}
	for _, at := range []time.Time{revokedAt, revokedAt.Add(time.Minute)} {
		_, _, err := VerifyCode(ts, qr, at)
		if !errors.Is(err, ErrKeyRevoked) || !strings.Contains(err.Error(), revokedAt.UTC().Format(time.RFC3339)) {
			t.Errorf("presented at %s: err = %v, want key_revoked naming the revocation", at.UTC().Format(time.RFC3339), err)
		}
	}
	// The other Guangdong signer is untouched.
	if _, _, err := VerifyCode(ts, codeAt(t, f.gdNew, iat, iat.Add(OfflineCodeTTL)), revokedAt.Add(time.Minute)); err != nil {
		t.Errorf("code from the signer that was not revoked: %v", err)
	}
}
