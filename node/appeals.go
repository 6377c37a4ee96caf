package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// Appeals and corrections (issue 10 item 6; docs/decisions.md, "Issue 10:
// appeals and corrections").
//
// A resident, a guardian for them, or an operator taking a 12345 hotline
// call files an appeal against the resident's colour or one of their
// records (by kind and record id). An operator of the province opens it
// (the appeal is then under review) and sees the evidence: the records
// concerned, the colour and its reasons, and an automatic pre-check of the
// last 7 days' stays against the risk areas in force then. The operator
// accepts or rejects it with a reason. Accepting voids the records named:
// they leave the resident's history (the appeal keeps them, and why), the
// colour is decided again and its attestation goes to the outbox in the same
// synced write. A record voided stays voided: its record id is still known,
// so a feed that sends it again counts it as sent before.
//
// An identity reclaim is an appeal of its own kind: the true owner of a
// document registered under another name proves the document (an OIDC login
// whose verified document is this one, or an operator's in-person check) and
// files it; an operator decides it. Accepting it re-seals the registered name
// and ends what the squatter held: sessions, passkeys, the enrolment code and
// delegations either way; the owner gets a new enrolment code.

// Audit actions of appeals.
const (
	ActionAppealFile      = "appeal.file"
	ActionAppealOpen      = "appeal.open"
	ActionAppealDecide    = "appeal.decide"
	ActionRecordVoid      = "record.void"
	ActionIdentityReclaim = "identity.reclaim"
)

// Appeal kinds.
const (
	AppealColour  = "colour"
	AppealRecord  = "record"
	AppealReclaim = "reclaim"
)

// Appeal statuses.
const (
	AppealFiled       = "filed"
	AppealUnderReview = "under_review"
	AppealAccepted    = "accepted"
	AppealRejected    = "rejected"
)

// Bounds of appeals.
const (
	MaxAppealText     = 1000 // characters of an appeal's text
	MaxDecisionReason = 500  // characters of a decision's reason
	MaxAppealsKept    = 20   // appeals per resident; past it, the hotline
	MaxOpenAppeals    = 3    // open (filed or under review) per resident
	MaxVoid           = 16   // records one decision voids
	DefaultAppealPage = 20
	MaxAppealPage     = 100
	// PreCheckWindow is how far back the automatic pre-check looks at
	// stays (USERS.md: "the last 7 days' trajectory").
	PreCheckWindow = 7 * 24 * time.Hour
)

const (
	pAppeal     = "appeal/"     // appeal/<id> -> appealRecord
	pAppealOpen = "appealopen/" // appealopen/<id> -> nil: open appeals, oldest first (ids sort by filing time)
	pAppealOf   = "appealof/"   // appealof/<sub>/<id> -> nil: a resident's appeals
)

// RecordRef names a record by kind (KindLab, ...) and record id (an
// order's id for orders).
type RecordRef struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

func (r RecordRef) String() string { return r.Kind + "/" + r.ID }

// VoidedRecord is a record an accepted appeal removed from the history.
type VoidedRecord struct {
	RecordRef
	Event Event `json:"event"`
}

// ReclaimOutcome is what an accepted reclaim ended.
type ReclaimOutcome struct {
	Sessions    int `json:"sessions"`
	Passkeys    int `json:"passkeys"`
	Delegations int `json:"delegations"`
	// EnrolmentCodes is 1 when the squatter held an enrolment code.
	EnrolmentCodes int `json:"enrolment_codes"`
}

// Text is a text shown to people, in Chinese, English, Japanese and Korean.
type Text struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
	JA string `json:"ja"`
	KO string `json:"ko"`
}

var appealStatusText = map[string]Text{
	AppealFiled:       {"已提交，等待审核", "filed, waiting for review", "提出済み・審査待ち", "접수됨, 심사 대기 중"},
	AppealUnderReview: {"审核中", "under review", "審査中", "심사 중"},
	AppealAccepted:    {"申诉成立，已更正", "accepted; corrected", "申し立てが認められ、訂正されました", "이의 신청이 받아들여져 정정되었습니다"},
	AppealRejected:    {"申诉未获支持", "rejected", "申し立ては認められませんでした", "이의 신청이 기각되었습니다"},
}

