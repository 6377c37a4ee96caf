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
	// Proxy is true once a guardian registered or claimed the resident (a
	// dependant held by proxy, issue 10); SelfRegistered is when the resident first
	// proved their own identity (an enrolment code used, an OIDC login):
	// from then on nobody holds them by proxy.
	Proxy          bool       `json:"proxy,omitempty"`
	SelfRegistered *time.Time `json:"self,omitempty"`
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
	// ReleaseTexts are the conditions of Release in every language of
	// hcx.Langs (states written before issue 10 have none: status splits
	// Release).
	ReleaseTexts []hcx.Texts `json:"release_texts,omitempty"`
	N            uint64      `json:"n"` // last per-subject attestation sequence
	Policy       string      `json:"policy"`
	Exp          int64       `json:"exp,omitempty"` // when the last attestation stops counting
	Due          int64       `json:"due,omitempty"` // when the scheduler decides again (due/ key), 0: never

	// CheckedIn is the latest daily check-in (declare.go), zero if none.
	CheckedIn time.Time `json:"checked_in,omitzero"`
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

// Status is a resident's colour and why: the node's own decision combined,
// by the national recognition rule, with other provinces' attestations
// about the same subject (see combine).
type Status struct {
	Colour  hcx.Colour   `json:"colour"`
	Since   time.Time    `json:"since"`
	Reasons []ReasonText `json:"reasons"`
	Rule    string       `json:"rule,omitempty"`
	Release []string     `json:"release,omitempty"`
	// ReleaseTexts are the conditions of Release, each as {"zh", "en",
	// "ja", "ko"}.
	ReleaseTexts []hcx.Texts `json:"release_texts,omitempty"`
	Vaccinated   bool        `json:"vaccinated"`
	Policy       string      `json:"policy"`
	// DecidedBy are the provinces whose decision gives the colour: this
	// node's own province, another province whose attestation is more
	// severe, or several that agree.
	DecidedBy []hcx.ProvinceCode `json:"decided_by"`
	// Attestations are other provinces' attestations about the resident
	// that count now, one per province.
	Attestations []ProvinceAttestation `json:"attestations,omitempty"`
	// CheckIn tells a resident this province decides red or yellow whether
	// today's daily health check-in is due (declare.go); nil otherwise.
	CheckIn *CheckInStatus `json:"checkin,omitempty"`
	// Forwarded says that the record was about a subject this node does
	// not hold and was sent through the hub to their home node (a dose
	// given here to a resident of another province); nothing else is set.
	Forwarded bool `json:"forwarded,omitempty"`
}

// ReasonText is a reason code with its text in Chinese, English, Japanese
// and Korean (hcx.Langs; a translation not written yet reads as English).
type ReasonText struct {
	Code hcx.Reason `json:"code"`
	ZH   string     `json:"zh"`
	EN   string     `json:"en"`
	JA   string     `json:"ja"`
	KO   string     `json:"ko"`
}

func reasonTexts(rs []hcx.Reason) []ReasonText {
	out := make([]ReasonText, 0, len(rs))
	for _, r := range rs {
		t, _ := r.Texts()
		out = append(out, ReasonText{Code: r, ZH: t.In(hcx.LangZH), EN: t.In(hcx.LangEN), JA: t.In(hcx.LangJA), KO: t.In(hcx.LangKO)})
	}
	return out
}

// ErrUnknownResident is returned for a subject the node does not hold.
var ErrUnknownResident = hcx.Errorf(hcx.ENotFound, "unknown_resident", "no resident with that subject is registered at this node")

