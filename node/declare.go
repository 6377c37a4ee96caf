package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// Declarations and daily check-ins (docs/decisions.md, "Issue 10:
// declarations and check-ins"): what a resident, or a guardian for them,
// says about their own health and travel. Both are events in the
// resident's history that the province's rules read; only the colour they
// lead to leaves the node, in attestations.

// Bounds of a declaration.
const (
	// MaxDeclaredStays bounds the stays of one travel declaration: two
	// divisions a day over the window.
	MaxDeclaredStays = 2 * DeclaredTravelDays
	// DeclaredTravelDays is how far back a travel declaration reaches, in
	// local days before today: the 14 days the itinerary card covers and
	// the rules' travel windows read.
	DeclaredTravelDays = 14
	// MaxListedDeclarations bounds each list GET .../declarations answers.
	MaxListedDeclarations = maxEventsPerClass
)

// ActionDeclarationRead is the trail's name of a read of a resident's
// declarations and check-ins.
const ActionDeclarationRead = "declaration.read"

// declaredPrefix marks the record id of a stay the resident declared (as
// against one a telecom or transport feed sent): "decl-<date>-<div>".
const declaredPrefix = "decl-"

// DeclarationRequest is a health declaration (temperature, symptoms), a
// travel declaration (stays by local date), or both at once. A health
// declaration is present when temp_c or symptoms is given: an empty
// symptom list with no temperature declares "no symptoms".
type DeclarationRequest struct {
	TempC    float64        `json:"temp_c,omitempty"`
	Symptoms []string       `json:"symptoms,omitempty"`
	Travel   []DeclaredStay `json:"travel,omitempty"`
}

// DeclaredStay is one division visited on one local date (YYYY-MM-DD in
// the province's zone).
type DeclaredStay struct {
	Div  hcx.DivisionCode `json:"div"`
	Date string           `json:"date"`
}

// CheckInRequest is a red or yellow resident's daily health check-in: the
// temperature (required) and symptoms, if any.
type CheckInRequest struct {
	TempC    float64  `json:"temp_c,omitempty"`
	Symptoms []string `json:"symptoms,omitempty"`
}

// Declarations is what GET .../declarations answers: the resident's recent
// declarations, declared stays and check-ins, newest first, each list at
// most MaxListedDeclarations long.
type Declarations struct {
	Health   []policy.Declaration `json:"health"`
	Travel   []DeclaredStay       `json:"travel"`
	CheckIns []policy.CheckIn     `json:"checkins"`
}

// CheckInStatus tells a red or yellow resident about their daily check-in.
type CheckInStatus struct {
	// Due: today's check-in (local day in the province's zone) is not made.
	Due bool `json:"due"`
	// Last is the latest check-in, if any.
	Last time.Time `json:"last,omitzero"`
	ZH   string    `json:"zh"`
	EN   string    `json:"en"`
	JA   string    `json:"ja"`
	KO   string    `json:"ko"`
}

// checkInStatus is the check-in part of a status: for a resident this
// node decides red or yellow, nil otherwise.
func (n *Node) checkInStatus(st *colourState) *CheckInStatus {
	if st.Colour != hcx.Red && st.Colour != hcx.Yellow {
		return nil
	}
	loc := n.rules.Load().rs.Location()
	now := n.cfg.Now()
	c := &CheckInStatus{Last: st.CheckedIn, Due: st.CheckedIn.IsZero() || !sameDay(st.CheckedIn, now, loc)}
	if c.Due {
		c.ZH, c.EN = "今日尚未健康打卡，请打卡", "today's health check-in is due: please check in"
		c.JA, c.KO = "本日の健康チェックインがまだです。チェックインしてください", "오늘 건강 체크인을 하지 않았습니다. 체크인해 주세요"
	} else {
		c.ZH, c.EN = "今日已健康打卡", "today's health check-in is done"
		c.JA, c.KO = "本日の健康チェックインは完了しています", "오늘 건강 체크인을 완료했습니다"
	}
	return c
}

func sameDay(a, b time.Time, loc *time.Location) bool {
	ay, am, ad := a.In(loc).Date()
	by, bm, bd := b.In(loc).Date()
	return ay == by && am == bm && ad == bd
}

