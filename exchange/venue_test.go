package exchange

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// TestVenueCodeIssuedAndVerified: a venue code signed by its province reads
// back as issued; anything else — another province's key for the venue's
// iss, a hub key, an altered token, a health code, text — is
// ErrNotVenueCode (the Tianjin message), never another answer.
func TestVenueCodeIssuedAndVerified(t *testing.T) {
	f, ts := trustedFederation(t)
	now := f.start.Add(time.Minute)
	c := VenueClaims{Iss: "440000", VID: "v-440106-0001", Div: "440106", Name: "天河城 Tee Mall", Cat: "mall", IssuedAt: now.Unix() - 10}
	qr, err := IssueVenueCode(f.gdOld, &c)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := VerifyVenueCode(ts, qr, now)
	if err != nil || *got != c {
		t.Fatalf("verify: %+v %v, want %+v", got, err, c)
	}
	if _, err := IssueVenueCode(f.sc, &c); err == nil {
		t.Error("Sichuan's signer issued a Guangdong venue code")
	}
	bad := c
	bad.Div = "510104"
	if _, err := IssueVenueCode(f.gdOld, &bad); err == nil {
		t.Error("a venue code for a division outside the province was issued")
	}
	hubSigned, err := f.hub.SignJWS(HdrVenue, []byte(`{"iss":"440000","vid":"v1","div":"440106","name":"x","cat":"mall","iat":1763780000}`))
	if err != nil {
		t.Fatal(err)
	}
	health, err := IssueCode(f.gdOld, &CodeClaims{Iss: "440000", Sub: "abcdefghijklmnopqrstuvwxyz", SKV: 1, Col: hcx.Green, IssuedAt: now.Unix(), Expires: now.Unix() + 60})
	if err != nil {
		t.Fatal(err)
	}
	tok := qr[len(VenuePrefix):]
	for name, s := range map[string]string{
		"hub key":     VenuePrefix + hubSigned,
		"altered":     VenuePrefix + tok[:len(tok)-4] + "AAAA",
		"health code": strings.Replace(health, CodePrefix, VenuePrefix, 1),
		"text":        "https://example.com/menu",
		"empty":       VenuePrefix,
	} {
		if _, _, err := VerifyVenueCode(ts, s, now); !errors.Is(err, ErrNotVenueCode) {
			t.Errorf("%s: %v, want ErrNotVenueCode", name, err)
		}
	}
}