// Register registers a resident and returns it; the subject is the
// federation pseudonym of the document. Registering the same document again is
// a conflict that does not name the subject (errAlreadyRegistered). The principal in ctx is recorded in the
// audit trail with the registration (ErrNoActor without one).
func (n *Node) Register(ctx context.Context, req RegisterRequest) (*Resident, error) {
	entry, err := callerEntry(ctx, ActionResidentRegister, "")
	if err != nil {
		return nil, err
	}
	sub, _, err := n.ensureResident(ctx, req, entry, func(*residentRecord) error { return errAlreadyRegistered() }, nil)
	if err != nil {
		return nil, err
	}
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
	s := Status{Colour: st.Colour, Since: st.Since, Reasons: reasonTexts(st.Reasons), Rule: st.Rule, Release: st.Release, ReleaseTexts: st.ReleaseTexts, Vaccinated: st.Vaccinated, Policy: st.Policy}
	if len(s.ReleaseTexts) == 0 && len(s.Release) > 0 {
		// A state written before the four languages: its "zh / en".
		for _, r := range s.Release {
			zh, en, _ := strings.Cut(r, " / ")
			s.ReleaseTexts = append(s.ReleaseTexts, hcx.Texts{zh, en})
		}
	}
	if s.Colour == "" {
		// No state: no rule ever held (record writes none then).
		s.Colour, s.Since, s.Policy, s.Rule = hcx.Green, registered, n.PolicyVersion(), "default"
		s.Reasons = reasonTexts([]hcx.Reason{hcx.ReasonClear})
	}
	s.CheckIn = n.checkInStatus(st)
	return s
}

// Event is something that happened to a resident and may change the colour.
// Exactly one of the kinds is set. Every kind but an order may carry a
// record id (its ID field): a record posted again with the same id counts
// once (see Ingest). An order's ID names the order; a later event with the
// same ID is a new version of it (confirmed, lifted).
type Event struct {
	Lab         *policy.LabResult    `json:"lab,omitempty"`
	Contact     *policy.ContactFlag  `json:"contact,omitempty"`
	Declaration *policy.Declaration  `json:"declaration,omitempty"`
	Vaccination *policy.Vaccination  `json:"vaccination,omitempty"`
	Travel      *policy.TravelRecord `json:"travel,omitempty"`
	Order       *policy.Order        `json:"order,omitempty"`
	CheckIn     *policy.CheckIn      `json:"checkin,omitempty"`
}

// Event kinds, as kind names them: the record kinds of feeds and the first
// word of their audit actions.
const (
	KindLab         = "lab"
	KindContact     = "contact"
	KindDeclaration = "declaration"
	KindVaccination = "vaccination"
	KindTravel      = "travel"
	KindOrder       = "order"
	KindCheckIn     = "checkin"
)

// Audit actions of events.
const (
	ActionDeclarationPost = "declaration.post"
	ActionVaccinationPost = "vaccination.post"
	ActionTravelPost      = "travel.post"
	ActionOrderPost       = "order.post"
	ActionCheckInPost     = "checkin.post"
)

// kind names the event's kind, "" unless exactly one is set.
func (e *Event) kind() string {
	k, c := "", 0
	set := func(ok bool, name string) {
		if ok {
			k, c = name, c+1
		}
	}
	set(e.Lab != nil, KindLab)
	set(e.Contact != nil, KindContact)
	set(e.Declaration != nil, KindDeclaration)
	set(e.Vaccination != nil, KindVaccination)
	set(e.Travel != nil, KindTravel)
	set(e.Order != nil, KindOrder)
	set(e.CheckIn != nil, KindCheckIn)
	if c != 1 {
		return ""
	}
	return k
}

// Kind is the event's kind (KindLab, ...), "" unless exactly one is set.
func (e *Event) Kind() string { return e.kind() }

// action names the event in the audit trail.
func (e *Event) action() string {
	switch e.kind() {
	case KindContact:
		return ActionContactPost
	case KindDeclaration:
		return ActionDeclarationPost
	case KindVaccination:
		return ActionVaccinationPost
	case KindTravel:
		return ActionTravelPost
	case KindOrder:
		return ActionOrderPost
	case KindCheckIn:
		return ActionCheckInPost
	}
	return ActionLabPost
}