// Appeal is an appeal as residents and operators see it: never a name in
// full or a document number.
type Appeal struct {
	ID         string      `json:"id"`
	Subject    hcx.Subject `json:"subject"`
	Kind       string      `json:"kind"`
	Record     *RecordRef  `json:"record,omitempty"`
	Text       string      `json:"text"`
	Status     string      `json:"status"`
	StatusText Text        `json:"status_text"`
	Filed      time.Time   `json:"filed"`
	FiledBy    string      `json:"filed_by"`
	Opened     *time.Time  `json:"opened,omitempty"`
	OpenedBy   string      `json:"opened_by,omitempty"`
	Decided    *time.Time  `json:"decided,omitempty"`
	DecidedBy  string      `json:"decided_by,omitempty"`
	// Reason is the operator's reason for the decision.
	Reason string `json:"reason,omitempty"`
	// Voided are the records an accepted appeal removed, as they were.
	Voided []VoidedRecord `json:"voided,omitempty"`
	// ColourBefore and ColourAfter are the node's own decision before
	// and after an accepted appeal.
	ColourBefore hcx.Colour `json:"colour_before,omitempty"`
	ColourAfter  hcx.Colour `json:"colour_after,omitempty"`
	// Proof is how a reclaim's claimant proved the document: "oidc" (the
	// identity provider's account) or "desk" (an operator's check).
	Proof   string          `json:"proof,omitempty"`
	Reclaim *ReclaimOutcome `json:"reclaim,omitempty"`
}

// appealRecord is an appeal at rest: a reclaim keeps the claimed name,
// sealed like the registered one, bound to the appeal.
type appealRecord struct {
	Appeal
	ClaimedName []byte `json:"claimed_name,omitempty"`
	ProofActor  string `json:"proof_actor,omitempty"`
}

func (a *appealRecord) open() bool {
	return a.Status == AppealFiled || a.Status == AppealUnderReview
}

func (a *appealRecord) view() *Appeal {
	v := a.Appeal
	v.StatusText = appealStatusText[v.Status]
	return &v
}

// AppealRequest files an appeal against a resident's colour or record.
type AppealRequest struct {
	Kind   string     `json:"kind"`
	Record *RecordRef `json:"record,omitempty"`
	Text   string     `json:"text"`
}

// DecisionRequest decides an appeal.
type DecisionRequest struct {
	Decision string      `json:"decision"` // "accept" or "reject"
	Reason   string      `json:"reason"`
	Void     []RecordRef `json:"void,omitempty"`
}

// ReclaimRequest is a reclaim by the owner of a document: the document and
// the name proven (by the identity provider's ID token or an operator's
// check), and the claimant's text.
type ReclaimRequest struct {
	DocType   hcx.DocType `json:"doc_type"`
	DocNumber string      `json:"doc_number"`
	Name      string      `json:"name"`
	Text      string      `json:"text"`
}

// ReclaimProof is how a reclaim's claimant proved the document.
type ReclaimProof struct {
	Method string // "oidc" or "desk"
	Actor  string // the identity provider's account, or the operator
}

// AppealDecision is a decided appeal, and for an accepted reclaim the
// owner's new enrolment code (shown once, to the deciding operator, who
// hands it over in person).
type AppealDecision struct {
	Appeal    *Appeal            `json:"appeal"`
	Status    *Status            `json:"status,omitempty"`
	Enrolment *ResidentEnrolment `json:"enrolment,omitempty"`
}

// AppealPage is a page of open appeals, oldest first.
type AppealPage struct {
	Appeals []*Appeal `json:"appeals"`
	// Next is the id to ask after for the next page; "" on the last.
	Next string `json:"next,omitempty"`
}

