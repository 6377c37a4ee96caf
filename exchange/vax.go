package exchange

import (
	"fmt"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Bounds of a vaccination envelope (PROTOCOL.md §3, hcx.vax.v1).
const (
	MaxVaxDoses   = 1000
	MaxVaxID      = 64 // a dose's record id: printable ASCII, no spaces
	MaxVaxProduct = 32
)

// Vax is a province's report of doses it gave to people it does not hold as
// residents (PROTOCOL.md §3): subjects and dose facts only, never an
// identity. The resident's home node, which holds the subject, records the
// doses and decides the vaccination mark.
type Vax struct {
	Typ   string           `json:"typ"`
	Iss   hcx.ProvinceCode `json:"iss"`
	At    int64            `json:"at"`
	Doses []VaxDose        `json:"doses"`
}

// VaxDose is one dose: given to Sub at At (Unix seconds), dose number Dose
// of a primary course of Course doses, of product Prod, under the issuing
// registry's record id ID.
type VaxDose struct {
	Sub    hcx.Subject `json:"sub"`
	Dose   int         `json:"dose"`
	Course int         `json:"course"`
	Prod   string      `json:"prod"`
	At     int64       `json:"at"`
	ID     string      `json:"id"`
}

// Validate checks a vaccination envelope's content, naming the first wrong
// field: real subjects, doses 1 to 10, courses 1 to 3, a product name and a
// record id of printable ASCII, times after 0 and not after the envelope's
// own at, 1 to MaxVaxDoses doses.
func (v *Vax) Validate() error {
	if v.Typ != TypVax {
		return hcx.Invalidf("typ", "vaccination typ is %q, want %q", v.Typ, TypVax)
	}
	if err := v.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if len(v.Doses) == 0 || len(v.Doses) > MaxVaxDoses {
		return hcx.Invalidf("doses", "a vaccination envelope holds 1 to %d doses, this one %d", MaxVaxDoses, len(v.Doses))
	}
	for i, d := range v.Doses {
		f := func(m string) string { return fmt.Sprintf("doses[%d].%s", i, m) }
		if err := d.Sub.Validate(); err != nil {
			return inField(f("sub"), err)
		}
		if d.Dose < 1 || d.Dose > 10 {
			return hcx.Invalidf(f("dose"), "dose number %d: want 1 to 10", d.Dose)
		}
		if d.Course < 1 || d.Course > 3 {
			return hcx.Invalidf(f("course"), "a primary course has 1 to 3 doses, not %d", d.Course)
		}
		if err := printable(f("prod"), d.Prod, MaxVaxProduct); err != nil {
			return err
		}
		if err := printable(f("id"), d.ID, MaxVaxID); err != nil {
			return err
		}
		if d.At <= 0 {
			return hcx.Invalidf(f("at"), "at must be Unix seconds, got %d", d.At)
		}
		if d.At > v.At {
			return hcx.Invalidf(f("at"), "dose at %d is after the envelope's at %d: a dose is reported after it is given", d.At, v.At)
		}
	}
	return nil
}

// printable checks a required string of 1 to max printable ASCII
// characters without spaces.
func printable(field, s string, max int) error {
	if s == "" || len(s) > max {
		return hcx.Invalidf(field, "want 1 to %d characters, got %d", max, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return hcx.Invalidf(field, "printable ASCII without spaces; character %d is not", i+1)
		}
	}
	return nil
}

// SealVax validates and signs a vaccination envelope.
func SealVax(s *certs.Signer, v *Vax) (string, error) {
	v.Typ = TypVax
	if err := v.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypVax, v)
}

// DecodeVax reads the vaccination envelope in a verified envelope and
// checks its content.
func DecodeVax(env *Envelope) (*Vax, error) { return decodeValid[Vax](env, TypVax) }
