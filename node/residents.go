package node

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// residentRecord is a resident at rest. Identity fields are SM4-GCM sealed,
// bound to the subject and the field name.
type residentRecord struct {
	Sub        hcx.Subject `json:"sub"`
	DocType    hcx.DocType `json:"doc_type"`
	SKV        int         `json:"skv"`
	Doc        []byte      `json:"doc"`
	Name       []byte      `json:"name"`
	Phone      []byte      `json:"phone,omitempty"`
	Registered time.Time   `json:"registered"`
}

// colourState is a resident's current decision and the last attestation
// written for it.
type colourState struct {
	Colour     hcx.Colour   `json:"colour"`
	Since      time.Time    `json:"since"`
	Reasons    []hcx.Reason `json:"reasons"`
	Rule       string       `json:"rule"`
	Vaccinated bool         `json:"vaccinated"`
	Release    []string     `json:"release,omitempty"` // conditions, "zh / en"
	N          uint64       `json:"n"`                 // last per-subject attestation sequence
	Policy     string       `json:"policy"`
	Exp        int64        `json:"exp,omitempty"` // when the last attestation stops counting
	Due        int64        `json:"due,omitempty"` // when the scheduler decides again (due/ key), 0: never
}

// RegisterRequest registers a resident.
type RegisterRequest struct {
	DocType   hcx.DocType `json:"doc_type"`
	DocNumber string      `json:"doc_number"`
	Name      string      `json:"name"`
	Phone     string      `json:"phone,omitempty"`
}

// Validate checks the request, naming the wrong field.
func (r *RegisterRequest) Validate() error {
	r.DocNumber = hcx.NormaliseDocNumber(r.DocNumber)
	r.Name = strings.TrimSpace(r.Name)
	if err := hcx.ValidateDocument(r.DocType, r.DocNumber); err != nil {
		return err
	}
	if r.Name == "" {
		return hcx.Invalidf("name", "name is empty")
	}
	if len(r.Name) > 128 {
		return hcx.Invalidf("name", "name is %d bytes; at most 128", len(r.Name))
	}
	return nil
}

// Resident is what the node shows about a resident: never the full document
// number.
type Resident struct {
	Subject    hcx.Subject `json:"subject"`
	MaskedName string      `json:"name"`
	IDTail     string      `json:"id_tail"`
	Registered time.Time   `json:"registered"`
	Status     Status      `json:"status"`
}

// Status is a resident's colour and why: the node's own decision combined,
// by the national recognition rule, with other provinces' attestations
// about the same subject (see combine).
type Status struct {
	Colour     hcx.Colour   `json:"colour"`
	Since      time.Time    `json:"since"`
	Reasons    []ReasonText `json:"reasons"`
	Rule       string       `json:"rule,omitempty"`
	Release    []string     `json:"release,omitempty"`
	Vaccinated bool         `json:"vaccinated"`
	Policy     string       `json:"policy"`
	// DecidedBy are the provinces whose decision gives the colour: this
	// node's own province, another province whose attestation is more
	// severe, or several that agree.
	DecidedBy []hcx.ProvinceCode `json:"decided_by"`
	// Attestations are other provinces' attestations about the resident
	// that count now, one per province.
	Attestations []ProvinceAttestation `json:"attestations,omitempty"`
}

// ReasonText is a reason code with its text in Chinese and English.
type ReasonText struct {
	Code hcx.Reason `json:"code"`
	ZH   string     `json:"zh"`
	EN   string     `json:"en"`
}

func reasonTexts(rs []hcx.Reason) []ReasonText {
	out := make([]ReasonText, 0, len(rs))
	for _, r := range rs {
		zh, en := r.Text()
		out = append(out, ReasonText{Code: r, ZH: zh, EN: en})
	}
	return out
}

// ErrUnknownResident is returned for a subject the node does not hold.
var ErrUnknownResident = hcx.Errorf(hcx.ENotFound, "unknown_resident", "no resident with that subject is registered at this node")

