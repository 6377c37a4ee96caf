package node

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/policy"
)

// nationalCtx is national platform staff, saying why.
var nationalCtx = auth.WithRequest(
	auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleNational, Actor: "oidc:https://idp.national#nat-1", Name: "nat-1", Method: auth.MethodBearer}),
	auth.Request{ID: "req-7", Reason: "reviewed the CDC file"})

func openOrdersNode(t *testing.T, residents int) (*Node, []hcx.Subject) {
	t.Helper()
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), time.Now)
	t.Cleanup(func() { n.Close() })
	return n, registerN(t, n, residents)
}

// Bad orders and bad steps are 4xx naming the field and write nothing,
// not even a trail entry.
func TestOrderRefusalsNameTheFieldAndWriteNothing(t *testing.T) {
	n, subs := openOrdersNode(t, 2)
	a, b := subs[0], subs[1]
	red, err := n.PlaceOrder(testCtx, a, OrderRequest{ID: "gd-1", Colour: hcx.Red, Note: "contact of case 17"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.PlaceOrder(testCtx, b, OrderRequest{ID: "gd-2", Colour: hcx.Yellow}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.PlaceOrder(testCtx, b, OrderRequest{ID: "gd-3", Colour: hcx.Red}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.LiftOrder(testCtx, b, "gd-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ConfirmOrder(nationalCtx, a, red.Order.ID); err != nil {
		t.Fatal(err)
	}
	before := n.StoreVersion()
	for _, tc := range []struct {
		name  string
		do    func() error
		class hcx.ErrorCode
		code  string
		field string
	}{
		{"green", func() error { _, err := n.PlaceOrder(testCtx, a, OrderRequest{Colour: hcx.Green}); return err }, hcx.EInvalid, "invalid_colour", "colour"},
		{"no colour", func() error { _, err := n.PlaceOrder(testCtx, a, OrderRequest{}); return err }, hcx.EInvalid, "invalid_colour", "colour"},
		{"long note", func() error {
			_, err := n.PlaceOrder(testCtx, a, OrderRequest{Colour: hcx.Red, Note: strings.Repeat("隔", MaxOrderNote+1)})
			return err
		}, hcx.EInvalid, "invalid_note", "note"},
		{"control in note", func() error {
			_, err := n.PlaceOrder(testCtx, a, OrderRequest{Colour: hcx.Red, Note: "a\nb"})
			return err
		}, hcx.EInvalid, "invalid_note", "note"},
		{"id with a space", func() error { _, err := n.PlaceOrder(testCtx, a, OrderRequest{ID: "a b", Colour: hcx.Red}); return err }, hcx.EInvalid, "invalid_id", "id"},
		{"id taken by another resident", func() error {
			_, err := n.PlaceOrder(testCtx, a, OrderRequest{ID: "gd-2", Colour: hcx.Yellow})
			return err
		}, hcx.EConflict, "order_exists", "id"},
		{"id taken, other colour", func() error {
			_, err := n.PlaceOrder(testCtx, a, OrderRequest{ID: "gd-1", Colour: hcx.Yellow})
			return err
		}, hcx.EConflict, "order_exists", "id"},
		{"unknown resident", func() error {
			_, err := n.PlaceOrder(testCtx, hcx.Subject(strings.Repeat("a", 26)), OrderRequest{Colour: hcx.Red})
			return err
		}, hcx.ENotFound, "unknown_resident", "sub"},
		{"confirm twice", func() error { _, err := n.ConfirmOrder(nationalCtx, a, "gd-1"); return err }, hcx.EConflict, "order_confirmed", "id"},
		{"confirm yellow", func() error { _, err := n.ConfirmOrder(nationalCtx, b, "gd-2"); return err }, hcx.EConflict, "order_not_red", "id"},
		{"confirm lifted", func() error { _, err := n.ConfirmOrder(nationalCtx, b, "gd-3"); return err }, hcx.EConflict, "order_lifted", "id"},
		{"confirm someone else's", func() error { _, err := n.ConfirmOrder(nationalCtx, b, "gd-1"); return err }, hcx.ENotFound, "unknown_order", "id"},
		{"confirm unknown", func() error { _, err := n.ConfirmOrder(nationalCtx, a, "nope"); return err }, hcx.ENotFound, "unknown_order", "id"},
		{"lift lifted", func() error { _, err := n.LiftOrder(testCtx, b, "gd-3"); return err }, hcx.EConflict, "order_lifted", "id"},
		{"lift someone else's", func() error { _, err := n.LiftOrder(testCtx, a, "gd-2"); return err }, hcx.ENotFound, "unknown_order", "id"},
		{"no principal", func() error { _, err := n.LiftOrder(context.Background(), a, "gd-1"); return err }, hcx.EInternal, "no_actor", ""},
		{"an order as an event", func() error {
			_, err := n.Ingest(testCtx, a, Event{Order: &policy.Order{ID: "x", Colour: hcx.Red, LocalConfirmed: true, NationalConfirmed: true}})
			return err
		}, hcx.EInvalid, "invalid_order", "order"},
		{"bad cursor", func() error { _, err := n.PendingOrders(testCtx, "zz", 10); return err }, hcx.EInvalid, "invalid_after", "after"},
	} {
		e := wantErr(t, tc.name, tc.do(), tc.class, tc.code)
		if e.Field != tc.field {
			t.Errorf("%s: field %q, want %q", tc.name, e.Field, tc.field)
		}
	}
	// The same order placed again answers it and writes nothing.
	again, err := n.PlaceOrder(testCtx, b, OrderRequest{ID: "gd-2", Colour: hcx.Yellow})
	if err != nil || again.Created || again.Order.ID != "gd-2" || again.Order.State != OrderInForce {
		t.Fatalf("the same order again: %+v, %v", again, err)
	}
	if n.StoreVersion() != before {
		t.Error("a refused order or step wrote something")
	}
}

// The three steps are in the trail with the actor, the reason and the
// subject; the operator's note is sealed at rest and not in the trail.
func TestOrderStepsAreAuditedAndTheNoteIsSealed(t *testing.T) {
	n, subs := openOrdersNode(t, 1)
	a := subs[0]
	opCtx := auth.WithRequest(testCtx, auth.Request{ID: "req-1", Reason: "CDC file 2026-117"})
	const note = "close contact of 张三 at Tianhe"
	o, err := n.PlaceOrder(opCtx, a, OrderRequest{Colour: hcx.Red, Note: note})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o.Order.ID, "cdc-440000-") || o.Status.Colour != hcx.Yellow {
		t.Errorf("placed: id %q colour %s", o.Order.ID, o.Status.Colour)
	}
	if _, err := n.ConfirmOrder(nationalCtx, a, o.Order.ID); err != nil {
		t.Fatal(err)
	}
	l, err := n.LiftOrder(opCtx, a, o.Order.ID)
	if err != nil {
		t.Fatal(err)
	}
	if l.Order.Ordered.Name != "op-1" || l.Order.Confirmed.Name != "nat-1" || l.Order.Lifted.Role != auth.RoleOperator || l.Order.Note != note {
		t.Errorf("lifted order: %+v", l.Order)
	}
	for _, w := range []struct {
		action, actor, why string
	}{{ActionOrderPost, "oidc:https://idp.test#op-1", "CDC file 2026-117"}, {ActionOrderConfirm, "oidc:https://idp.national#nat-1", "reviewed the CDC file"}, {ActionOrderLift, "oidc:https://idp.test#op-1", "CDC file 2026-117"}} {
		es := trailOf(t, n, w.action)
		if len(es) != 1 || es[0].Actor != w.actor || es[0].Why != w.why || es[0].Subject != a || !strings.Contains(es[0].Note, o.Order.ID) {
			t.Errorf("%s: %+v", w.action, es)
		}
	}
	wantNoIdentityInTrail(t, n, note, "张三")
	err = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if bytes.Contains(v, []byte("Tianhe")) {
				t.Errorf("%s holds the note in clear", it.Item().Key())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// After a restart the order is as it was.
	dir := n.cfg.Dir
	n.Close()
	n = openTestNode(t, newTestPKI(t, "440000"), "440000", dir, time.Now)
	defer n.Close()
	got, err := n.Orders(testCtx, a)
	if err != nil || len(got) != 1 || got[0].State != OrderLifted || got[0].Note != note {
		t.Fatalf("orders after a restart: %+v, %v", got, err)
	}
}

// The pending index pages oldest first and forgets an order once it is
// confirmed or lifted.
func TestPendingOrdersPage(t *testing.T) {
	n, subs := openOrdersNode(t, 3)
	var ids []string
	for i := range 7 {
		o, err := n.PlaceOrder(testCtx, subs[i%3], OrderRequest{ID: fmt.Sprintf("p-%d", i), Colour: hcx.Red})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.Order.ID)
	}
	if _, err := n.PlaceOrder(testCtx, subs[0], OrderRequest{Colour: hcx.Yellow}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.ConfirmOrder(nationalCtx, subs[1], "p-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.LiftOrder(testCtx, subs[2], "p-5"); err != nil {
		t.Fatal(err)
	}
	var got []string
	after, pages := "", 0
	for {
		p, err := n.PendingOrders(testCtx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range p.Orders {
			if o.State != OrderPending {
				t.Errorf("order %s in the pending index is %s", o.ID, o.State)
			}
			got = append(got, o.ID)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	want := []string{"p-0", "p-2", "p-3", "p-4", "p-6"}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages != 3 {
		t.Errorf("pending orders %v in %d pages, want %v in 3", got, pages, want)
	}
	if _, err := n.PendingOrders(testCtx, "", MaxOrderPage+1); err == nil {
		t.Error("a page over the limit was served")
	}
}

// A resident holds at most maxOrders orders not lifted: the history would
// otherwise drop one in force.
func TestTooManyOrdersAreRefusedUntilOneIsLifted(t *testing.T) {
	n, subs := openOrdersNode(t, 1)
	for i := range maxOrders {
		if _, err := n.PlaceOrder(testCtx, subs[0], OrderRequest{ID: fmt.Sprint("o-", i), Colour: hcx.Red}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := n.PlaceOrder(testCtx, subs[0], OrderRequest{Colour: hcx.Red})
	wantErr(t, "one too many", err, hcx.EConflict, "too_many_orders")
	if _, err := n.LiftOrder(testCtx, subs[0], "o-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.PlaceOrder(testCtx, subs[0], OrderRequest{ID: "o-new", Colour: hcx.Red}); err != nil {
		t.Fatal(err)
	}
	got, err := n.Orders(testCtx, subs[0])
	if err != nil || len(got) != maxOrders || got[0].ID != "o-new" {
		t.Fatalf("orders: %d, first %+v, %v", len(got), got[0], err)
	}
}

// Two operators choosing one id for two residents at once: one order wins.
func TestOneOrderIDRacedForTwoResidents(t *testing.T) {
	n, subs := openOrdersNode(t, 8)
	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			_, errs[i] = n.PlaceOrder(testCtx, s, OrderRequest{ID: "shared", Colour: hcx.Red})
		})
	}
	wg.Wait()
	if won := successes(t, errs, "order_exists"); won != 1 {
		t.Fatalf("%d residents got order id shared, want 1", won)
	}
	p, err := n.PendingOrders(testCtx, "", 10)
	if err != nil || len(p.Orders) != 1 {
		t.Fatalf("pending: %+v, %v", p, err)
	}
}
