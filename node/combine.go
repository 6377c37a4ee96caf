package node

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// ProvinceAttestation is another province's attestation about a resident,
// as the node's view of the hub log holds it.
type ProvinceAttestation struct {
	Province  hcx.ProvinceCode `json:"province"`
	Colour    hcx.Colour       `json:"colour"`
	Reasons   []ReasonText     `json:"reasons"`
	Effective time.Time        `json:"effective"`
	Expires   time.Time        `json:"expires"`
	LogIndex  uint64           `json:"log_index"`
}

// foreignAttestations reads the attestations about sub that the node has
// folded from the hub log: the newest per issuer, the node's own included.
func foreignAttestations(txn *badger.Txn, sub hcx.Subject) ([]exchange.LoggedAttestation, error) {
	var atts []exchange.LoggedAttestation
	prefix := []byte(pForeign + string(sub) + "/")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var a exchange.LoggedAttestation
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &a) }); err != nil {
			return nil, fmt.Errorf("attestation %s: %w", it.Item().Key(), err)
		}
		atts = append(atts, a)
	}
	return atts, nil
}

// combine puts the node's own decision together with other provinces'
// attestations by the national recognition rule (PROTOCOL.md §7): the most
// severe colour in force wins, so a resident red at another province is red
// here, and this node's codes say so. The node's own attestations in the log
// are left out: its own state is newer. When another province decides, the
// status names it and carries its reasons; the release is that province's.
func (n *Node) combine(own Status, atts []exchange.LoggedAttestation, now time.Time) Status {
	others := atts[:0:0]
	for _, a := range atts {
		if a.Iss != n.cfg.Province {
			others = append(others, a)
		}
	}
	rec := exchange.Recognise(hcx.Green, others, now)
	s := own
	s.DecidedBy = []hcx.ProvinceCode{n.cfg.Province}
	for _, a := range rec.Counted {
		s.Attestations = append(s.Attestations, ProvinceAttestation{Province: a.Iss, Colour: a.Colour, Reasons: reasonTexts(a.Reasons),
			Effective: time.Unix(a.Eff, 0).UTC(), Expires: time.Unix(a.Exp, 0).UTC(), LogIndex: a.Index})
	}
	switch {
	case rec.Colour.Severity() > own.Colour.Severity():
		s.Colour, s.Reasons, s.Rule, s.Release, s.ReleaseTexts, s.DecidedBy = rec.Colour, reasonTexts(rec.Reasons), "", nil, nil, nil
		for _, a := range rec.Counted {
			if a.Colour != rec.Colour {
				continue
			}
			if len(s.DecidedBy) == 0 || a.Eff < s.Since.Unix() {
				s.Since = time.Unix(a.Eff, 0).UTC()
			}
			s.DecidedBy = append(s.DecidedBy, a.Iss)
			name := a.Iss.Name()
			t := hcx.Texts{fmt.Sprintf("由 %s（%s）的认定决定，待该省解除", a.Iss, name),
				fmt.Sprintf("decided by %s (%s); it ends when that province releases it", a.Iss, name),
				fmt.Sprintf("%s（%s）の判定による。同省が解除するまで続きます", a.Iss, name),
				fmt.Sprintf("%s(%s)의 판정에 따름. 해당 성이 해제할 때까지 유지됩니다", a.Iss, name)}
			s.Release = append(s.Release, t[0]+" / "+t[1])
			s.ReleaseTexts = append(s.ReleaseTexts, t)
		}
	case rec.Colour == own.Colour && own.Colour != hcx.Green:
		for _, a := range rec.Counted {
			if a.Colour == own.Colour {
				s.DecidedBy = append(s.DecidedBy, a.Iss)
				s.Reasons = mergeReasonTexts(s.Reasons, reasonTexts(a.Reasons))
			}
		}
	}
	return s
}

func mergeReasonTexts(have, more []ReasonText) []ReasonText {
next:
	for _, r := range more {
		for _, h := range have {
			if h.Code == r.Code {
				continue next
			}
		}
		have = append(have, r)
	}
	return have
}

// withOthers combines a status just decided with the other provinces'
// attestations about sub.
func (n *Node) withOthers(sub hcx.Subject, own Status) (*Status, error) {
	var atts []exchange.LoggedAttestation
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		atts, err = foreignAttestations(txn, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	s := n.combine(own, atts, n.cfg.Now())
	return &s, nil
}