// Register registers a resident and returns it; the subject is the
// federation pseudonym of the document. Registering the same document again is
// a conflict that names the subject.
func (n *Node) Register(ctx context.Context, req RegisterRequest) (*Resident, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	sub := n.cfg.SubjectKey.Subject(req.DocType, req.DocNumber)
	rec := residentRecord{Sub: sub, DocType: req.DocType, SKV: n.cfg.SubjectKey.Version, Registered: now}
	rec.Doc = n.fields.Seal([]byte(req.DocNumber), aad(sub, "doc"))
	rec.Name = n.fields.Seal([]byte(req.Name), aad(sub, "name"))
	if req.Phone != "" {
		rec.Phone = n.fields.Seal([]byte(req.Phone), aad(sub, "phone"))
	}
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	err := n.db.Update(func(txn *badger.Txn) error {
		var old residentRecord
		found, err := getJSON(txn, pResident+string(sub), &old)
		if err != nil {
			return err
		}
		if found {
			return &hcx.Error{Class: hcx.EConflict, Code: "already_registered", Field: "doc_number",
				Message: "this document is already registered at this node", Detail: map[string]any{"subject": sub}}
		}
		return setJSON(txn, pResident+string(sub), &rec)
	})
	if err != nil {
		return nil, err
	}
	n.metrics.registrations.Add(1)
	return n.Resident(ctx, sub)
}

func aad(sub hcx.Subject, field string) []byte { return []byte(string(sub) + "/" + field) }

// Resident returns a resident with a masked name and ID tail.
func (n *Node) Resident(ctx context.Context, sub hcx.Subject) (*Resident, error) {
	var rec residentRecord
	var st colourState
	var others []exchange.LoggedAttestation
	err := n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return err
		}
		if !found {
			return ErrUnknownResident
		}
		if _, err = getJSON(txn, pState+string(sub), &st); err != nil {
			return err
		}
		others, err = foreignAttestations(txn, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	name, doc, err := n.identity(&rec)
	if err != nil {
		return nil, err
	}
	status := n.combine(n.status(&st, rec.Registered), others, n.cfg.Now())
	return &Resident{Subject: sub, MaskedName: hcx.MaskName(name), IDTail: hcx.IDTail(doc), Registered: rec.Registered, Status: status}, nil
}

func (n *Node) identity(rec *residentRecord) (name, doc string, err error) {
	nb, err := n.fields.Open(rec.Name, aad(rec.Sub, "name"))
	if err != nil {
		return "", "", fmt.Errorf("resident %s name: %w", rec.Sub, err)
	}
	db, err := n.fields.Open(rec.Doc, aad(rec.Sub, "doc"))
	if err != nil {
		return "", "", fmt.Errorf("resident %s document: %w", rec.Sub, err)
	}
	return string(nb), string(db), nil
}

func (n *Node) status(st *colourState, registered time.Time) Status {
	s := Status{Colour: st.Colour, Since: st.Since, Reasons: reasonTexts(st.Reasons), Rule: st.Rule, Release: st.Release, Vaccinated: st.Vaccinated, Policy: st.Policy}
	if s.Colour == "" {
		// No state: no rule ever held (record writes none then).
		s.Colour, s.Since, s.Policy, s.Rule = hcx.Green, registered, n.PolicyVersion(), "default"
		s.Reasons = reasonTexts([]hcx.Reason{hcx.ReasonClear})
	}
	return s
}

// Event is something that happened to a resident and may change the colour.
// Exactly one of the kinds is set.
type Event struct {
	Lab     *policy.LabResult   `json:"lab,omitempty"`
	Contact *policy.ContactFlag `json:"contact,omitempty"`
}

func (e *Event) validate(now time.Time) error {
	switch {
	case e.Lab != nil && e.Contact == nil:
		if e.Lab.At.IsZero() {
			e.Lab.At = now
		}
		if e.Lab.Kind == "" {
			e.Lab.Kind = "pcr"
		}
		if e.Lab.Kind != "pcr" && e.Lab.Kind != "antigen" {
			return hcx.Invalidf("kind", "lab kind %q: want pcr or antigen", e.Lab.Kind)
		}
		return checkTime("at", e.Lab.At, now)
	case e.Contact != nil && e.Lab == nil:
		if e.Contact.At.IsZero() {
			e.Contact.At = now
		}
		if err := e.Contact.Issuer.Validate(); err != nil {
			return err
		}
		return checkTime("at", e.Contact.At, now)
	}
	return hcx.Invalidf("event", "an event is exactly one of lab or contact")
}

