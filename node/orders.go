package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/policy"
)

// CDC orders with two confirmations (issue 10 item 5; docs/decisions.md,
// "Issue 10: CDC orders"). A province operator, acting for the local
// disease-control authority, orders a colour for a resident: the order
// carries the local confirmation at once. A yellow order is then in force;
// a red one awaits the national platform's confirmation (orders.red_pending
// for the rules) until national platform staff confirm it (orders.red).
// Only lifting ends an order. Each step is a new version of the order in
// the resident's history (the rules read it), re-decided and attested in
// the same synced commit as its audit entry.
//
// Beside the history the node keeps, per order id, who did what and when,
// and the operator's note (SM4-sealed: a note may name people), under
// ord/<id>; and an index of the red orders awaiting national confirmation,
// ordp/<ordered at, 20 digits of unix nanoseconds>/<id> -> subject, which the
// national platform pages through.
const (
	pOrder        = "ord/"
	pOrderPending = "ordp/"
)

// Order states.
const (
	OrderPending = "pending"  // a red order with the local confirmation only
	OrderInForce = "in_force" // a red order confirmed twice, or a yellow order
	OrderLifted  = "lifted"
)

// Audit actions of orders (placing one is ActionOrderPost).
const (
	ActionOrderConfirm     = "order.confirm"
	ActionOrderLift        = "order.lift"
	ActionOrderRead        = "order.read"
	ActionOrderReadPending = "order.read_pending"
)

// Bounds.
const (
	MaxOrderNote     = 500 // characters
	DefaultOrderPage = 50
	MaxOrderPage     = 200

	orderIDRandomBytes      = 8
	orderCursorNanosDigits  = 20
	orderPendingKeyMaxBytes = len(pOrderPending) + orderCursorNanosDigits + 1 + MaxRecordID
)

// OrderStep is one step of an order: when, and who (the audit trail's actor
// and the display name of staff).
type OrderStep struct {
	At       time.Time        `json:"at"`
	By       string           `json:"by"`
	Name     string           `json:"name,omitempty"`
	Role     auth.Role        `json:"role"`
	Province hcx.ProvinceCode `json:"province,omitempty"`
}

// CDCOrder is an order as the routes show it.
type CDCOrder struct {
	ID      string      `json:"id"`
	Subject hcx.Subject `json:"subject"`
	Colour  hcx.Colour  `json:"colour"`
	State   string      `json:"state"`
	Note    string      `json:"note,omitempty"`
	// Ordered is the local confirmation (the operator who placed it),
	// Confirmed the national one, Lifted the end of the order.
	Ordered   OrderStep  `json:"ordered"`
	Confirmed *OrderStep `json:"confirmed,omitempty"`
	Lifted    *OrderStep `json:"lifted,omitempty"`
}

// orderRecord is a CDCOrder at rest: the note sealed.
type orderRecord struct {
	CDCOrder
	Note []byte `json:"note_sealed,omitempty"`
}

// OrderRequest is an operator's order.
type OrderRequest struct {
	// ID names the order; empty: the node makes one (cdc-<province>-<hex>).
	ID     string     `json:"id,omitempty"`
	Colour hcx.Colour `json:"colour"`
	Note   string     `json:"note,omitempty"`
}

// OrderResult is an order after a step, with the resident's status.
type OrderResult struct {
	Order  *CDCOrder `json:"order"`
	Status *Status   `json:"status"`
	// Created is false when an identical order was placed before (the
	// same id, resident, colour and note): nothing was written.
	Created bool `json:"-"`
}

// OrderPage is a page of orders awaiting national confirmation, oldest
// first; Next is the cursor of the next page, empty at the end.
type OrderPage struct {
	Orders []CDCOrder `json:"orders"`
	Next   string     `json:"next,omitempty"`
}

func (o *CDCOrder) state() string {
	switch {
	case o.Lifted != nil:
		return OrderLifted
	case o.Colour == hcx.Red && o.Confirmed == nil:
		return OrderPending
	}
	return OrderInForce
}

// policyOrder is the version of o the rules read.
func (o *CDCOrder) policyOrder() *policy.Order {
	return &policy.Order{ID: o.ID, Colour: o.Colour, At: o.Ordered.At, LocalConfirmed: true,
		NationalConfirmed: o.Confirmed != nil, Lifted: o.Lifted != nil}
}