// nextMidnight is the start of the local day after now's, in loc.
func nextMidnight(now time.Time, loc *time.Location) time.Time {
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// lastCheckIn is the time of the latest check-in in facts, zero if none.
func lastCheckIn(f *policy.Facts) time.Time {
	var t time.Time
	for _, c := range f.CheckIns {
		if c.At.After(t) {
			t = c.At
		}
	}
	return t
}

// validHealth checks a declared or checked-in temperature and symptoms,
// refusing a symptom named twice.
func validHealth(tempC float64, symptoms []string) error {
	if err := validTemp("temp_c", tempC); err != nil {
		return err
	}
	if err := validSymptoms("symptoms", symptoms); err != nil {
		return err
	}
	for i, s := range symptoms {
		if slices.Index(symptoms, s) != i {
			return hcx.Invalidf(fmt.Sprintf("symptoms[%d]", i), "symptom %q is named twice", s)
		}
	}
	return nil
}

// events turns a declaration into events at now, in loc, validating every
// field first: nothing is recorded unless all of it is right.
func (r *DeclarationRequest) events(now time.Time, loc *time.Location) ([]Event, error) {
	health := r.TempC != 0 || r.Symptoms != nil
	if !health && len(r.Travel) == 0 {
		return nil, hcx.Invalidf("declaration", "a declaration gives temp_c and/or symptoms (a health declaration), or travel (stays by date), or both")
	}
	if err := validHealth(r.TempC, r.Symptoms); err != nil {
		return nil, err
	}
	if len(r.Travel) > MaxDeclaredStays {
		return nil, hcx.Invalidf("travel", "at most %d stays in one declaration, got %d", MaxDeclaredStays, len(r.Travel))
	}
	var evs []Event
	if health {
		evs = append(evs, Event{Declaration: &policy.Declaration{At: now, TempC: r.TempC, Symptoms: r.Symptoms}})
	}
	ny, nm, nd := now.In(loc).Date()
	today := time.Date(ny, nm, nd, 0, 0, 0, 0, loc)
	seen := map[DeclaredStay]bool{}
	for i, s := range r.Travel {
		field := fmt.Sprintf("travel[%d]", i)
		if err := s.Div.Validate(); err != nil {
			var e *hcx.Error
			if errors.As(err, &e) {
				err = hcx.Invalidf(field+".div", "%s", e.Message)
			}
			return nil, err
		}
		day, err := time.ParseInLocation("2006-01-02", s.Date, loc)
		if err != nil {
			return nil, hcx.Invalidf(field+".date", "date %q: want a local date such as %s", s.Date, now.In(loc).Format("2006-01-02"))
		}
		switch {
		case day.After(today):
			return nil, hcx.Invalidf(field+".date", "date %s is in the future (today is %s)", s.Date, today.Format("2006-01-02"))
		case day.Before(today.AddDate(0, 0, -DeclaredTravelDays)):
			return nil, hcx.Invalidf(field+".date", "date %s is more than %d days ago: declare the stays of the last %d days", s.Date, DeclaredTravelDays, DeclaredTravelDays)
		}
		if seen[s] {
			return nil, hcx.Invalidf(field, "the stay in %s on %s is declared twice", s.Div, s.Date)
		}
		seen[s] = true
		// A stay of a past day is at its local noon; today's, now.
		at := day.Add(12 * time.Hour)
		if at.After(now) {
			at = now
		}
		evs = append(evs, Event{Travel: &policy.TravelRecord{Div: s.Div, At: at.UTC(),
			ID: declaredPrefix + strings.ReplaceAll(s.Date, "-", "") + "-" + string(s.Div)}})
	}
	return evs, nil
}

// Declare records a resident's health and/or travel declaration, made by
// the resident or a guardian (the principal in ctx, in the audit trail),
// re-decides their colour and, when it changes, attests it. A declared stay
// already known (declared before or sent by a feed: the same division on the
// same local date) is not recorded again. It answers the new status.
func (n *Node) Declare(ctx context.Context, sub hcx.Subject, req DeclarationRequest) (*Status, error) {
	entry, err := callerEntry(ctx, ActionDeclarationPost, sub)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	loc := n.rules.Load().rs.Location()
	evs, err := req.events(now, loc)
	if err != nil {
		return nil, err
	}
	return n.recordOwn(ctx, sub, entry, now, func(h *history, _ *colourState) ([]Event, error) {
		return slices.DeleteFunc(evs, func(ev Event) bool {
			return ev.Travel != nil && h.hasStay(ev.Travel.Div, ev.Travel.At, loc)
		}), nil
	})
}

func (h *history) hasStay(div hcx.DivisionCode, at time.Time, loc *time.Location) bool {
	for _, t := range h.Travel {
		if t.Div == div && sameDay(t.At, at, loc) {
			return true
		}
	}
	return false
}

// CheckIn records a red or yellow resident's daily health check-in (by the
// resident or a guardian). A green resident has nothing to check in for
// (409 nothing_to_check_in). One check-in counts per local day in the
// province's zone: the same check-in sent again that day (a retry) answers
// the status as it is; a different one is 409 checked_in_today.
func (n *Node) CheckIn(ctx context.Context, sub hcx.Subject, req CheckInRequest) (*Status, error) {
	entry, err := callerEntry(ctx, ActionCheckInPost, sub)
	if err != nil {
		return nil, err
	}
	if req.TempC == 0 {
		return nil, hcx.Invalidf("temp_c", "a daily check-in reports today's temperature in °C, such as 36.6")
	}
	if err := validHealth(req.TempC, req.Symptoms); err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	loc := n.rules.Load().rs.Location()
	ci := policy.CheckIn{At: now, TempC: req.TempC, Symptoms: req.Symptoms}
	return n.recordOwn(ctx, sub, entry, now, func(h *history, st *colourState) ([]Event, error) {
		if st.Colour != hcx.Red && st.Colour != hcx.Yellow {
			return nil, &hcx.Error{Class: hcx.EConflict, Code: "nothing_to_check_in",
				Message: "your colour at " + string(n.cfg.Province) + " is green: daily check-ins are for red and yellow residents until they are green / 您在本省为绿码，无需健康打卡"}
		}
		for _, c := range h.CheckIns {
			if !sameDay(c.At, now, loc) {
				continue
			}
			if c.TempC == ci.TempC && slices.Equal(c.Symptoms, ci.Symptoms) {
				return nil, nil // a retry of today's check-in
			}
			return nil, &hcx.Error{Class: hcx.EConflict, Code: "checked_in_today",
				Message: fmt.Sprintf("you checked in today at %s; one check-in a day counts, the next from 00:00 tomorrow / 今日已于 %s 打卡，明日 0 时后可再次打卡",
					c.At.In(loc).Format("15:04 MST"), c.At.In(loc).Format("15:04"))}
		}
		return []Event{{CheckIn: &ci}}, nil
	})
}

// recordOwn records the events pick chooses, under the resident's lock
// with their history and state (pick may refuse: nothing is written), in
// one synced write with entry, re-decides the resident and attests when
// due. When pick chooses nothing the status is answered as it is.
func (n *Node) recordOwn(ctx context.Context, sub hcx.Subject, entry *AuditEntry, now time.Time, pick func(*history, *colourState) ([]Event, error)) (*Status, error) {
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
			return notResidentHere(n.cfg.Province)
		}
		h, err = loadHistoryAndState(txn, sub, &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	evs, err := pick(h, &st)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return n.withOthers(sub, n.status(&st, rec.Registered))
	}
	for i := range evs {
		if err := evs[i].validate(now); err != nil {
			return nil, err
		}
	}
	w := &write{}
	w.record(entry)
	if err := n.recordEvents(w, sub, &rec, &st, h, evs, rules, now); err != nil {
		return nil, err
	}
	return n.withOthers(sub, n.status(&st, rec.Registered))
}