// Evidence is what an operator reviews an appeal with.
type Evidence struct {
	Appeal *Appeal `json:"appeal"`
	// Status is the resident's colour and its reasons now.
	Status Status `json:"status"`
	// Records are the resident's records the appeal concerns: the record
	// named, or those the colour rests on.
	Records  []EvidenceRecord `json:"records"`
	PreCheck PreCheck         `json:"pre_check"`
	Reclaim  *ReclaimEvidence `json:"reclaim,omitempty"`
}

// EvidenceRecord is one record of the resident's history.
type EvidenceRecord struct {
	RecordRef
	Event Event `json:"event"`
}

// PreCheck is the automatic pre-check (USERS.md: "compares the last 7
// days' trajectory with risk points before a human looks").
type PreCheck struct {
	From  time.Time   `json:"from"`
	Until time.Time   `json:"until"`
	Stays []StayCheck `json:"stays"`
	// InRiskArea is true when a stay of the window fell in a risk area in
	// force at the time.
	InRiskArea bool `json:"in_risk_area"`
	// RestsOn are the records the colour rests on (by its reasons).
	RestsOn []RecordRef `json:"rests_on"`
	Summary Text        `json:"summary"`
}

// StayCheck is a stay and the risk areas in force at the time that cover it.
type StayCheck struct {
	Div   hcx.DivisionCode  `json:"div"`
	At    time.Time         `json:"at"`
	ID    string            `json:"id,omitempty"`
	Areas []policy.RiskArea `json:"areas"`
}

// ReclaimEvidence compares the registration with the claim: masked names
// (the operator reads the full identity through the audited identity
// route) and what accepting would end.
type ReclaimEvidence struct {
	RegisteredName string `json:"registered_name"`
	ClaimedName    string `json:"claimed_name"`
	Proof          string `json:"proof"`
	ProofActor     string `json:"proof_actor"`
	Passkeys       int    `json:"passkeys"`
	Delegations    int    `json:"delegations"`
}

func unknownAppeal() error {
	return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_appeal", Field: "id", Message: "no appeal with this id for this resident at this node"}
}

func appealDecided(a *appealRecord) error {
	return hcx.Errorf(hcx.EConflict, "appeal_decided", "this appeal was %s on %s; file a new appeal if something else is wrong", a.Status, a.Decided.Format(time.RFC3339))
}

// newAppealID is 16 hex digits of the filing time (ns) and 8 random: ids
// sort by filing time, so the open index pages oldest first.
func newAppealID(now time.Time) (string, error) {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// validAppealID checks an id from a URL.
func validAppealID(id string) error {
	if len(id) != 24 {
		return unknownAppeal()
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return unknownAppeal()
	}
	return nil
}

// checkText checks a text people wrote: 1 to max characters of UTF-8
// without control characters other than line breaks and tabs.
func checkText(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", hcx.Invalidf(field, "the text is not UTF-8")
	}
	if s == "" {
		return "", hcx.Invalidf(field, "say what is wrong (1 to %d characters) / 请填写申诉内容", max)
	}
	if c := utf8.RuneCountInString(s); c > max {
		return "", hcx.Invalidf(field, "at most %d characters, got %d / 最多 %d 字", max, c, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return "", hcx.Invalidf(field, "the text holds a control character (%U)", r)
		}
	}
	return s, nil
}

func checkRecordRef(field string, r *RecordRef) error {
	switch r.Kind {
	case KindLab, KindContact, KindDeclaration, KindVaccination, KindTravel, KindOrder, KindCheckIn:
	default:
		return hcx.Invalidf(field+".kind", "record kind %q: want lab, contact, declaration, vaccination, travel, order or checkin", r.Kind)
	}
	if r.ID == "" {
		return hcx.Invalidf(field+".id", "name the record by its id (as the feed or the record shows it)")
	}
	return validRecordID(field+".id", r.ID)
}