func checkTime(field string, t, now time.Time) error {
	if t.After(now.Add(5 * time.Minute)) {
		return hcx.Invalidf(field, "time %s is in the future (now %s)", t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if t.Before(now.AddDate(-1, 0, 0)) {
		return hcx.Invalidf(field, "time %s is more than a year ago", t.UTC().Format(time.RFC3339))
	}
	return nil
}

// Ingest records an event about a resident, re-evaluates the resident with the
// province's rules and, if the colour changed, writes an attestation to the
// outbox in the same synced transaction. It returns the new status.
func (n *Node) Ingest(ctx context.Context, sub hcx.Subject, ev Event) (*Status, error) {
	now := n.cfg.Now().UTC()
	if err := ev.validate(now); err != nil {
		return nil, err
	}
	if ev.Lab != nil {
		ev.Lab.At = ev.Lab.At.UTC()
	} else {
		ev.Contact.At = ev.Contact.At.UTC()
	}
	rules := n.rules.Load()
	var out Status
	changed := false
	n.writeMu.Lock()
	err := n.db.Update(func(txn *badger.Txn) error {
		var rec residentRecord
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return err
		}
		if !found {
			return ErrUnknownResident
		}
		evSeq, err := getU64(txn, kEventNext)
		if err != nil {
			return err
		}
		at := eventTime(&ev)
		if err := setJSON(txn, fmt.Sprintf("%s%s/%020d/%020d", pEvent, sub, at.UnixNano(), evSeq), &ev); err != nil {
			return err
		}
		if err := setU64(txn, kEventNext, evSeq+1); err != nil {
			return err
		}
		st, ch, err := n.evaluate(txn, sub, &rec, rules, now)
		if err != nil {
			return err
		}
		changed = ch
		out = n.status(st, rec.Registered)
		return nil
	})
	n.writeMu.Unlock()
	if err != nil {
		return nil, err
	}
	n.metrics.events.Add(1)
	if changed {
		n.pokePublisher()
	}
	return n.withOthers(sub, out)
}

func eventTime(ev *Event) time.Time {
	if ev.Lab != nil {
		return ev.Lab.At
	}
	return ev.Contact.At
}

// evaluate decides a resident's colour from all its events and records the
// decision in txn. It writes an attestation to the outbox when the colour or
// its reasons changed, or when a colour other than green still holds and its
// last attestation nears its expiry (RenewBefore), so that it never lapses
// while the rules hold it. It keeps the resident's entry in the due index
// (schedule.go). It reports whether it wrote an attestation.
func (n *Node) evaluate(txn *badger.Txn, sub hcx.Subject, rec *residentRecord, rules *ruleSet, now time.Time) (*colourState, bool, error) {
	var st colourState
	if _, err := getJSON(txn, pState+string(sub), &st); err != nil {
		return nil, false, err
	}
	facts, err := loadFacts(txn, sub)
	if err != nil {
		return nil, false, err
	}
	attested, err := n.record(txn, sub, rec, &st, facts, rules, now)
	return &st, attested, err
}

// record is evaluate after the reads: it decides from facts and the state st
// read in txn, and writes the new state, the due index entry and, when one is
// needed, an attestation. It reports whether it wrote an attestation.
func (n *Node) record(txn *badger.Txn, sub hcx.Subject, rec *residentRecord, st *colourState, facts *policy.Facts, rules *ruleSet, now time.Time) (bool, error) {
	facts.Current, facts.CurrentSince = st.Colour, st.Since
	if facts.Current == "" {
		facts.Current, facts.CurrentSince = hcx.Green, rec.Registered
	}
	d, err := rules.rs.Decide(facts, now)
	if err != nil {
		return false, fmt.Errorf("decide %s with %s: %w", sub, n.cfg.RulesPath, err)
	}
	prev := st.Colour
	if prev == "" {
		if d.Colour == hcx.Green && d.Rule == "default" && !d.Vaccinated && sameReasons(d.Reasons, []hcx.Reason{hcx.ReasonClear}) {
			// Still what a resident without state shows (status): most
			// residents never need a state, and a bulk re-decision then
			// writes nothing for them.
			st.Colour, st.Since, st.Reasons, st.Rule, st.Policy = d.Colour, rec.Registered, d.Reasons, d.Rule, rules.version
			return false, nil
		}
		prev = hcx.Green
	}
	changed := d.Colour != prev
	attest := changed
	if !changed && d.Colour != hcx.Green {
		renew := time.Unix(st.Exp, 0).Add(-n.cfg.RenewBefore)
		attest = !sameReasons(st.Reasons, d.Reasons) || !now.Before(renew)
	}
	if changed {
		st.Since = now
	}
	st.Colour, st.Reasons, st.Rule, st.Vaccinated, st.Policy = d.Colour, d.Reasons, d.Rule, d.Vaccinated, rules.version
	st.Release = st.Release[:0]
	for _, c := range d.Release {
		zh, en := c.Text()
		st.Release = append(st.Release, zh+" / "+en)
	}
	if attest {
		st.N++
		// A colour that holds keeps its effective time: a renewal says the
		// same thing for longer.
		att := hcx.Attestation{Subject: sub, Colour: d.Colour, Reasons: d.Reasons, Eff: st.Since.Unix(), Exp: now.Add(n.cfg.AttestationTTL).Unix(), PolicyV: rules.version, N: st.N}
		if len(att.Reasons) == 0 {
			att.Reasons = []hcx.Reason{hcx.ReasonClear}
		}
		if err := n.enqueue(txn, &att); err != nil {
			return false, err
		}
		st.Exp = att.Exp
	}
	if err := n.setDue(txn, sub, st, n.dueAt(&d, st, now)); err != nil {
		return false, err
	}
	if err := setJSON(txn, pState+string(sub), st); err != nil {
		return false, err
	}
	return attest, nil
}

func sameReasons(a, b []hcx.Reason) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// loadFacts reads every event of a resident into the facts the rules read.
func loadFacts(txn *badger.Txn, sub hcx.Subject) (*policy.Facts, error) {
	prefix := []byte(pEvent + string(sub) + "/")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	return factsFrom(it, sub)
}

// factsFrom reads a resident's events with an iterator that may serve many
// residents (one iterator per chunk of a bulk re-decision: creating one
// costs more than reading a few events).
func factsFrom(it *badger.Iterator, sub hcx.Subject) (*policy.Facts, error) {
	f := &policy.Facts{}
	prefix := []byte(pEvent + string(sub) + "/")
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		var ev Event
		if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &ev) }); err != nil {
			return nil, fmt.Errorf("event %s: %w", it.Item().Key(), err)
		}
		switch {
		case ev.Lab != nil:
			f.Labs = append(f.Labs, *ev.Lab)
		case ev.Contact != nil:
			f.Contacts = append(f.Contacts, *ev.Contact)
		}
	}
	return f, nil
}

