package exchange

import (
	"sort"
	"time"

	"github.com/hcxfed/hcx"
)

// LoggedAttestation is an attestation as read from the log: who issued it and
// the leaf that carries it.
type LoggedAttestation struct {
	Iss hcx.ProvinceCode `json:"iss"`
	hcx.Attestation
	Index uint64 `json:"index"`
}

// Recognition is the national recognition rule's answer.
type Recognition struct {
	Colour  hcx.Colour
	Reasons []hcx.Reason
	// Counted are the attestations that were in force, one per issuer at most.
	Counted []LoggedAttestation
}

// Recognise applies the national recognition rule (PROTOCOL.md §7) to the
// colour in a presented code and the attestations about its subject found in
// the log below some size S: for each issuer the attestation with the highest
// n; those not in force at t are dropped; the most severe colour of the rest
// and of the code wins. The reasons are those of the attestations that carry
// the winning colour, sorted. It is a pure function: the same inputs give the
// same answer on every node.
func Recognise(codeColour hcx.Colour, atts []LoggedAttestation, t time.Time) Recognition {
	latest := make(map[hcx.ProvinceCode]LoggedAttestation, len(atts))
	for _, a := range atts {
		if cur, ok := latest[a.Iss]; !ok || a.N > cur.N {
			latest[a.Iss] = a
		}
	}
	r := Recognition{Colour: codeColour}
	for _, a := range latest {
		if !a.Counts(t) {
			continue
		}
		r.Counted = append(r.Counted, a)
		if a.Colour.Severity() > r.Colour.Severity() {
			r.Colour = a.Colour
		}
	}
	sort.Slice(r.Counted, func(i, j int) bool { return r.Counted[i].Iss < r.Counted[j].Iss })
	seen := map[hcx.Reason]bool{}
	for _, a := range r.Counted {
		if a.Colour != r.Colour {
			continue
		}
		for _, rs := range a.Reasons {
			if !seen[rs] {
				seen[rs] = true
				r.Reasons = append(r.Reasons, rs)
			}
		}
	}
	sort.Slice(r.Reasons, func(i, j int) bool { return r.Reasons[i] < r.Reasons[j] })
	return r
}