// loadHistoryAndState reads what deciding a resident again starts from:
// their history, and their state into st.
func loadHistoryAndState(txn *badger.Txn, sub hcx.Subject, st *colourState) (*history, error) {
	h, err := loadHistory(txn, sub)
	if err != nil {
		return nil, err
	}
	_, err = getJSON(txn, pState+string(sub), st)
	return h, err
}

// Declarations lists a resident's recent declarations, declared stays and
// check-ins, newest first. Who may read them is the route's (the resident,
// a guardian, the province's operators, the auditor).
func (n *Node) Declarations(ctx context.Context, sub hcx.Subject) (*Declarations, error) {
	var h *history
	err := n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &residentRecord{})
		if err != nil {
			return err
		}
		if !found {
			return ErrUnknownResident
		}
		h, err = loadHistory(txn, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	loc := n.rules.Load().rs.Location()
	out := &Declarations{Health: newestFirst(h.Declarations), CheckIns: newestFirst(h.CheckIns), Travel: []DeclaredStay{}}
	for i := len(h.Travel) - 1; i >= 0 && len(out.Travel) < MaxListedDeclarations; i-- {
		if t := h.Travel[i]; strings.HasPrefix(t.ID, declaredPrefix) {
			out.Travel = append(out.Travel, DeclaredStay{Div: t.Div, Date: t.At.In(loc).Format("2006-01-02")})
		}
	}
	return out, nil
}

func newestFirst[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	if len(out) > MaxListedDeclarations {
		out = out[:MaxListedDeclarations]
	}
	if out == nil {
		out = []T{}
	}
	return out
}
