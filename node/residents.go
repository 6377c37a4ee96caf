package node

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
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
}

// RegisterRequest registers a resident.
type RegisterRequest struct {
	DocType   hcx.DocType `json:"doc_type"`
	DocNumber string      `json:"doc_number"`
	Name      string      `json:"name"`
	Phone     string      `json:"phone,omitempty"`
}

// Validate checks the request at time now in the province's zone (birth
// dates are not in the future), naming the wrong field, and normalises the
// document number and the name as they are stored.
func (r *RegisterRequest) Validate(now time.Time) error {
	r.DocNumber = hcx.NormaliseDocNumber(r.DocNumber)
	if err := hcx.ValidateDocument(r.DocType, r.DocNumber, now); err != nil {
		return err
	}
	name, err := hcx.NormaliseName(r.Name)
	if err != nil {
		return err
	}
	r.Name = name
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

// Status is a resident's colour and why.
type Status struct {
	Colour     hcx.Colour   `json:"colour"`
	Since      time.Time    `json:"since"`
	Reasons    []ReasonText `json:"reasons"`
	Rule       string       `json:"rule,omitempty"`
	Release    []string     `json:"release,omitempty"`
	Vaccinated bool         `json:"vaccinated"`
	Policy     string       `json:"policy"`
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
	if err := req.Validate(n.cfg.Now().In(n.rules.Load().rs.Location())); err != nil {
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
	mu := n.locks.of(sub)
	mu.Lock()
	defer mu.Unlock()
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
	err := n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return err
		}
		if !found {
			return ErrUnknownResident
		}
		_, err = getJSON(txn, pState+string(sub), &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	name, doc, err := n.identity(&rec)
	if err != nil {
		return nil, err
	}
	return &Resident{Subject: sub, MaskedName: hcx.MaskName(name), IDTail: hcx.IDTail(doc), Registered: rec.Registered, Status: n.status(&st, rec.Registered)}, nil
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
		s.Colour, s.Since, s.Policy = hcx.Green, registered, n.PolicyVersion()
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
// outbox in the same synced commit. It returns the new status once the write
// is on disk. Events about different residents are decided in parallel and
// share synced commits (write.go). It returns ErrUnknownResident, a
// validation error naming the field, ErrBusy when too many writes wait for
// the disk, or ErrClosed.
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
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	// The resident's lock is held from the read to the synced commit, so
	// the next event about them reads what this one wrote.
	mu := n.locks.of(sub)
	mu.Lock()
	defer mu.Unlock()
	rules := n.rules.Load()
	var rec residentRecord
	var st colourState
	var h *history
	err = n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return err
		}
		if !found {
			return ErrUnknownResident
		}
		if h, err = loadHistory(txn, sub); err != nil {
			return err
		}
		_, err = getJSON(txn, pState+string(sub), &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	h.add(&ev)
	changed, err := n.evaluate(sub, &rec, &st, h.facts(), rules, now)
	if err != nil {
		return nil, err
	}
	w := &write{}
	hb, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	w.set(histKey(sub), hb)
	if err := w.setJSON(pState+string(sub), &st); err != nil {
		return nil, err
	}
	if changed {
		w.att = n.attestation(sub, &st, now)
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	n.metrics.events.Add(1)
	if changed {
		n.pokePublisher()
	}
	out := n.status(&st, rec.Registered)
	return &out, nil
}

// evaluate decides a resident's colour from facts (their bounded history)
// and updates st, their state. When the colour changed it advances st.N and
// reports true; the caller writes st and the attestation (n.attestation) in
// one commit.
func (n *Node) evaluate(sub hcx.Subject, rec *residentRecord, st *colourState, facts *policy.Facts, rules *ruleSet, now time.Time) (bool, error) {
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
		prev = hcx.Green
	}
	changed := d.Colour != prev
	if changed {
		st.Since = now
	}
	st.Colour, st.Reasons, st.Rule, st.Vaccinated, st.Policy = d.Colour, d.Reasons, d.Rule, d.Vaccinated, rules.version
	st.Release = st.Release[:0]
	for _, c := range d.Release {
		zh, en := c.Text()
		st.Release = append(st.Release, zh+" / "+en)
	}
	if changed {
		st.N++
	}
	return changed, nil
}

// attestation is the attestation of a resident's new state.
func (n *Node) attestation(sub hcx.Subject, st *colourState, now time.Time) *hcx.Attestation {
	att := hcx.Attestation{Subject: sub, Colour: st.Colour, Reasons: st.Reasons, Eff: now.Unix(), Exp: now.Add(n.cfg.AttestationTTL).Unix(), PolicyV: st.Policy, N: st.N}
	if len(att.Reasons) == 0 {
		att.Reasons = []hcx.Reason{hcx.ReasonClear}
	}
	return &att
}

func (n *Node) pokePublisher() {
	select {
	case n.published <- struct{}{}:
	default:
	}
}
