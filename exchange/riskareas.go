package exchange

import (
	"fmt"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// MaxRiskAreas bounds the areas in one risk-area envelope.
const MaxRiskAreas = 1000

// RiskAreas is a province's designation of medium- and high-risk areas
// (PROTOCOL.md §3).
type RiskAreas struct {
	Typ   string           `json:"typ"`
	Iss   hcx.ProvinceCode `json:"iss"`
	At    int64            `json:"at"`
	Areas []RiskArea       `json:"areas"`
}

// RiskArea is one designated division, risky from From until To (Unix
// seconds); a nil To means until further notice.
type RiskArea struct {
	Div   hcx.DivisionCode `json:"div"`
	Level string           `json:"level"`
	From  int64            `json:"from"`
	To    *int64           `json:"to"`
}

// Risk levels (PROTOCOL.md §3).
const (
	RiskMedium = "medium"
	RiskHigh   = "high"
)

// Validate checks a risk-area envelope's content, naming the first wrong
// field: real GB/T 2260 divisions of the issuing province, a known level,
// from before to, and at most MaxRiskAreas areas.
func (r *RiskAreas) Validate() error {
	if r.Typ != TypRiskAreas {
		return hcx.Invalidf("typ", "risk-area typ is %q, want %q", r.Typ, TypRiskAreas)
	}
	if err := r.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if len(r.Areas) == 0 || len(r.Areas) > MaxRiskAreas {
		return hcx.Invalidf("areas", "a risk-area envelope holds 1 to %d areas, this one %d", MaxRiskAreas, len(r.Areas))
	}
	for i, a := range r.Areas {
		f := func(m string) string { return fmt.Sprintf("areas[%d].%s", i, m) }
		if err := a.Div.Validate(); err != nil {
			return inField(f("div"), err)
		}
		if a.Div.Province() != r.Iss {
			return hcx.Invalidf(f("div"), "division %s is in province %s; %s may designate only its own divisions", a.Div, a.Div.Province(), r.Iss)
		}
		if a.Level != RiskMedium && a.Level != RiskHigh {
			return hcx.Invalidf(f("level"), "level %q is not a risk level; want %q or %q", a.Level, RiskMedium, RiskHigh)
		}
		if a.From <= 0 {
			return hcx.Invalidf(f("from"), "from must be Unix seconds, got %d", a.From)
		}
		if a.To != nil && *a.To <= a.From {
			return hcx.Invalidf(f("to"), "to %d is not after from %d", *a.To, a.From)
		}
	}
	return nil
}

// SealRiskAreas validates and signs a risk-area envelope.
func SealRiskAreas(s *certs.Signer, r *RiskAreas) (string, error) {
	r.Typ = TypRiskAreas
	if err := r.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypRiskAreas, r)
}

// DecodeRiskAreas reads the risk-area envelope in a verified envelope and
// checks its content.
func DecodeRiskAreas(env *Envelope) (*RiskAreas, error) {
	return decodeValid[RiskAreas](env, TypRiskAreas)
}
