package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// VenuePrefix starts the QR text of a venue ("place") code (PROTOCOL.md §6).
const VenuePrefix = "HCXV1:"

// Bounds of a venue code's claims.
const (
	MaxVenueID   = 64
	MaxVenueName = 128
	MaxVenueCat  = 64
)

// VenueClaims is the payload of a venue code: the venue's id at its
// province, its GB/T 2260 division, its name and category, and when the
// code was issued. A venue code does not expire: it is printed and posted
// at the entrance; a retired venue is known to its province's node.
type VenueClaims struct {
	Iss      hcx.ProvinceCode `json:"iss"`
	VID      string           `json:"vid"`
	Div      hcx.DivisionCode `json:"div"`
	Name     string           `json:"name"`
	Cat      string           `json:"cat"`
	IssuedAt int64            `json:"iat"`
}

// Validate checks a venue code's claims, naming the wrong field.
func (c *VenueClaims) Validate() error {
	if err := c.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if c.VID == "" || len(c.VID) > MaxVenueID || !printableASCII(c.VID) {
		return hcx.Invalidf("vid", "a venue id is 1 to %d printable ASCII characters", MaxVenueID)
	}
	if err := c.Div.Validate(); err != nil {
		return inField("div", err)
	}
	if c.Div.Province() != c.Iss {
		return hcx.Invalidf("div", "division %s is not in province %s", c.Div, c.Iss)
	}
	if c.Name == "" || len(c.Name) > MaxVenueName {
		return hcx.Invalidf("name", "a venue name is 1 to %d bytes", MaxVenueName)
	}
	if c.Cat == "" || len(c.Cat) > MaxVenueCat {
		return hcx.Invalidf("cat", "a venue category is 1 to %d bytes", MaxVenueCat)
	}
	if c.IssuedAt <= 0 {
		return hcx.Invalidf("iat", "iat is Unix seconds")
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// IssueVenueCode signs a venue code with the province's signer and returns
// its QR text.
func IssueVenueCode(s *certs.Signer, c *VenueClaims) (string, error) {
	if s.Province != c.Iss {
		return "", fmt.Errorf("issue venue code: signer is bound to %s, code names %s", s.Province, c.Iss)
	}
	if err := c.Validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	tok, err := s.SignJWS(HdrVenue, b)
	if err != nil {
		return "", err
	}
	return VenuePrefix + tok, nil
}

// ErrNotVenueCode is what a resident sees for a string that is not a valid
// venue code (Tianjin's words): the detail says why for logs and tests.
var ErrNotVenueCode = &hcx.Error{Class: hcx.EUnprocessable, Code: "not_a_venue_code",
	Message: "不是有效的场所码，请扫描重点场所张贴的二维码图片 / Not a valid venue code, please scan the QR code posted at the venue"}

// VerifyVenueCode checks a venue code's QR text against the trust store at
// now: signed by a province signer of its iss, not revoked now, its
// certificate valid at iat, iat not after now (+ MaxCodeSkew), claims valid.
// Every refusal is ErrNotVenueCode with a detail. Whether the venue is
// retired is its province's node's to say.
func VerifyVenueCode(ts *certs.TrustStore, qr string, now time.Time) (*VenueClaims, *certs.Entry, error) {
	tok, _, err := qrToken(qr, VenuePrefix, HdrVenue, ErrNotVenueCode)
	if err != nil {
		return nil, nil, err
	}
	v, err := ts.VerifyJWS(tok)
	if err != nil {
		return nil, nil, codeError(ErrNotVenueCode, "%v", err)
	}
	var c VenueClaims
	if err := DecodeStrict(v.Payload, &c); err != nil {
		return nil, nil, codeError(ErrNotVenueCode, "payload: %v", err)
	}
	if err := c.Validate(); err != nil {
		return nil, nil, codeError(ErrNotVenueCode, "%v", err)
	}
	if v.Entry.Role != certs.RoleProvince || v.Entry.Province != c.Iss {
		return nil, nil, codeError(ErrNotVenueCode, "iss %s, key bound to %q (role %s)", c.Iss, v.Entry.Province, v.Entry.Role)
	}
	if c.IssuedAt > now.Add(MaxCodeSkew).Unix() {
		return nil, nil, codeError(ErrNotVenueCode, "issued in the future")
	}
	if err := ts.CheckRevokedAt(v.Entry, now); err != nil {
		return nil, nil, codeError(ErrNotVenueCode, "%v", err)
	}
	if err := ts.CheckAt(v.Entry, time.Unix(c.IssuedAt, 0)); err != nil && !errors.Is(err, certs.ErrRevoked) {
		return nil, nil, codeError(ErrNotVenueCode, "%v", err)
	}
	return &c, v.Entry, nil
}
