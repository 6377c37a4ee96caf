package exchange

import (
	"time"

	"github.com/hcxfed/hcx"
)

// Verification is the answer to a checkpoint's scan (PROTOCOL.md §6). An
// online node and an offline verifier build it with Answer, so the two
// cannot drift apart.
type Verification struct {
	Valid      bool             `json:"valid"`
	Colour     hcx.Colour       `json:"colour"`
	Issuer     hcx.ProvinceCode `json:"issuer"`
	Name       string           `json:"name"`
	IDTail     string           `json:"id_tail"`
	Vaccinated bool             `json:"vaccinated"`
	Reasons    []hcx.Reason     `json:"reasons"`
	CheckedAt  int64            `json:"checked_at"`
	LogIndex   uint64           `json:"log_index"`
}

// Answer is the verification of a code whose claims checked out, given the
// attestations about its subject in the log below size and the clock now:
// the national recognition rule (Recognise) over the code's colour.
func Answer(claims *CodeClaims, atts []LoggedAttestation, now time.Time, size uint64) *Verification {
	rec := Recognise(claims.Col, atts, now)
	reasons := rec.Reasons
	if reasons == nil {
		reasons = []hcx.Reason{}
	}
	return &Verification{Valid: true, Colour: rec.Colour, Issuer: claims.Iss, Name: claims.Name, IDTail: claims.IDTail,
		Vaccinated: claims.Vaccinated, Reasons: reasons, CheckedAt: now.Unix(), LogIndex: size}
}