func orderKey(id string) string { return pOrder + id }

func pendingKey(o *CDCOrder) string {
	return fmt.Sprintf("%s%0*d/%s", pOrderPending, orderCursorNanosDigits, o.Ordered.At.UnixNano(), o.ID)
}

func stepOf(ctx context.Context, now time.Time) *OrderStep {
	p := auth.FromContext(ctx)
	return &OrderStep{At: now, By: p.Actor, Name: p.Name, Role: p.Role, Province: p.Province}
}

// errOrderThroughIngest refuses an order posted as an event: Ingest would
// take its confirmations on trust, bypassing the two confirmations, the
// order's record and the pending index.
func errOrderThroughIngest() error {
	return hcx.Invalidf("order", "orders are placed, confirmed and lifted through POST /v1/residents/{sub}/orders and its confirm and lift routes, which keep both confirmations; not as events")
}

func errUnknownOrder(id string) error {
	return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_order", Field: "id",
		Message: "this resident has no order " + id + "; list their orders with GET /v1/residents/{sub}/orders"}
}

func orderConflict(code, id, format string, args ...any) error {
	return &hcx.Error{Class: hcx.EConflict, Code: code, Field: "id", Message: "order " + id + ": " + fmt.Sprintf(format, args...)}
}

func validOrderNote(note string) error {
	if !utf8.ValidString(note) {
		return hcx.Invalidf("note", "the note is not UTF-8")
	}
	if n := utf8.RuneCountInString(note); n > MaxOrderNote {
		return hcx.Invalidf("note", "the note has %d characters; at most %d", n, MaxOrderNote)
	}
	if i := strings.IndexFunc(note, unicode.IsControl); i >= 0 {
		return hcx.Invalidf("note", "the note has a control character at byte %d; write it on one line", i)
	}
	return nil
}