// at is the event's time field.
func (e *Event) at() *time.Time {
	switch {
	case e.Lab != nil:
		return &e.Lab.At
	case e.Contact != nil:
		return &e.Contact.At
	case e.Declaration != nil:
		return &e.Declaration.At
	case e.Vaccination != nil:
		return &e.Vaccination.At
	case e.Travel != nil:
		return &e.Travel.At
	case e.Order != nil:
		return &e.Order.At
	case e.CheckIn != nil:
		return &e.CheckIn.At
	}
	return nil
}

// RecordID is the record id the event carries ("" for none, and for
// orders, whose ID names the order rather than one record of it).
func (e *Event) RecordID() string {
	switch {
	case e.Lab != nil:
		return e.Lab.ID
	case e.Contact != nil:
		return e.Contact.ID
	case e.Declaration != nil:
		return e.Declaration.ID
	case e.Vaccination != nil:
		return e.Vaccination.ID
	case e.Travel != nil:
		return e.Travel.ID
	case e.CheckIn != nil:
		return e.CheckIn.ID
	}
	return ""
}

// MaxRecordID bounds a record id; ids are printable ASCII without spaces.
const MaxRecordID = 64

func validRecordID(field, id string) error {
	if len(id) > MaxRecordID {
		return hcx.Invalidf(field, "a record id has at most %d characters, this one %d", MaxRecordID, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return hcx.Invalidf(field, "a record id is printable ASCII without spaces; character %d is not", i+1)
		}
	}
	return nil
}

// validate checks the event at now (the time defaults to now and is stored
// in UTC), naming the wrong field. It checks what every route and feed of
// the kind must: routes may check more.
func (e *Event) validate(now time.Time) error {
	k := e.kind()
	if k == "" {
		return hcx.Invalidf("event", "an event is exactly one of lab, contact, declaration, vaccination, travel, order or checkin")
	}
	at := e.at()
	if at.IsZero() {
		*at = now
	}
	*at = at.UTC()
	if err := validRecordID("id", e.RecordID()); err != nil {
		return err
	}
	switch k {
	case KindLab:
		if e.Lab.Kind == "" {
			e.Lab.Kind = "pcr"
		}
		if e.Lab.Kind != "pcr" && e.Lab.Kind != "antigen" {
			return hcx.Invalidf("kind", "lab kind %q: want pcr or antigen", e.Lab.Kind)
		}
	case KindContact:
		if err := e.Contact.Issuer.Validate(); err != nil {
			return err
		}
	case KindDeclaration:
		if err := validTemp("temp_c", e.Declaration.TempC); err != nil {
			return err
		}
		if err := validSymptoms("symptoms", e.Declaration.Symptoms); err != nil {
			return err
		}
	case KindCheckIn:
		if err := validTemp("temp_c", e.CheckIn.TempC); err != nil {
			return err
		}
		if err := validSymptoms("symptoms", e.CheckIn.Symptoms); err != nil {
			return err
		}
	case KindVaccination:
		v := e.Vaccination
		if v.CourseDoses < 0 || v.CourseDoses > 3 {
			return hcx.Invalidf("course_doses", "a primary course has 1 to 3 doses, not %d", v.CourseDoses)
		}
		if v.Dose < 1 || v.Dose > 10 {
			return hcx.Invalidf("dose", "dose number %d: want 1 to 10", v.Dose)
		}
		if v.Province != "" {
			if err := v.Province.Validate(); err != nil {
				return err
			}
		}
		if err := checkProduct(v); err != nil {
			return err
		}
	case KindTravel:
		if err := e.Travel.Div.Validate(); err != nil {
			return err
		}
	case KindOrder:
		o := e.Order
		if err := validRecordID("id", o.ID); err != nil {
			return err
		}
		if o.ID == "" {
			return hcx.Invalidf("id", "an order has an id")
		}
		if err := o.Colour.Validate(); err != nil || o.Colour == hcx.Green {
			return hcx.Invalidf("colour", "an order's colour is red or yellow, not %q", o.Colour)
		}
	}
	return checkTime("at", *at, now)
}

