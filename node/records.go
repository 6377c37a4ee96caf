package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Records and their ids (docs/decisions.md, "Issue 10: records").
//
// A feed names each record with an id of its own (a lab's sample number, a
// registry's dose id). The node keeps, per kind and id, which resident the
// record was about and a digest of its content, under rid/<kind>/<id>, for
// RecordRetention (trajectory records for TrajectoryRetention): a record
// posted again counts once, and a different record under an id already used
// is refused (record_conflict), so that a feed's retries and re-sent files
// never count twice. Ids are per kind and per province node: two feeds of one
// province prefix their ids if they could collide.
const pRecord = "rid/" // rid/<kind>/<id> -> subject (26 bytes) || SM3(content)[:8]

// RecordRetention is how long a record id is remembered: longer than the
// oldest record a node accepts (a year, checkTime), so that no accepted
// record can be accepted twice.
const RecordRetention = 400 * 24 * time.Hour

// recordKey is the key of ev's record id, "" if it has none.
func recordKey(ev *Event) string {
	id := ev.RecordID()
	if id == "" {
		return ""
	}
	return pRecord + ev.kind() + "/" + id
}

// recordDigest is the digest of ev's content, which tells a re-sent record
// from another under the same id.
func recordDigest(ev *Event) []byte {
	b, _ := json.Marshal(ev) // of plain values: cannot fail
	d := certs.SM3(b)
	return d[:8]
}

func recordValue(sub hcx.Subject, ev *Event) []byte {
	return append([]byte(sub), recordDigest(ev)...)
}

func recordTTL(ev *Event) time.Duration {
	if ev.Travel != nil {
		return TrajectoryRetention
	}
	return RecordRetention
}

// checkRecord reports whether ev's record id (key, "" for none) was recorded
// before for sub with the same content; another resident or other content
// under the id is record_conflict.
func checkRecord(txn *badger.Txn, key string, sub hcx.Subject, ev *Event) (bool, error) {
	if key == "" {
		return false, nil
	}
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var same bool
	err = item.Value(func(v []byte) error {
		same = bytes.Equal(v, recordValue(sub, ev))
		return nil
	})
	if err != nil {
		return false, err
	}
	if !same {
		return false, errRecordConflict(ev.RecordID())
	}
	return true, nil
}

func errRecordConflict(id string) error {
	return &hcx.Error{Class: hcx.EConflict, Code: "record_conflict", Field: "id",
		Message: "record id " + id + " was recorded before with other content or about another resident; a correction is an appeal, a new record needs a new id"}
}

// SubjectOf is the federation subject of a document, checked and
// normalised as registration does: what feeds that know a person by their
// document use to name them.
func (n *Node) SubjectOf(t hcx.DocType, number string) (hcx.Subject, error) {
	number = hcx.NormaliseDocNumber(number)
	if err := hcx.ValidateDocument(t, number, n.cfg.Now().In(n.rules.Load().rs.Location())); err != nil {
		return "", err
	}
	return n.cfg.SubjectKey.Subject(t, number), nil
}

// nonResident handles an event about a subject this node does not hold,
// with the audit entry of the act: a vaccination given here to a resident
// of another province travels to their home node (issue 10, vaccinations);
// any other record is about someone this node cannot decide, and is
// refused.
func (n *Node) nonResident(ctx context.Context, sub hcx.Subject, ev *Event, entry *AuditEntry) (*Status, error) {
	if ev.Vaccination != nil {
		return n.forwardVaccination(sub, ev, entry)
	}
	return nil, notResidentHere(n.cfg.Province)
}

func notResidentHere(p hcx.ProvinceCode) error {
	return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_resident", Field: "sub",
		Message: "no resident with that subject is registered at " + string(p) + "'s node; records about residents of other provinces go to their home node"}
}

// indexEvent adds to w the indexes an event keeps besides the resident's
// history (stays by division, for re-deciding the residents who stayed in
// a newly designated risk area: travel.go). Every path that records events
// calls it.
func (n *Node) indexEvent(w *write, sub hcx.Subject, ev *Event) {
	if ev.Travel != nil {
		indexStay(w, sub, ev.Travel)
	}
}

// recordEvents adds evs to the resident's history h (stays past retention
// dropped) and their indexes to w, decides the resident again under rules
// and commits w, in one synced write. The caller holds the resident's lock
// from reading rec, st and h until now, and has put into w the act's audit
// entry and any keys of its own (record ids, an order's record). It is the
// one tail of every path that records events about one resident: a single
// record, a declaration, an itinerary, an order's step.
func (n *Node) recordEvents(w *write, sub hcx.Subject, rec *residentRecord, st *colourState, h *history, evs []Event, rules *ruleSet, now time.Time) error {
	for i := range evs {
		h.add(&evs[i])
		n.indexEvent(w, sub, &evs[i])
	}
	h.expire(now)
	hb, err := h.MarshalBinary()
	if err != nil {
		return err
	}
	w.set(histKey(sub), hb)
	attested, err := n.decide(w, sub, rec, st, h.facts(), rules, now)
	if err != nil {
		return err
	}
	if err := n.write(w); err != nil {
		return err
	}
	n.metrics.events.Add(uint64(len(evs)))
	if attested {
		n.pokePublisher()
	}
	return nil
}