func (n *Node) newOrderID() (string, error) {
	b := make([]byte, orderIDRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "cdc-" + string(n.cfg.Province) + "-" + hex.EncodeToString(b), nil
}

// PlaceOrder records an operator's order for a resident with its local
// confirmation, re-decides the resident and attests, in one synced commit
// with its audit entry. A red order awaits the national confirmation. An
// identical order placed again (same id, resident, colour and note) answers
// the order as it is and writes nothing; another order under a used id is
// 409 order_exists. It refuses a green order (400 colour), a bad id or note
// (400 naming it), and a resident with maxOrders orders not lifted
// (409 too_many_orders).
func (n *Node) PlaceOrder(ctx context.Context, sub hcx.Subject, req OrderRequest) (*OrderResult, error) {
	entry, err := callerEntry(ctx, ActionOrderPost, sub)
	if err != nil {
		return nil, err
	}
	if req.Colour != hcx.Red && req.Colour != hcx.Yellow {
		return nil, hcx.Invalidf("colour", "an order's colour is red or yellow, not %q; lifting an order is POST .../orders/{id}/lift", req.Colour)
	}
	if err := validOrderNote(req.Note); err != nil {
		return nil, err
	}
	if err := validRecordID("id", req.ID); err != nil {
		return nil, err
	}
	if req.ID == "" {
		if req.ID, err = n.newOrderID(); err != nil {
			return nil, err
		}
	}
	now := n.cfg.Now().UTC()
	o := &CDCOrder{ID: req.ID, Subject: sub, Colour: req.Colour, Note: req.Note, Ordered: *stepOf(ctx, now)}
	o.State = o.state()
	// The order id's lock too: two operators choosing one id for two
	// residents must not both find it free.
	unlock, err := n.holdAll(ctx, sub, hcx.Subject(pOrder+req.ID))
	if err != nil {
		return nil, err
	}
	defer unlock()
	var old *CDCOrder
	res, err := n.orderStep(ctx, sub, req.ID, entry, now, func(prev *CDCOrder, h *history) (*CDCOrder, error) {
		if prev != nil {
			if prev.Subject == sub && prev.Colour == req.Colour && prev.Note == req.Note {
				old = prev
				return nil, nil
			}
			return nil, orderConflict("order_exists", req.ID, "the id is taken by another order; leave id out and the node makes one")
		}
		live := 0
		for _, x := range h.Orders {
			if !x.Lifted {
				live++
			}
		}
		if live >= maxOrders {
			return nil, &hcx.Error{Class: hcx.EConflict, Code: "too_many_orders", Field: "sub",
				Message: fmt.Sprintf("this resident has %d orders not lifted, the most a resident may have; lift one first", live)}
		}
		return o, nil
	})
	if err != nil {
		return nil, err
	}
	if old != nil {
		st, err := n.Resident(ctx, sub)
		if err != nil {
			return nil, err
		}
		return &OrderResult{Order: old, Status: &st.Status}, nil
	}
	return res, nil
}

// ConfirmOrder records the national platform's confirmation of a red order
// (the principal in ctx is national platform staff: the route says who may).
// Confirming an order twice, a lifted order, a yellow order or another
// resident's order is a 4xx naming the id; nothing is written.
func (n *Node) ConfirmOrder(ctx context.Context, sub hcx.Subject, id string) (*OrderResult, error) {
	return n.changeOrder(ctx, sub, id, ActionOrderConfirm, func(o *CDCOrder, now time.Time) error {
		switch {
		case o.Lifted != nil:
			return orderConflict("order_lifted", id, "it was lifted at %s; a lifted order cannot be confirmed", o.Lifted.At.Format(time.RFC3339))
		case o.Colour != hcx.Red:
			return orderConflict("order_not_red", id, "it is a %s order, in force with the local confirmation alone; only red orders are confirmed nationally", o.Colour)
		case o.Confirmed != nil:
			return orderConflict("order_confirmed", id, "the national platform confirmed it at %s already", o.Confirmed.At.Format(time.RFC3339))
		}
		o.Confirmed = stepOf(ctx, now)
		return nil
	})
}

// LiftOrder lifts an order (confirmed or not): it no longer counts. Lifting
// a lifted order or another resident's is a 4xx naming the id.
func (n *Node) LiftOrder(ctx context.Context, sub hcx.Subject, id string) (*OrderResult, error) {
	return n.changeOrder(ctx, sub, id, ActionOrderLift, func(o *CDCOrder, now time.Time) error {
		if o.Lifted != nil {
			return orderConflict("order_lifted", id, "it was lifted at %s already", o.Lifted.At.Format(time.RFC3339))
		}
		o.Lifted = stepOf(ctx, now)
		return nil
	})
}

func (n *Node) changeOrder(ctx context.Context, sub hcx.Subject, id, action string, change func(o *CDCOrder, now time.Time) error) (*OrderResult, error) {
	entry, err := callerEntry(ctx, action, sub)
	if err != nil {
		return nil, err
	}
	if err := validRecordID("id", id); err != nil || id == "" {
		return nil, errUnknownOrder(id)
	}
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := n.cfg.Now().UTC()
	return n.orderStep(ctx, sub, id, entry, now, func(o *CDCOrder, _ *history) (*CDCOrder, error) {
		if o == nil || o.Subject != sub {
			return nil, errUnknownOrder(id)
		}
		if err := change(o, now); err != nil {
			return nil, err
		}
		return o, nil
	})
}

// orderStep reads the resident, their history and order id's record, lets
// step make the order's next version (nil: nothing to write) and writes it
// with the history, the pending index, the re-decision and entry in one
// commit. The caller holds the resident's lock.
func (n *Node) orderStep(ctx context.Context, sub hcx.Subject, id string, entry *AuditEntry, now time.Time,
	step func(prev *CDCOrder, h *history) (*CDCOrder, error)) (*OrderResult, error) {
	rules := n.rules.Load()
	var rec residentRecord
	var st colourState
	var h *history
	var prev *CDCOrder
	err := n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return err
		}
		if !found {
			return notResidentHere(n.cfg.Province)
		}
		if prev, err = n.loadOrder(txn, id); err != nil {
			return err
		}
		h, err = loadHistoryAndState(txn, sub, &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	var wasPending string
	if prev != nil && prev.state() == OrderPending {
		wasPending = pendingKey(prev)
	}
	o, err := step(prev, h)
	if err != nil || o == nil {
		return nil, err
	}
	o.State = o.state()
	w := &write{}
	entry.Note = "order " + o.ID + " " + string(o.Colour) + " " + o.State
	w.record(entry)
	stored := orderRecord{CDCOrder: *o}
	stored.CDCOrder.Note = ""
	if o.Note != "" {
		stored.Note = n.fields.Seal([]byte(o.Note), aad(sub, "order/"+o.ID))
	}
	if err := w.setJSON(orderKey(o.ID), &stored); err != nil {
		return nil, err
	}
	switch {
	case o.State == OrderPending && wasPending == "":
		w.set(pendingKey(o), []byte(sub))
	case o.State != OrderPending && wasPending != "":
		w.del([]byte(wasPending))
	}
	if err := n.recordEvents(w, sub, &rec, &st, h, []Event{{Order: o.policyOrder()}}, rules, now); err != nil {
		return nil, err
	}
	status, err := n.withOthers(sub, n.status(&st, rec.Registered))
	if err != nil {
		return nil, err
	}
	return &OrderResult{Order: o, Status: status, Created: true}, nil
}

// loadOrder reads order id, its note opened; nil if there is none.
func (n *Node) loadOrder(txn *badger.Txn, id string) (*CDCOrder, error) {
	var rec orderRecord
	found, err := getJSON(txn, orderKey(id), &rec)
	if err != nil || !found {
		return nil, err
	}
	o := rec.CDCOrder
	if len(rec.Note) > 0 {
		b, err := n.fields.Open(rec.Note, aad(o.Subject, "order/"+o.ID))
		if err != nil {
			return nil, fmt.Errorf("order %s note: %w", o.ID, err)
		}
		o.Note = string(b)
	}
	o.State = o.state()
	return &o, nil
}

// Orders lists a resident's orders, newest first: those their history keeps
// (at most maxOrders; the oldest lifted ones are dropped first).
func (n *Node) Orders(ctx context.Context, sub hcx.Subject) ([]CDCOrder, error) {
	out := []CDCOrder{}
	err := n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &residentRecord{})
		if err != nil {
			return err
		}
		if !found {
			return notResidentHere(n.cfg.Province)
		}
		h, err := loadHistory(txn, sub)
		if err != nil {
			return err
		}
		for i := len(h.Orders) - 1; i >= 0; i-- {
			o, err := n.loadOrder(txn, h.Orders[i].ID)
			if err != nil {
				return err
			}
			if o != nil && o.Subject == sub {
				out = append(out, *o)
			}
		}
		return nil
	})
	return out, err
}