// validTemp checks a declared temperature in degrees Celsius: 0 (not
// taken) or 34 to 43.
func validTemp(field string, c float64) error {
	if c != 0 && (c < 34 || c > 43) {
		return hcx.Invalidf(field, "temperature %.1f °C is not a body temperature; want 34 to 43, or none", c)
	}
	return nil
}

// MaxSymptoms bounds the symptoms of one declaration.
const MaxSymptoms = 16

func validSymptoms(field string, ss []string) error {
	if len(ss) > MaxSymptoms {
		return hcx.Invalidf(field, "at most %d symptoms, got %d", MaxSymptoms, len(ss))
	}
	for i, s := range ss {
		if !policy.KnownSymptom(s) {
			return hcx.Invalidf(fmt.Sprintf("%s[%d]", field, i), "symptom %q is not one of %s", s, strings.Join(policy.Symptoms(), ", "))
		}
	}
	return nil
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
// province's rules and, if an attestation is due (evaluate), writes it to the
// outbox in the same synced commit. It returns the new status, combined with
// other provinces' attestations, once the write is on disk. Events about
// different residents are decided in parallel and share synced commits
// (write.go). The principal in ctx is recorded in the audit trail with the
// event. An event with a record id the node has recorded before, about the
// same resident and with the same content, is not recorded again: Ingest
// answers the status as it is (idempotent feeds); the same id with other
// content is record_conflict. It returns ErrNoActor, ErrUnknownResident (or
// what nonResident makes of an event about someone the node does not hold),
// a validation error naming the field, ErrBusy when too many writes wait for
// the disk, or ErrClosed.
func (n *Node) Ingest(ctx context.Context, sub hcx.Subject, ev Event) (*Status, error) {
	entry, err := callerEntry(ctx, ev.action(), sub)
	if err != nil {
		return nil, err
	}
	if ev.Order != nil {
		return nil, errOrderThroughIngest()
	}
	now := n.cfg.Now().UTC()
	if err := ev.validate(now); err != nil {
		return nil, err
	}
	// The resident's lock is held from the read to the synced commit, so
	// the next event about them reads what this one wrote.
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rules := n.rules.Load()
	var rec residentRecord
	var st colourState
	var h *history
	var found, dup bool
	rid := recordKey(&ev)
	err = n.db.View(func(txn *badger.Txn) error {
		if found, err = getJSON(txn, pResident+string(sub), &rec); err != nil || !found {
			return err
		}
		if dup, err = checkRecord(txn, rid, sub, &ev); err != nil || dup {
			return err
		}
		h, err = loadHistoryAndState(txn, sub, &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return n.nonResident(ctx, sub, &ev, entry)
	}
	if dup {
		n.metrics.duplicates.Add(1)
		r, err := n.Resident(ctx, sub)
		if err != nil {
			return nil, err
		}
		return &r.Status, nil
	}
	if ev.Vaccination != nil {
		if err := checkDoseOrder(h, ev.Vaccination); err != nil {
			return nil, err
		}
	}
	w := &write{}
	w.record(entry)
	if rid != "" {
		w.setTTL(rid, recordValue(sub, &ev), recordTTL(&ev))
	}
	if err := n.recordEvents(w, sub, &rec, &st, h, []Event{ev}, rules, now); err != nil {
		return nil, err
	}
	return n.withOthers(sub, n.status(&st, rec.Registered))
}

// decide decides a resident again (evaluate) and adds to w what the decision
// changes: the state, the resident's entry in the due index (schedule.go)
// and, when one is due, the attestation. The caller holds the resident's lock
// from reading st and facts until w is committed. It reports whether it added
// an attestation.
func (n *Node) decide(w *write, sub hcx.Subject, rec *residentRecord, st *colourState, facts *policy.Facts, rules *ruleSet, now time.Time) (bool, error) {
	oldDue := st.Due
	attest, err := n.evaluate(sub, rec, st, facts, rules, now)
	if err != nil {
		return false, err
	}
	if st.Colour == "" {
		return false, nil // still no state: nothing to write (evaluate)
	}
	if st.Due != oldDue {
		if oldDue != 0 {
			w.del(dueKey(oldDue, sub))
		}
		if st.Due != 0 {
			w.set(string(dueKey(st.Due, sub)), nil)
		}
	}
	if err := w.setJSON(pState+string(sub), st); err != nil {
		return false, err
	}
	if attest {
		w.attest(n.attestation(sub, st))
	}
	return attest, nil
}

// evaluate decides a resident's colour from facts (their bounded history)
// and updates st, their state, without writing anything. An attestation is
// due when the colour or its reasons changed, or when a colour other than
// green still holds and its last attestation nears its expiry (RenewBefore),
// so that it never lapses while the rules hold it; then evaluate advances
// st.N, sets st.Exp and reports true. It sets st.Due, when the scheduler must
// decide the resident again (dueAt). A resident without state who is still
// what status shows for one (green by the default rule) keeps an empty state
// (st.Colour ""): most residents never need one, and a bulk re-decision then
// writes nothing for them.
func (n *Node) evaluate(sub hcx.Subject, rec *residentRecord, st *colourState, facts *policy.Facts, rules *ruleSet, now time.Time) (bool, error) {
	n.decisionFacts(rec, st, facts)
	d, err := rules.rs.Decide(facts, now)
	if err != nil {
		return false, fmt.Errorf("decide %s with %s: %w", sub, n.cfg.RulesPath, err)
	}
	prev := st.Colour
	if prev == "" {
		if d.Colour == hcx.Green && d.Rule == "default" && !d.Vaccinated && sameReasons(d.Reasons, []hcx.Reason{hcx.ReasonClear}) {
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
	st.CheckedIn = lastCheckIn(facts)
	st.Release, st.ReleaseTexts = st.Release[:0], st.ReleaseTexts[:0]
	for _, c := range d.Release {
		t := c.Texts()
		st.Release = append(st.Release, t[0]+" / "+t[1])
		st.ReleaseTexts = append(st.ReleaseTexts, t)
	}
	if attest {
		st.N++
		st.Exp = now.Add(n.cfg.AttestationTTL).Unix()
	}
	st.Due = n.dueAt(&d, st, now)
	return attest, nil
}

// decisionFacts completes the facts of a resident's history with what the
// node adds when it decides them: the colour in force and since when (green
// since registration for a resident without state) and the risk areas of
// their stays. evaluate and ExplainResident (rules.go) share it, so that an
// explanation sees exactly what a decision sees.
func (n *Node) decisionFacts(rec *residentRecord, st *colourState, facts *policy.Facts) {
	facts.Current, facts.CurrentSince = st.Colour, st.Since
	if facts.RiskAreas == nil {
		facts.RiskAreas = n.riskAreasFor(facts)
	}
	if facts.Current == "" {
		facts.Current, facts.CurrentSince = hcx.Green, rec.Registered
	}
}

// attestation is the attestation of a resident's state, as evaluate left it.
// A colour that holds keeps its effective time (st.Since): a renewal says the
// same thing for longer.
func (n *Node) attestation(sub hcx.Subject, st *colourState) *hcx.Attestation {
	att := hcx.Attestation{Subject: sub, Colour: st.Colour, Reasons: st.Reasons, Eff: st.Since.Unix(), Exp: st.Exp, PolicyV: st.Policy, N: st.N}
	if len(att.Reasons) == 0 {
		att.Reasons = []hcx.Reason{hcx.ReasonClear}
	}
	return &att
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

func (n *Node) pokePublisher() {
	select {
	case n.published <- struct{}{}:
	default:
	}
}

// hold takes a write slot (admit: back-pressure) and the resident's lock, and
// returns what releases both, the lock first.
func (n *Node) hold(ctx context.Context, sub hcx.Subject) (func(), error) {
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	mu := n.locks.of(sub)
	mu.Lock()
	return func() { mu.Unlock(); release() }, nil
}
