package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Venue ("place") codes (issue 11 item 1; docs/decisions.md, "Issue 11:
// venue codes"). A venue manager, a resident logged in as themselves,
// applies for a code per venue; an operator of the province passes or
// fails the application with a reason; a passed venue's code is signed once
// by the province (exchange.IssueVenueCode) and kept, so that every print
// of it is the same; an operator retires a venue, after which its code is
// refused where it is scanned (VenueRetired). No edit, no delete: a wrong
// venue is applied for again and the old one retired.
//
// Keys:
//
//	ven/v/<vid>               -> Venue (JSON)
//	ven/m/<manager>/<vid>     -> nothing: a manager's venues
//	ven/q/<applied, 20 digits of unix nanoseconds>/<vid> -> nothing: under review, oldest first
//	ven/k/<hex SM3 of the venue's identity> -> vid: the live venue (under review or passed) of a
//	                             legal entity, division, category and name: one code per venue
//	ven/c/<id>                -> VenueCategory: categories the operators added
const (
	pVenue         = "ven/v/"
	pVenueManager  = "ven/m/"
	pVenueQueue    = "ven/q/"
	pVenueKey      = "ven/k/"
	pVenueCategory = "ven/c/"
)

// Venue states.
const (
	VenueUnderReview = "under_review"
	VenuePassed      = "passed"
	VenueFailed      = "failed"
	VenueRetired     = "retired"
)

// Audit actions of venues.
const (
	ActionVenueApply       = "venue.apply"
	ActionVenueReview      = "venue.review"
	ActionVenueRetire      = "venue.retire"
	ActionVenueCategoryAdd = "venue.category_add"
)

// Bounds.
const (
	// MaxVenuesPerManager bounds the venues one resident applies for (a
	// taxi company's manager applies for each car).
	MaxVenuesPerManager = 500
	// MaxVenueCategories bounds the categories operators add.
	MaxVenueCategories = 200
	MaxVenueNameChars  = 40 // and at most exchange.MaxVenueName bytes
	MaxVenueUnitChars  = 64
	MaxVenueReason     = 500 // characters
	DefaultVenuePage   = 50
	MaxVenuePage       = 200

	venueIDRandomBytes = 8
	venueCursorDigits  = 20
)

// VenueCategory is a kind of venue with its names. A mobile venue (a taxi,
// a ship) is named by its plate or vessel number and gives its unit.
type VenueCategory struct {
	ID     string `json:"id"`
	Zh     string `json:"zh"`
	En     string `json:"en"`
	Mobile bool   `json:"mobile,omitempty"`
	// Added is set on the categories operators added.
	Added *time.Time `json:"added,omitempty"`
}

// builtinVenueCategories are the categories every province has (Tianjin's
// list of key places).
var builtinVenueCategories = []VenueCategory{
	{ID: "mall", Zh: "商场", En: "Shopping mall"},
	{ID: "supermarket", Zh: "超市", En: "Supermarket"},
	{ID: "market", Zh: "农贸市场", En: "Food market"},
	{ID: "restaurant", Zh: "餐馆", En: "Restaurant"},
	{ID: "hotel", Zh: "宾馆酒店", En: "Hotel"},
	{ID: "hospital", Zh: "医疗机构", En: "Hospital or clinic"},
	{ID: "pharmacy", Zh: "药店", En: "Pharmacy"},
	{ID: "school", Zh: "学校", En: "School"},
	{ID: "office", Zh: "写字楼", En: "Office building"},
	{ID: "factory", Zh: "工厂", En: "Factory"},
	{ID: "residential", Zh: "居民小区", En: "Residential compound"},
	{ID: "government", Zh: "机关单位", En: "Government office"},
	{ID: "bank", Zh: "银行网点", En: "Bank branch"},
	{ID: "entertainment", Zh: "文化娱乐场所", En: "Entertainment venue"},
	{ID: "sports", Zh: "体育场馆", En: "Sports venue"},
	{ID: "religious", Zh: "宗教场所", En: "Place of worship"},
	{ID: "transport-hub", Zh: "交通场站", En: "Station, port or airport"},
	{ID: "bus", Zh: "公交车", En: "Bus", Mobile: true},
	{ID: "taxi", Zh: "出租车", En: "Taxi", Mobile: true},
	{ID: "ship", Zh: "船舶", En: "Ship", Mobile: true},
}

// VenueApplication is what a manager files.
type VenueApplication struct {
	// Name is the venue's name, or a mobile venue's plate or vessel number.
	Name     string           `json:"name"`
	Division hcx.DivisionCode `json:"division"`
	Category string           `json:"category"`
	// USCC is the unified social credit code of the legal entity the venue
	// belongs to (GB 32100).
	USCC string `json:"uscc"`
	// Unit is a mobile venue's operating unit (a taxi company, a shipping
	// line); required for mobile categories.
	Unit string `json:"unit,omitempty"`
}

// VenueStep is an operator's step on a venue: when, who, why.
type VenueStep struct {
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Name     string    `json:"name,omitempty"`
	Decision string    `json:"decision,omitempty"`
	Reason   string    `json:"reason"`
}

// Venue is a venue and its application.
type Venue struct {
	ID       string           `json:"id"`
	Name     string           `json:"name"`
	Division hcx.DivisionCode `json:"division"`
	Category string           `json:"category"`
	Mobile   bool             `json:"mobile,omitempty"`
	Unit     string           `json:"unit,omitempty"`
	USCC     string           `json:"uscc"`
	Manager  hcx.Subject      `json:"manager"`
	State    string           `json:"state"`
	Applied  time.Time        `json:"applied"`
	Reviewed *VenueStep       `json:"reviewed,omitempty"`
	Retired  *VenueStep       `json:"retired,omitempty"`
	// Code is the venue code's QR text, signed when the venue passed.
	Code string `json:"code,omitempty"`
}

// VenueReview is an operator's decision on an application.
type VenueReview struct {
	Decision string `json:"decision"` // passed or failed
	Reason   string `json:"reason"`
}

// VenuePage is a page of venues under review, oldest first; Next is the
// cursor of the next page, empty at the end.
type VenuePage struct {
	Venues []Venue `json:"venues"`
	Next   string  `json:"next,omitempty"`
}

func venueKey(vid string) string { return pVenue + vid }

func venueQueueKey(v *Venue) string {
	return fmt.Sprintf("%s%0*d/%s", pVenueQueue, venueCursorDigits, v.Applied.UnixNano(), v.ID)
}

// venueIdentityKey is the key that makes a venue one: its legal entity,
// division, category and name (spaces and letter case aside).
func venueIdentityKey(v *Venue) string {
	name := strings.ToUpper(strings.Join(strings.Fields(v.Name), " "))
	sum := certs.SM3([]byte(v.USCC + "\x00" + string(v.Division) + "\x00" + v.Category + "\x00" + name))
	return pVenueKey + hex.EncodeToString(sum[:16])
}

func errUnknownVenue(vid string) error {
	return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_venue", Field: "vid",
		Message: "no venue " + clipText(vid, MaxRecordID) + " here; a manager lists their venues with GET /v1/residents/{sub}/venues"}
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// validVenueText checks a one-line text field of at most maxChars
// characters (and maxBytes bytes, 0: no byte bound).
func validVenueText(field, s string, maxChars, maxBytes int, required bool) error {
	if !utf8.ValidString(s) {
		return hcx.Invalidf(field, "%s is not UTF-8", field)
	}
	if strings.TrimSpace(s) != s {
		return hcx.Invalidf(field, "%s starts or ends with spaces", field)
	}
	if s == "" {
		if required {
			return hcx.Invalidf(field, "%s is empty", field)
		}
		return nil
	}
	if n := utf8.RuneCountInString(s); n > maxChars || maxBytes > 0 && len(s) > maxBytes {
		return hcx.Invalidf(field, "%s has %d characters; at most %d", field, n, maxChars)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return hcx.Invalidf(field, "%s has a control character at byte %d; write it on one line", field, i)
	}
	return nil
}

func venueStep(ctx context.Context, now time.Time, decision, reason string) *VenueStep {
	p := auth.FromContext(ctx)
	return &VenueStep{At: now, By: p.Actor, Name: p.Name, Decision: decision, Reason: reason}
}

// VenueCategories lists the categories: the built-in ones, then those the
// operators added, by id.
func (n *Node) VenueCategories(ctx context.Context) ([]VenueCategory, error) {
	out := append([]VenueCategory(nil), builtinVenueCategories...)
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pVenueCategory), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c VenueCategory
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

func (n *Node) venueCategory(txn *badger.Txn, id string) (*VenueCategory, error) {
	for i := range builtinVenueCategories {
		if builtinVenueCategories[i].ID == id {
			c := builtinVenueCategories[i]
			return &c, nil
		}
	}
	if id == "" || len(id) > exchange.MaxVenueCat {
		return nil, nil
	}
	var c VenueCategory
	found, err := getJSON(txn, pVenueCategory+id, &c)
	if err != nil || !found {
		return nil, err
	}
	return &c, nil
}

func validCategoryID(id string) error {
	if id == "" || len(id) > 32 {
		return hcx.Invalidf("id", "a category id is 1 to 32 characters, lower-case letters, digits and '-', such as cinema")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && !(c == '-' && i > 0 && i < len(id)-1) {
			return hcx.Invalidf("id", "category id %q: only lower-case letters, digits and inner '-', such as cinema", id)
		}
	}
	return nil
}

// AddVenueCategory adds a category to the province's list, as the operator
// in ctx. Adding the same category again answers it and writes nothing
// (created false); another category under a used id is 409
// category_exists.
func (n *Node) AddVenueCategory(ctx context.Context, c VenueCategory) (*VenueCategory, bool, error) {
	entry, err := callerEntry(ctx, ActionVenueCategoryAdd, "")
	if err != nil {
		return nil, false, err
	}
	if err := validCategoryID(c.ID); err != nil {
		return nil, false, err
	}
	if err := validVenueText("zh", c.Zh, 20, 0, true); err != nil {
		return nil, false, err
	}
	if err := validVenueText("en", c.En, 40, 0, true); err != nil {
		return nil, false, err
	}
	if c.Added != nil {
		return nil, false, hcx.Invalidf("added", "added is set by the node")
	}
	unlock, err := n.hold(ctx, hcx.Subject(pVenueCategory))
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	var prev *VenueCategory
	count := 0
	err = n.db.View(func(txn *badger.Txn) error {
		if prev, err = n.venueCategory(txn, c.ID); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pVenueCategory)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			count++
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if prev != nil {
		if prev.Zh == c.Zh && prev.En == c.En && prev.Mobile == c.Mobile {
			return prev, false, nil
		}
		return nil, false, &hcx.Error{Class: hcx.EConflict, Code: "category_exists", Field: "id",
			Message: fmt.Sprintf("category %s exists (%s / %s); categories are not edited: choose another id", c.ID, prev.Zh, prev.En)}
	}
	if count >= MaxVenueCategories {
		return nil, false, &hcx.Error{Class: hcx.EConflict, Code: "too_many_categories", Field: "id",
			Message: fmt.Sprintf("operators have added %d categories, the most a province may add; use an existing category", count)}
	}
	now := n.cfg.Now().UTC()
	c.Added = &now
	w := &write{}
	entry.Note = "category " + c.ID
	w.record(entry)
	if err := w.setJSON(pVenueCategory+c.ID, &c); err != nil {
		return nil, false, err
	}
	if err := n.write(w); err != nil {
		return nil, false, err
	}
	return &c, true, nil
}

func (n *Node) newVenueID() (string, error) {
	b := make([]byte, venueIDRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "V" + string(n.cfg.Province) + "-" + hex.EncodeToString(b), nil
}

// errVenueNotByProxy refuses an application by anyone but the manager in
// their own name.
func errVenueNotByProxy() error {
	return &hcx.Error{Class: hcx.EForbidden, Code: "venue_not_by_proxy", Field: "sub",
		Message: "a venue is applied for by its manager, logged in as themselves; a guardian acting for a dependant cannot apply / 场所码须由场所负责人本人申请，代理人不能代为申请"}
}

// ApplyVenue files a manager's application for a venue code, under review.
// The principal in ctx must be the resident sub themselves (not a guardian
// acting for them). Bad input is 400 naming the field; a venue already
// under review or passed (the same legal entity, division, category and
// name) is 409 venue_exists; a manager with MaxVenuesPerManager venues is
// 409 too_many_venues. Nothing is written on any refusal.
func (n *Node) ApplyVenue(ctx context.Context, sub hcx.Subject, a VenueApplication) (*Venue, error) {
	entry, err := callerEntry(ctx, ActionVenueApply, sub)
	if err != nil {
		return nil, err
	}
	if p := auth.FromContext(ctx); p.Role != auth.RoleResident || p.Subject != sub {
		return nil, errVenueNotByProxy()
	}
	if err := validVenueText("name", a.Name, MaxVenueNameChars, exchange.MaxVenueName, true); err != nil {
		return nil, err
	}
	if err := a.Division.Validate(); err != nil {
		return nil, hcx.Invalidf("division", "%s", err.(*hcx.Error).Message)
	}
	if a.Division.Province() != n.cfg.Province {
		return nil, hcx.Invalidf("division", "division %s is not in %s; a venue applies at the node of the province it is in", a.Division, n.cfg.Province)
	}
	if strings.HasSuffix(string(a.Division), "0000") {
		return nil, hcx.Invalidf("division", "division %s is a whole province; give the county or district the venue is in, such as %s0101", a.Division, string(a.Division)[:2])
	}
	if err := hcx.ValidateUSCC("uscc", a.USCC); err != nil {
		return nil, err
	}
	if err := validVenueText("unit", a.Unit, MaxVenueUnitChars, 0, false); err != nil {
		return nil, err
	}
	v := &Venue{Name: a.Name, Division: a.Division, Category: a.Category, Unit: a.Unit, USCC: a.USCC,
		Manager: sub, State: VenueUnderReview}
	idKey := venueIdentityKey(v)
	unlock, err := n.holdAll(ctx, sub, hcx.Subject(idKey))
	if err != nil {
		return nil, err
	}
	defer unlock()
	var cat *VenueCategory
	var live string
	count := 0
	err = n.db.View(func(txn *badger.Txn) error {
		if found, err := getJSON(txn, pResident+string(sub), &residentRecord{}); err != nil || !found {
			if err == nil {
				err = notResidentHere(n.cfg.Province)
			}
			return err
		}
		if cat, err = n.venueCategory(txn, a.Category); err != nil {
			return err
		}
		item, err := txn.Get([]byte(idKey))
		switch {
		case err == nil:
			b, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			live = string(b)
		case err != badger.ErrKeyNotFound:
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pVenueManager + string(sub) + "/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			count++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cat == nil {
		return nil, hcx.Invalidf("category", "%q is not a venue category of %s; GET /v1/venue-categories lists them, and an operator adds one on request", clipText(a.Category, 64), n.cfg.Province)
	}
	v.Mobile = cat.Mobile
	if cat.Mobile && a.Unit == "" {
		return nil, hcx.Invalidf("unit", "a %s (%s) gives its plate or vessel number as the name and its operating unit as unit", cat.En, cat.Zh)
	}
	if live != "" {
		return nil, &hcx.Error{Class: hcx.EConflict, Code: "venue_exists", Field: "name",
			Message: "venue " + live + " of this legal entity, division, category and name is under review or has its code already; one code per venue (a wrong one is retired by an operator, then applied for again)"}
	}
	if count >= MaxVenuesPerManager {
		return nil, &hcx.Error{Class: hcx.EConflict, Code: "too_many_venues", Field: "sub",
			Message: fmt.Sprintf("you manage %d venues, the most one manager may; another manager of the entity applies for more", count)}
	}
	if v.ID, err = n.newVenueID(); err != nil {
		return nil, err
	}
	v.Applied = n.cfg.Now().UTC()
	w := &write{}
	entry.Note = "venue " + v.ID + " " + v.Category + " " + string(v.Division)
	w.record(entry)
	if err := w.setJSON(venueKey(v.ID), v); err != nil {
		return nil, err
	}
	w.set(pVenueManager+string(sub)+"/"+v.ID, nil)
	w.set(venueQueueKey(v), nil)
	w.set(idKey, []byte(v.ID))
	if err := n.write(w); err != nil {
		return nil, err
	}
	return v, nil
}

func (n *Node) loadVenue(txn *badger.Txn, vid string) (*Venue, error) {
	if vid == "" || len(vid) > exchange.MaxVenueID {
		return nil, nil
	}
	var v Venue
	found, err := getJSON(txn, venueKey(vid), &v)
	if err != nil || !found {
		return nil, err
	}
	return &v, nil
}

// Venues lists the venues sub manages, newest first.
func (n *Node) Venues(ctx context.Context, sub hcx.Subject) ([]Venue, error) {
	out := []Venue{}
	err := n.db.View(func(txn *badger.Txn) error {
		if found, err := getJSON(txn, pResident+string(sub), &residentRecord{}); err != nil || !found {
			if err == nil {
				err = notResidentHere(n.cfg.Province)
			}
			return err
		}
		prefix := []byte(pVenueManager + string(sub) + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < MaxVenuesPerManager; it.Next() {
			v, err := n.loadVenue(txn, string(it.Item().Key()[len(prefix):]))
			if err != nil {
				return err
			}
			if v != nil {
				out = append(out, *v)
			}
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Applied.After(out[j].Applied) })
	return out, err
}

// Venue returns venue vid of manager sub (404 unknown_venue if it is
// another manager's).
func (n *Node) Venue(ctx context.Context, sub hcx.Subject, vid string) (*Venue, error) {
	var v *Venue
	err := n.db.View(func(txn *badger.Txn) (err error) { v, err = n.loadVenue(txn, vid); return err })
	if err != nil {
		return nil, err
	}
	if v == nil || v.Manager != sub {
		return nil, errUnknownVenue(vid)
	}
	return v, nil
}

// VenueRetired reports whether venue vid of this province was retired by an
// operator, or never passed (failed, under review, unknown here): a code
// naming it must be refused where it is scanned. The scans package calls it
// for codes whose iss is this node's province.
func (n *Node) VenueRetired(ctx context.Context, vid string) (bool, error) {
	var v *Venue
	err := n.db.View(func(txn *badger.Txn) (err error) { v, err = n.loadVenue(txn, vid); return err })
	if err != nil {
		return false, err
	}
	return v == nil || v.State != VenuePassed, nil
}

// VenuesUnderReview pages through the applications awaiting an operator,
// oldest first, from after (a page's Next).
func (n *Node) VenuesUnderReview(ctx context.Context, after string, limit int) (*VenuePage, error) {
	if limit < 1 || limit > MaxVenuePage {
		limit = DefaultVenuePage
	}
	if len(after) > venueCursorDigits+1+exchange.MaxVenueID || strings.ContainsFunc(after, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, hcx.Invalidf("after", "not a cursor this node gave: pass a page's next as it is")
	}
	page := &VenuePage{Venues: []Venue{}}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pVenueQueue)})
		defer it.Close()
		start := []byte(pVenueQueue + after)
		for it.Seek(start); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			if after != "" && k == pVenueQueue+after {
				continue
			}
			if len(page.Venues) == limit {
				page.Next = strings.TrimPrefix(page.lastKey(), pVenueQueue)
				return nil
			}
			slash := strings.LastIndexByte(k, '/')
			v, err := n.loadVenue(txn, k[slash+1:])
			if err != nil {
				return err
			}
			if v != nil {
				page.Venues = append(page.Venues, *v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

func (p *VenuePage) lastKey() string {
	v := &p.Venues[len(p.Venues)-1]
	return venueQueueKey(v)
}

// ReviewVenue passes or fails an application under review, as the operator
// in ctx, with a reason. Passing signs the venue's code with the province's
// signer. A venue reviewed before is 409 venue_reviewed.
func (n *Node) ReviewVenue(ctx context.Context, vid string, r VenueReview) (*Venue, error) {
	if r.Decision != VenuePassed && r.Decision != VenueFailed {
		return nil, hcx.Invalidf("decision", "decision is passed or failed, not %q", clipText(r.Decision, 32))
	}
	return n.changeVenue(ctx, vid, ActionVenueReview, r.Reason, func(v *Venue, step *VenueStep) error {
		if v.State != VenueUnderReview {
			return &hcx.Error{Class: hcx.EConflict, Code: "venue_reviewed", Field: "vid",
				Message: fmt.Sprintf("venue %s is %s already; a decision is not changed (retire it, and the manager applies again)", v.ID, v.State)}
		}
		step.Decision = r.Decision
		v.Reviewed, v.State = step, r.Decision
		if r.Decision == VenuePassed {
			code, err := exchange.IssueVenueCode(n.cfg.Signer, &exchange.VenueClaims{Iss: n.cfg.Province, VID: v.ID,
				Div: v.Division, Name: v.Name, Cat: v.Category, IssuedAt: step.At.Unix()})
			if err != nil {
				return fmt.Errorf("sign venue code: %w", err)
			}
			v.Code = code
		}
		return nil
	})
}

// RetireVenue retires a venue (under review or passed), as the operator in
// ctx, with a reason: its code is refused from now on, and the venue may be
// applied for again. Retiring a retired or failed venue is 409.
func (n *Node) RetireVenue(ctx context.Context, vid, reason string) (*Venue, error) {
	return n.changeVenue(ctx, vid, ActionVenueRetire, reason, func(v *Venue, step *VenueStep) error {
		if v.State == VenueRetired || v.State == VenueFailed {
			return &hcx.Error{Class: hcx.EConflict, Code: "venue_" + v.State, Field: "vid",
				Message: fmt.Sprintf("venue %s is %s already; there is nothing to retire", v.ID, v.State)}
		}
		v.Retired, v.State = step, VenueRetired
		return nil
	})
}

// changeVenue reads venue vid under its locks, lets change make its next
// state and writes it with the indexes and the audit entry.
func (n *Node) changeVenue(ctx context.Context, vid, action, reason string, change func(v *Venue, step *VenueStep) error) (*Venue, error) {
	var v *Venue
	err := n.db.View(func(txn *badger.Txn) (err error) { v, err = n.loadVenue(txn, vid); return err })
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, errUnknownVenue(vid)
	}
	entry, err := callerEntry(ctx, action, v.Manager)
	if err != nil {
		return nil, err
	}
	if err := validVenueText("reason", reason, MaxVenueReason, 0, true); err != nil {
		return nil, err
	}
	idKey := venueIdentityKey(v)
	unlock, err := n.holdAll(ctx, hcx.Subject(venueKey(vid)), hcx.Subject(idKey))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := n.db.View(func(txn *badger.Txn) (err error) { v, err = n.loadVenue(txn, vid); return err }); err != nil {
		return nil, err
	}
	was := v.State
	queued := venueQueueKey(v)
	if err := change(v, venueStep(ctx, n.cfg.Now().UTC(), "", reason)); err != nil {
		return nil, err
	}
	w := &write{}
	entry.Note = "venue " + v.ID + " " + was + " -> " + v.State
	w.record(entry)
	if err := w.setJSON(venueKey(v.ID), v); err != nil {
		return nil, err
	}
	if was == VenueUnderReview {
		w.del([]byte(queued))
	}
	if v.State == VenueFailed || v.State == VenueRetired {
		w.del([]byte(idKey))
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	return v, nil
}