// find returns the event of kind and id in h, nil if h has none.
func (h *history) find(r RecordRef) *Event {
	ev, _ := h.take(r, false)
	return ev
}

// take finds the record r and, if remove, removes it from h.
func (h *history) take(r RecordRef, remove bool) (*Event, bool) {
	var out *Event
	switch r.Kind {
	case KindLab:
		h.Labs, out = takeByID(h.Labs, r.ID, remove, func(v *policy.LabResult) string { return v.ID }, func(v policy.LabResult) Event { return Event{Lab: &v} })
	case KindContact:
		h.Contacts, out = takeByID(h.Contacts, r.ID, remove, func(v *policy.ContactFlag) string { return v.ID }, func(v policy.ContactFlag) Event { return Event{Contact: &v} })
	case KindDeclaration:
		h.Declarations, out = takeByID(h.Declarations, r.ID, remove, func(v *policy.Declaration) string { return v.ID }, func(v policy.Declaration) Event { return Event{Declaration: &v} })
	case KindVaccination:
		h.Vaccinations, out = takeByID(h.Vaccinations, r.ID, remove, func(v *policy.Vaccination) string { return v.ID }, func(v policy.Vaccination) Event { return Event{Vaccination: &v} })
	case KindTravel:
		h.Travel, out = takeByID(h.Travel, r.ID, remove, func(v *policy.TravelRecord) string { return v.ID }, func(v policy.TravelRecord) Event { return Event{Travel: &v} })
	case KindOrder:
		h.Orders, out = takeByID(h.Orders, r.ID, remove, func(v *policy.Order) string { return v.ID }, func(v policy.Order) Event { return Event{Order: &v} })
	case KindCheckIn:
		h.CheckIns, out = takeByID(h.CheckIns, r.ID, remove, func(v *policy.CheckIn) string { return v.ID }, func(v policy.CheckIn) Event { return Event{CheckIn: &v} })
	}
	return out, out != nil
}

func takeByID[T any](s []T, id string, remove bool, idOf func(*T) string, ev func(T) Event) ([]T, *Event) {
	for i := range s {
		if idOf(&s[i]) == id {
			e := ev(s[i])
			if remove {
				s = append(s[:i:i], s[i+1:]...)
			}
			return s, &e
		}
	}
	return s, nil
}

// loadAppeal reads an appeal; sub, if not empty, must be its resident.
func loadAppeal(txn *badger.Txn, id string, sub hcx.Subject) (*appealRecord, error) {
	if err := validAppealID(id); err != nil {
		return nil, err
	}
	var a appealRecord
	found, err := getJSON(txn, pAppeal+id, &a)
	if err != nil {
		return nil, err
	}
	if !found || (sub != "" && a.Subject != sub) {
		return nil, unknownAppeal()
	}
	return &a, nil
}

