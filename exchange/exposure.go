package exchange

import (
	"fmt"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Bounds of an exposure envelope (PROTOCOL.md §3, 1.4).
const (
	// MaxExposures bounds the exposures in one envelope.
	MaxExposures = 100
	// MaxExposureWindow bounds one exposure's window: the longest
	// incubation period the national protocol traces back (14 days). A
	// longer window would flag people who scanned before any case could
	// have been infectious there.
	MaxExposureWindow = 14 * 24 * time.Hour
)

// Exposure levels (PROTOCOL.md §3).
const (
	ExposureHigh   = "high"
	ExposureMedium = "medium"
	ExposureLow    = "low"
)

// Exposures is a province's marking of its venues as exposure sites for
// time windows (PROTOCOL.md §3, 1.4). It names venues and times only:
// no person, no document.
type Exposures struct {
	Typ  string           `json:"typ"`
	Iss  hcx.ProvinceCode `json:"iss"`
	At   int64            `json:"at"`
	Exps []Exposure       `json:"exps"`
}

// Exposure is one venue-window: venue Vid of the issuing province, in
// division Div, was an exposure site of Level from From until To (Unix
// seconds, To excluded). Withdrawn takes a marking with the same key
// (iss, vid, from, to) back.
type Exposure struct {
	Vid       string           `json:"vid"`
	Div       hcx.DivisionCode `json:"div"`
	Level     string           `json:"level"`
	From      int64            `json:"from"`
	To        int64            `json:"to"`
	Withdrawn bool             `json:"withdrawn,omitempty"`
}

// ValidExposureLevel reports whether l is an exposure level.
func ValidExposureLevel(l string) bool {
	return l == ExposureHigh || l == ExposureMedium || l == ExposureLow
}

// Validate checks an exposure envelope's content, naming the first wrong
// field: 1 to MaxExposures venue-windows, each a venue id as a venue code
// carries it, a real division of the issuing province, a known level and a
// window from before to, at most MaxExposureWindow long.
func (x *Exposures) Validate() error {
	if x.Typ != TypExposures {
		return hcx.Invalidf("typ", "exposure typ is %q, want %q", x.Typ, TypExposures)
	}
	if err := x.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if len(x.Exps) == 0 || len(x.Exps) > MaxExposures {
		return hcx.Invalidf("exps", "an exposure envelope holds 1 to %d exposures, this one %d", MaxExposures, len(x.Exps))
	}
	for i, e := range x.Exps {
		f := func(m string) string { return fmt.Sprintf("exps[%d].%s", i, m) }
		if e.Vid == "" || len(e.Vid) > MaxVenueID || !printableASCII(e.Vid) {
			return hcx.Invalidf(f("vid"), "a venue id is 1 to %d printable ASCII characters", MaxVenueID)
		}
		if err := e.Div.Validate(); err != nil {
			return inField(f("div"), err)
		}
		if e.Div.Province() != x.Iss {
			return hcx.Invalidf(f("div"), "division %s is in province %s; %s may mark only its own venues", e.Div, e.Div.Province(), x.Iss)
		}
		if !ValidExposureLevel(e.Level) {
			return hcx.Invalidf(f("level"), "level %q is not an exposure level; want %q, %q or %q", e.Level, ExposureHigh, ExposureMedium, ExposureLow)
		}
		if e.From <= 0 {
			return hcx.Invalidf(f("from"), "from must be Unix seconds, got %d", e.From)
		}
		if e.To <= e.From {
			return hcx.Invalidf(f("to"), "to %d is not after from %d", e.To, e.From)
		}
		if e.To-e.From > int64(MaxExposureWindow/time.Second) {
			return hcx.Invalidf(f("to"), "the window from %d to %d is longer than %s", e.From, e.To, MaxExposureWindow)
		}
		for j := range i {
			if p := x.Exps[j]; p.Vid == e.Vid && p.From == e.From && p.To == e.To {
				return hcx.Invalidf(f("vid"), "venue %q from %d to %d is listed twice", e.Vid, e.From, e.To)
			}
		}
	}
	return nil
}

// SealExposures validates and signs an exposure envelope.
func SealExposures(s *certs.Signer, x *Exposures) (string, error) {
	x.Typ = TypExposures
	if err := x.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypExposures, x)
}

// DecodeExposures reads the exposure envelope in a verified envelope and
// checks its content.
func DecodeExposures(env *Envelope) (*Exposures, error) {
	return decodeValid[Exposures](env, TypExposures)
}