// PendingOrders pages through the red orders awaiting national
// confirmation at this node, oldest first: limit of them (1 to
// MaxOrderPage) after the cursor after ("" for the first page; a page's
// Next otherwise).
func (n *Node) PendingOrders(ctx context.Context, after string, limit int) (*OrderPage, error) {
	if limit < 1 || limit > MaxOrderPage {
		return nil, hcx.Invalidf("limit", "want 1 to %d orders a page, not %d", MaxOrderPage, limit)
	}
	start := []byte(pOrderPending)
	if after != "" {
		if len(after) > orderPendingKeyMaxBytes || !validCursor(after) {
			return nil, hcx.Invalidf("after", "not a cursor this node gave (a page's next)")
		}
		start = append([]byte(pOrderPending+after), 0) // the first key after it
	}
	page := &OrderPage{Orders: []CDCOrder{}}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOrderPending)})
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(page.Orders) == limit {
				page.Next = strings.TrimPrefix(string(page.Orders[limit-1].cursorKey()), pOrderPending)
				return nil
			}
			_, id, ok := strings.Cut(strings.TrimPrefix(string(key), pOrderPending), "/")
			if !ok {
				return fmt.Errorf("pending order index: bad key %q", key)
			}
			o, err := n.loadOrder(txn, id)
			if err != nil {
				return err
			}
			if o == nil {
				return fmt.Errorf("pending order index names order %s, which is not stored", id)
			}
			page.Orders = append(page.Orders, *o)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

func (o *CDCOrder) cursorKey() []byte { return []byte(pendingKey(o)) }

// validCursor checks the form of a cursor: 20 digits, a slash, a record id.
func validCursor(c string) bool {
	digits, id, ok := strings.Cut(c, "/")
	if !ok || len(digits) != orderCursorNanosDigits || id == "" || validRecordID("after", id) != nil {
		return false
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}