// appealsOf reads a resident's appeals, oldest first (at most
// MaxAppealsKept).
func appealsOf(txn *badger.Txn, sub hcx.Subject) ([]*appealRecord, error) {
	prefix := []byte(pAppealOf + string(sub) + "/")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var ids []string
	for it.Rewind(); it.Valid() && len(ids) < MaxAppealsKept; it.Next() {
		ids = append(ids, string(it.Item().Key()[len(prefix):]))
	}
	it.Close()
	out := make([]*appealRecord, 0, len(ids))
	for _, id := range ids {
		a, err := loadAppeal(txn, id, sub)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// checkRoom refuses a new appeal of a resident who holds too many.
func checkRoom(have []*appealRecord, kind string) error {
	if len(have) >= MaxAppealsKept {
		return hcx.Errorf(hcx.EConflict, "too_many_appeals", "this resident has filed %d appeals here; further ones go through the 12345 hotline / 申诉次数已达上限，请拨打 12345", MaxAppealsKept)
	}
	open := 0
	for _, a := range have {
		if a.open() {
			open++
			if kind == AppealReclaim && a.Kind == AppealReclaim {
				return hcx.Errorf(hcx.EConflict, "reclaim_open", "a reclaim of this identity is already under way (appeal %s); wait for its decision", a.ID)
			}
		}
	}
	if open >= MaxOpenAppeals {
		return hcx.Errorf(hcx.EConflict, "too_many_open_appeals", "this resident has %d appeals waiting for a decision; wait for one / 已有 %d 项申诉待处理", open, open)
	}
	return nil
}

// FileAppeal files an appeal of the resident sub against their colour or
// one of their records; the caller is the resident, a guardian or an
// operator (the API checks who may). A record the resident does not have
// is 404 unknown_record naming record.id. Audited as appeal.file.
func (n *Node) FileAppeal(ctx context.Context, sub hcx.Subject, req AppealRequest) (*Appeal, error) {
	entry, err := callerEntry(ctx, ActionAppealFile, sub)
	if err != nil {
		return nil, err
	}
	switch req.Kind {
	case AppealColour:
		if req.Record != nil {
			return nil, hcx.Invalidf("record", "an appeal against the colour names no record; to appeal a record, say kind \"record\"")
		}
	case AppealRecord:
		if req.Record == nil {
			return nil, hcx.Invalidf("record", "an appeal against a record names it: {\"kind\": ..., \"id\": ...}")
		}
		if err := checkRecordRef("record", req.Record); err != nil {
			return nil, err
		}
	default:
		return nil, hcx.Invalidf("kind", "appeal kind %q: want colour or record (an identity reclaim is POST /v1/reclaims)", req.Kind)
	}
	text, err := checkText("text", req.Text, MaxAppealText)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	id, err := newAppealID(now)
	if err != nil {
		return nil, err
	}
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	err = n.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pResident + string(sub))); errors.Is(err, badger.ErrKeyNotFound) {
			return notResidentHere(n.cfg.Province)
		} else if err != nil {
			return err
		}
		have, err := appealsOf(txn, sub)
		if err != nil {
			return err
		}
		if err := checkRoom(have, req.Kind); err != nil {
			return err
		}
		if req.Record == nil {
			return nil
		}
		h, err := loadHistory(txn, sub)
		if err != nil {
			return err
		}
		if h.find(*req.Record) == nil {
			return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_record", Field: "record.id",
				Message: fmt.Sprintf("this resident has no %s record with id %q (it may have expired, or belong to someone else)", req.Record.Kind, req.Record.ID)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a := &appealRecord{Appeal: Appeal{ID: id, Subject: sub, Kind: req.Kind, Record: req.Record, Text: text, Status: AppealFiled, Filed: now, FiledBy: entry.Actor}}
	entry.Note = "appeal " + id + " " + req.Kind
	if req.Record != nil {
		entry.Note += " " + req.Record.String()
	}
	return n.storeAppeal(entry, a)
}

// storeAppeal writes a new appeal and its indexes with entry, the trail
// entry of its filing; the caller holds the resident's lock.
func (n *Node) storeAppeal(entry *AuditEntry, a *appealRecord) (*Appeal, error) {
	w := &write{}
	w.record(entry)
	w.set(pAppealOpen+a.ID, nil)
	w.set(pAppealOf+string(a.Subject)+"/"+a.ID, nil)
	if err := w.setJSON(pAppeal+a.ID, a); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	return a.view(), nil
}

// Appeals lists the resident's appeals, oldest first.
func (n *Node) Appeals(ctx context.Context, sub hcx.Subject) ([]*Appeal, error) {
	var out []*Appeal
	err := n.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pResident + string(sub))); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrUnknownResident
		} else if err != nil {
			return err
		}
		have, err := appealsOf(txn, sub)
		for _, a := range have {
			out = append(out, a.view())
		}
		return err
	})
	if out == nil {
		out = []*Appeal{}
	}
	return out, err
}