// enqueue appends an attestation to the outbox. The sequence comes from an
// in-memory counter, not from a key the transaction reads, so transactions
// that enqueue for different residents never conflict; kOutboxNext is only a
// hint for the next start (outboxNextOf). The caller holds writeMu (shared or
// exclusive) until txn commits.
func (n *Node) enqueue(txn *badger.Txn, att *hcx.Attestation) error {
	seq := n.outboxNext.Add(1) - 1
	if err := setJSON(txn, string(seqKey(pOutbox, seq)), att); err != nil {
		return err
	}
	return setU64(txn, kOutboxNext, seq+1)
}

// outboxNextOf is the first outbox sequence that is free: after the stored
// hint, the newest outbox entry and the pending batch's last entry, whichever
// is highest (concurrent transactions may leave the hint behind).
func outboxNextOf(txn *badger.Txn) (uint64, error) {
	next, err := getU64(txn, kOutboxNext)
	if err != nil {
		return 0, err
	}
	var p pendingBatch
	found, err := getJSON(txn, kPending, &p)
	if err != nil {
		return 0, err
	}
	if found && p.LastOutbox+1 > next {
		next = p.LastOutbox + 1
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOutbox), Reverse: true})
	defer it.Close()
	it.Seek([]byte(pOutbox + "\xff"))
	if it.Valid() {
		var last uint64
		if _, err := fmt.Sscanf(string(it.Item().Key()[len(pOutbox):]), "%d", &last); err != nil {
			return 0, fmt.Errorf("outbox key %q: %w", it.Item().Key(), err)
		}
		if last+1 > next {
			next = last + 1
		}
	}
	return next, nil
}

func (n *Node) pokePublisher() {
	select {
	case n.published <- struct{}{}:
	default:
	}
}