// AppealOf returns one of the resident's appeals: its status and, once
// decided, the outcome.
func (n *Node) AppealOf(ctx context.Context, sub hcx.Subject, id string) (*Appeal, error) {
	var a *appealRecord
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		a, err = loadAppeal(txn, id, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a.view(), nil
}

// OpenAppeals lists the open appeals (filed or under review), oldest first,
// after the appeal id after ("" from the start), at most limit (0:
// DefaultAppealPage; 1 to MaxAppealPage).
func (n *Node) OpenAppeals(ctx context.Context, after string, limit int) (*AppealPage, error) {
	if limit == 0 {
		limit = DefaultAppealPage
	}
	if limit < 1 || limit > MaxAppealPage {
		return nil, hcx.Invalidf("limit", "limit %d: want 1 to %d", limit, MaxAppealPage)
	}
	if after != "" {
		if err := validAppealID(after); err != nil {
			return nil, hcx.Invalidf("after", "after is an appeal id (24 hex digits), as the last page's next")
		}
	}
	page := &AppealPage{Appeals: []*Appeal{}}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pAppealOpen)})
		defer it.Close()
		it.Seek([]byte(pAppealOpen + after + "\x00"))
		for ; it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(pAppealOpen):])
			if len(page.Appeals) == limit {
				page.Next = page.Appeals[limit-1].ID
				return nil
			}
			a, err := loadAppeal(txn, id, "")
			if err != nil {
				return err
			}
			page.Appeals = append(page.Appeals, a.view())
		}
		return nil
	})
	return page, err
}

// OpenAppeal is an operator opening an appeal for review: a filed appeal is
// then under review. It answers the evidence. Opening an appeal again
// (under review or decided) shows the evidence again. Audited as
// appeal.open, every time: who looked at a resident's records and why.
func (n *Node) OpenAppeal(ctx context.Context, id string) (*Evidence, error) {
	entry, err := callerEntry(ctx, ActionAppealOpen, "")
	if err != nil {
		return nil, err
	}
	a, err := n.readAppeal(id)
	if err != nil {
		return nil, err
	}
	sub := a.Subject
	entry.Subject, entry.Note = sub, "appeal "+id
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var h *history
	var rec residentRecord
	err = n.db.View(func(txn *badger.Txn) error {
		if a, err = loadAppeal(txn, id, ""); err != nil {
			return err
		}
		if _, err := getJSON(txn, pResident+string(sub), &rec); err != nil {
			return err
		}
		h, err = loadHistory(txn, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	w := &write{}
	w.record(entry)
	if a.Status == AppealFiled {
		a.Status, a.Opened, a.OpenedBy = AppealUnderReview, &now, entry.Actor
		if err := w.setJSON(pAppeal+id, a); err != nil {
			return nil, err
		}
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	res, err := n.Resident(ctx, sub)
	if err != nil {
		return nil, err
	}
	ev := &Evidence{Appeal: a.view(), Status: res.Status, Records: []EvidenceRecord{}}
	facts := h.facts()
	ev.PreCheck = n.preCheck(h, facts, res.Status, now)
	switch {
	case a.Record != nil:
		if e := h.find(*a.Record); e != nil {
			ev.Records = append(ev.Records, EvidenceRecord{*a.Record, *e})
		}
	case a.Kind == AppealColour:
		for _, r := range ev.PreCheck.RestsOn {
			if e := h.find(r); e != nil {
				ev.Records = append(ev.Records, EvidenceRecord{r, *e})
			}
		}
	case a.Kind == AppealReclaim:
		ev.Reclaim, err = n.reclaimEvidence(a, &rec)
		if err != nil {
			return nil, err
		}
	}
	for _, v := range a.Voided {
		ev.Records = append(ev.Records, EvidenceRecord(v))
	}
	return ev, nil
}

func (n *Node) readAppeal(id string) (*appealRecord, error) {
	var a *appealRecord
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		a, err = loadAppeal(txn, id, "")
		return err
	})
	return a, err
}

// preCheck compares the stays of the last PreCheckWindow with the risk
// areas in force at each stay's time, and lists the records the colour
// rests on: what a person would check first, done before they look.
func (n *Node) preCheck(h *history, facts *policy.Facts, st Status, now time.Time) PreCheck {
	pc := PreCheck{From: now.Add(-PreCheckWindow), Until: now, Stays: []StayCheck{}, RestsOn: []RecordRef{}}
	areas := facts.RiskAreas
	if areas == nil {
		areas = n.riskAreasFor(facts)
	}
	for _, s := range h.Travel {
		if s.At.Before(pc.From) || s.At.After(now) {
			continue
		}
		sc := StayCheck{Div: s.Div, At: s.At, ID: s.ID, Areas: []policy.RiskArea{}}
		for _, a := range areas {
			if policy.Covers(a.Div, s.Div) && !s.At.Before(a.From) && (a.To == nil || s.At.Before(*a.To)) {
				sc.Areas = append(sc.Areas, a)
			}
		}
		pc.InRiskArea = pc.InRiskArea || len(sc.Areas) > 0
		pc.Stays = append(pc.Stays, sc)
	}
	add := func(kind, id string) {
		if id != "" {
			pc.RestsOn = append(pc.RestsOn, RecordRef{kind, id})
		}
	}
	for _, r := range st.Reasons {
		switch r.Code {
		case hcx.ReasonLabPositive:
			for _, l := range h.Labs {
				if l.Positive {
					add(KindLab, l.ID)
				}
			}
		case hcx.ReasonContactClose:
			for _, c := range h.Contacts {
				add(KindContact, c.ID)
			}
		case hcx.ReasonSymptoms:
			for _, d := range h.Declarations {
				if len(d.Symptoms) > 0 || d.TempC >= 37.3 {
					add(KindDeclaration, d.ID)
				}
			}
		case hcx.ReasonOrderCDC:
			for _, o := range h.Orders {
				if !o.Lifted {
					add(KindOrder, o.ID)
				}
			}
		case hcx.ReasonTravelRisk:
			for _, s := range pc.Stays {
				if len(s.Areas) > 0 {
					add(KindTravel, s.ID)
				}
			}
		}
	}
	switch {
	case pc.InRiskArea:
		pc.Summary = Text{"近 7 天行程经过当时的风险地区", "a stay of the last 7 days was in a risk area in force at the time",
			"過去 7 日間の滞在に、当時のリスク地域が含まれます", "최근 7일 체류지 중 당시 위험 지역이 있습니다"}
	case len(pc.Stays) == 0:
		pc.Summary = Text{"近 7 天无行程记录", "no stays recorded in the last 7 days", "過去 7 日間の滞在記録はありません", "최근 7일 체류 기록이 없습니다"}
	default:
		pc.Summary = Text{"近 7 天行程未经过当时的风险地区", "no stay of the last 7 days was in a risk area in force at the time",
			"過去 7 日間の滞在に、当時のリスク地域は含まれません", "최근 7일 체류지 중 당시 위험 지역은 없습니다"}
	}
	return pc
}

// DecideAppeal accepts or rejects an appeal with a reason. Accepting a
// colour or record appeal voids the records named (req.Void; a record
// appeal's own record if none), decides the colour again and writes its
// attestation, all in one synced write with the trail entries appeal.decide
// and one record.void per record. Accepting a reclaim is acceptReclaim.
// A decided appeal cannot be decided again (409 appeal_decided).
func (n *Node) DecideAppeal(ctx context.Context, id string, req DecisionRequest) (*AppealDecision, error) {
	entry, err := callerEntry(ctx, ActionAppealDecide, "")
	if err != nil {
		return nil, err
	}
	accept := req.Decision == "accept"
	if !accept && req.Decision != "reject" {
		return nil, hcx.Invalidf("decision", "decision %q: want accept or reject", req.Decision)
	}
	reason, err := checkText("reason", req.Reason, MaxDecisionReason)
	if err != nil {
		return nil, err
	}
	if len(req.Void) > MaxVoid {
		return nil, hcx.Invalidf("void", "a decision voids at most %d records, got %d", MaxVoid, len(req.Void))
	}
	for i := range req.Void {
		if err := checkRecordRef(fmt.Sprintf("void[%d]", i), &req.Void[i]); err != nil {
			return nil, err
		}
	}
	a, err := n.readAppeal(id)
	if err != nil {
		return nil, err
	}
	if len(req.Void) > 0 && (!accept || a.Kind == AppealReclaim) {
		return nil, hcx.Invalidf("void", "only an accepted colour or record appeal voids records")
	}
	sub := a.Subject
	entry.Subject = sub
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if a, err = n.readAppeal(id); err != nil { // again, under the lock
		return nil, err
	}
	if !a.open() {
		return nil, appealDecided(a)
	}
	now := n.cfg.Now().UTC()
	a.Decided, a.DecidedBy, a.Reason = &now, entry.Actor, reason
	if !accept {
		a.Status = AppealRejected
		entry.Note = "appeal " + id + " rejected"
		w := &write{}
		w.record(entry)
		w.del([]byte(pAppealOpen + id))
		if err := w.setJSON(pAppeal+id, a); err != nil {
			return nil, err
		}
		if err := n.write(w); err != nil {
			return nil, err
		}
		return &AppealDecision{Appeal: a.view()}, nil
	}
	a.Status = AppealAccepted
	if a.Kind == AppealReclaim && a.Proof == "desk" && a.FiledBy == entry.Actor {
		// Four eyes: an operator who checked a claimant at the desk does
		// not also grant the claim (threat model, docs/decisions.md).
		return nil, hcx.Errorf(hcx.EForbidden, "same_operator", "you filed this reclaim at the desk; another operator of the province decides it")
	}
	if a.Kind == AppealReclaim {
		return n.acceptReclaim(ctx, entry, a, now)
	}
	void := req.Void
	if len(void) == 0 && a.Record != nil {
		void = []RecordRef{*a.Record}
	}
	rules := n.rules.Load()
	var rec residentRecord
	var st colourState
	var h *history
	err = n.db.View(func(txn *badger.Txn) error {
		if _, err := getJSON(txn, pResident+string(sub), &rec); err != nil {
			return err
		}
		h, err = loadHistoryAndState(txn, sub, &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.ColourBefore = n.status(&st, rec.Registered).Colour
	w := &write{}
	w.record(entry)
	seen := map[RecordRef]bool{}
	for i, r := range void {
		if seen[r] {
			continue
		}
		seen[r] = true
		ev, ok := h.take(r, true)
		if !ok {
			return nil, &hcx.Error{Class: hcx.ENotFound, Code: "unknown_record", Field: fmt.Sprintf("void[%d].id", i),
				Message: fmt.Sprintf("the resident has no %s record with id %q to void", r.Kind, r.ID)}
		}
		a.Voided = append(a.Voided, VoidedRecord{r, *ev})
		ve, err := callerEntry(ctx, ActionRecordVoid, sub)
		if err != nil {
			return nil, err
		}
		ve.Note = r.String() + " voided by appeal " + id
		w.also(ve)
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	w.set(histKey(sub), hb)
	attested, err := n.decide(w, sub, &rec, &st, h.facts(), rules, now)
	if err != nil {
		return nil, err
	}
	status := n.status(&st, rec.Registered)
	a.ColourAfter = status.Colour
	entry.Note = fmt.Sprintf("appeal %s accepted; voided %d; colour %s -> %s", id, len(a.Voided), a.ColourBefore, a.ColourAfter)
	w.del([]byte(pAppealOpen + id))
	if err := w.setJSON(pAppeal+id, a); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	if attested {
		n.pokePublisher()
	}
	combined, err := n.withOthers(sub, status)
	if err != nil {
		return nil, err
	}
	return &AppealDecision{Appeal: a.view(), Status: combined}, nil
}
