package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/node"
)

// orderAnswer is the answer of an order route.
type orderAnswer struct {
	Order  node.CDCOrder `json:"order"`
	Status struct {
		Colour  hcx.Colour `json:"colour"`
		Reasons []struct {
			Code hcx.Reason `json:"code"`
		} `json:"reasons"`
	} `json:"status"`
}

func (a *orderAnswer) reasons() []hcx.Reason {
	var out []hcx.Reason
	for _, r := range a.Status.Reasons {
		out = append(out, r.Code)
	}
	return out
}

// trailHead is the seq of the last entry of a node's audit trail, read
// beside the API (reading it through GET /v1/audit would add nothing, but
// an audited read would).
func trailHead(t *testing.T, n *node.Node) uint64 {
	t.Helper()
	p, err := n.AuditTrail(context.Background(), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return p.Head.Seq
}

// A manual red in Guangdong, through HTTP with real OIDC tokens: the
// operator's order alone is what Guangdong's rules say for a pending red
// (yellow, order.pending) and means nothing in Beijing; the national
// platform's confirmation turns it red, attested, so a checkpoint of
// Sichuan sees red; lifting it releases the resident. Who may do what is
// enforced on the way, and every step is in the trail.
func TestCDCOrderNeedsTwoConfirmationsAndIsLifted(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd, bj, sc hcx.ProvinceCode = "440000", "110000", "510000"
	hc := f.client()
	op, opBJ, nat, aud := f.asOperator(t, gd), f.asOperator(t, bj), f.asPerson(t, devidp.NationalName), f.asPerson(t, devidp.AuditorName)
	id17 := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, resident := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id17("44010619900307002"), "name": "张三"})
	other, _ := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id17("44010619800101001"), "name": "李四"})
	subBJ, _ := f.asResident(t, bj, map[string]string{"doc_type": "CN-ID", "doc_number": id17("11010519850101002"), "name": "王芳"})
	gdURL := f.NodeURLs[gd]
	orders := gdURL + "/v1/residents/" + string(sub) + "/orders"

	// The code is taken while green: red at Sichuan can then only come
	// from Guangdong's attestation through the hub.
	var code struct {
		Code   string     `json:"code"`
		Colour hcx.Colour `json:"colour"`
	}
	if st := callAs(t, hc, resident, "GET", gdURL+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK || code.Colour != hcx.Green {
		t.Fatalf("code: %d %s", st, code.Colour)
	}

	// Who may not order: national staff, the auditor, another province's
	// operator, the resident.
	body := map[string]string{"colour": "red", "note": "close contact of cluster GZ-17, isolate at home"}
	for _, who := range []caller{nat, aud, f.asOperator(t, sc), resident} {
		if a := sendJSON(t, hc, who, "POST", orders, body); a.status != http.StatusForbidden {
			t.Errorf("%s orders: %d %s, want 403", who.name, a.status, a.code)
		}
	}

	// The operator's red order: local confirmation only.
	var placed orderAnswer
	if st := callAs(t, hc, op, "POST", orders, body, &placed); st != http.StatusCreated {
		t.Fatalf("place the order: status %d", st)
	}
	id := placed.Order.ID
	if placed.Order.State != node.OrderPending || placed.Order.Colour != hcx.Red || placed.Order.Ordered.Province != gd || placed.Order.Confirmed != nil || placed.Order.Note != body["note"] {
		t.Errorf("placed order = %+v", placed.Order)
	}
	if placed.Status.Colour != hcx.Yellow || !slices.Contains(placed.reasons(), hcx.Reason("order.pending")) {
		t.Errorf("Guangdong with a pending red order: %s %v, want yellow order.pending", placed.Status.Colour, placed.reasons())
	}
	// Beijing's rules give a pending red order no effect.
	var placedBJ orderAnswer
	if st := callAs(t, hc, opBJ, "POST", f.NodeURLs[bj]+"/v1/residents/"+string(subBJ)+"/orders", map[string]string{"colour": "red"}, &placedBJ); st != http.StatusCreated {
		t.Fatalf("place Beijing's order: status %d", st)
	}
	if placedBJ.Status.Colour != hcx.Green || placedBJ.Order.State != node.OrderPending {
		t.Errorf("Beijing with a pending red order: %s (%s), want green", placedBJ.Status.Colour, placedBJ.Order.State)
	}

	// The pending index: national staff, the operator and the auditor see
	// the order; an operator of another province may not look at
	// Guangdong's.
	for _, who := range []caller{nat, op, aud} {
		var page node.OrderPage
		if st := callAs(t, hc, who, "GET", gdURL+"/v1/orders?state=pending", nil, &page); st != http.StatusOK {
			t.Fatalf("%s lists pending orders: %d", who.name, st)
		}
		if len(page.Orders) != 1 || page.Orders[0].ID != id || page.Orders[0].Subject != sub {
			t.Errorf("%s: pending orders = %+v", who.name, page.Orders)
		}
	}
	if a := sendJSON(t, hc, opBJ, "GET", gdURL+"/v1/orders?state=pending", nil); a.status != http.StatusForbidden {
		t.Errorf("Beijing's operator lists Guangdong's pending orders: %d", a.status)
	}

	// Who may not confirm: the operator (the local CDC confirmed it by
	// ordering), the auditor, the resident. Nothing changes.
	confirm := orders + "/" + id + "/confirm"
	for _, who := range []caller{op, aud, resident} {
		if a := sendJSON(t, hc, who, "POST", confirm, nil); a.status != http.StatusForbidden || a.code != "forbidden_role" {
			t.Errorf("%s confirms: %d %s, want 403 forbidden_role", who.name, a.status, a.code)
		}
	}
	// Bad steps: each a 4xx naming the field, nothing written.
	var yellow orderAnswer
	if st := callAs(t, hc, op, "POST", gdURL+"/v1/residents/"+string(other)+"/orders", map[string]string{"id": "gd-yellow-1", "colour": "yellow"}, &yellow); st != http.StatusCreated || yellow.Order.State != node.OrderInForce {
		t.Fatalf("a yellow order: %d %s, want 201 in force", st, yellow.Order.State)
	}
	// A yellow order needs the local confirmation only; Beijing's rules
	// make it yellow (Guangdong's have no rule for yellow orders).
	var yellowBJ orderAnswer
	if st := callAs(t, hc, opBJ, "POST", f.NodeURLs[bj]+"/v1/residents/"+string(subBJ)+"/orders", map[string]string{"colour": "yellow"}, &yellowBJ); st != http.StatusCreated || yellowBJ.Status.Colour != hcx.Yellow || yellowBJ.Order.State != node.OrderInForce {
		t.Errorf("a yellow order in Beijing: %d %s %s, want 201 yellow in force", st, yellowBJ.Status.Colour, yellowBJ.Order.State)
	}
	// National staff say why, like operators.
	natNoReason := caller{name: "national staff without a reason", sign: func(t testing.TB, req *http.Request, b []byte) {
		nat.sign(t, req, b)
		req.Header.Del(auth.HeaderReason)
	}}
	before := trailHead(t, f.Nodes[gd])
	for _, tc := range []struct {
		name        string
		who         caller
		method, url string
		body        any
		status      int
		code, field string
	}{
		{"a green order", op, "POST", orders, map[string]string{"colour": "green"}, 400, "invalid_colour", "colour"},
		{"an unknown member", op, "POST", orders, map[string]string{"colour": "red", "reason": "x"}, 400, "bad_json", "reason"},
		{"the id of another resident's order", op, "POST", orders, map[string]string{"id": "gd-yellow-1", "colour": "yellow"}, 409, "order_exists", "id"},
		{"confirming someone else's order id", nat, "POST", orders + "/gd-yellow-1/confirm", nil, 404, "unknown_order", "id"},
		{"confirming an unknown order", nat, "POST", orders + "/no-such-order/confirm", nil, 404, "unknown_order", "id"},
		{"confirming a yellow order", nat, "POST", gdURL + "/v1/residents/" + string(other) + "/orders/gd-yellow-1/confirm", nil, 409, "order_not_red", "id"},
		{"lifting someone else's order", op, "POST", gdURL + "/v1/residents/" + string(other) + "/orders/" + id + "/lift", nil, 404, "unknown_order", "id"},
		{"confirming without a reason", natNoReason, "POST", confirm, nil, 400, "reason_required", auth.HeaderReason},
		{"a listing of another state", nat, "GET", gdURL + "/v1/orders?state=lifted", nil, 400, "invalid_state", "state"},
	} {
		var b []byte
		if tc.body != nil {
			b, _ = json.Marshal(tc.body)
		}
		a := send(t, hc, tc.who, tc.method, tc.url, string(b), nil)
		if a.status != tc.status || a.code != tc.code || a.field != tc.field {
			t.Errorf("%s: %d %s field %q, want %d %s field %q (%s)", tc.name, a.status, a.code, a.field, tc.status, tc.code, tc.field, a.body)
		}
	}
	// The listing read is audited: one entry, nothing else.
	if got := trailHead(t, f.Nodes[gd]); got != before+1 {
		t.Errorf("the refused steps wrote %d trail entries, want 1 (the audited listing)", got-before)
	}

	// The national confirmation: red, attested, seen red in Sichuan.
	var confirmed orderAnswer
	posted := time.Now()
	if st := callAs(t, hc, nat, "POST", confirm, nil, &confirmed); st != http.StatusOK {
		t.Fatalf("confirm: status %d", st)
	}
	if confirmed.Status.Colour != hcx.Red || !slices.Contains(confirmed.reasons(), hcx.ReasonOrderCDC) || confirmed.Order.State != node.OrderInForce || confirmed.Order.Confirmed == nil || confirmed.Order.Confirmed.Role != "national" {
		t.Errorf("confirmed: %s %v %+v", confirmed.Status.Colour, confirmed.reasons(), confirmed.Order)
	}
	if a := sendJSON(t, hc, nat, "POST", confirm, nil); a.status != http.StatusConflict || a.code != "order_confirmed" || a.field != "id" {
		t.Errorf("confirming twice: %d %s %s", a.status, a.code, a.field)
	}
	waitColourAt(t, f, sc, code.Code, hcx.Red, posted)
	var page node.OrderPage
	if st := callAs(t, hc, nat, "GET", gdURL+"/v1/orders?state=pending", nil, &page); st != http.StatusOK || len(page.Orders) != 0 {
		t.Errorf("pending after the confirmation: %d %+v", st, page.Orders)
	}

	// The auditor reads the resident's orders and may not lift.
	var list struct {
		Orders []node.CDCOrder `json:"orders"`
	}
	if st := callAs(t, hc, aud, "GET", orders, nil, &list); st != http.StatusOK || len(list.Orders) != 1 || list.Orders[0].State != node.OrderInForce {
		t.Errorf("the auditor reads the orders: %d %+v", st, list.Orders)
	}
	lift := orders + "/" + id + "/lift"
	for _, who := range []caller{aud, nat} {
		if a := sendJSON(t, hc, who, "POST", lift, nil); a.status != http.StatusForbidden {
			t.Errorf("%s lifts: %d", who.name, a.status)
		}
	}
	var lifted orderAnswer
	posted = time.Now()
	if st := callAs(t, hc, op, "POST", lift, nil, &lifted); st != http.StatusOK || lifted.Order.State != node.OrderLifted || lifted.Status.Colour == hcx.Red {
		t.Fatalf("lift: %d %s %s", st, lifted.Order.State, lifted.Status.Colour)
	}
	if lifted.Status.Colour != hcx.Green {
		t.Errorf("after lifting the only order: %s %v, want green", lifted.Status.Colour, lifted.reasons())
	}
	if a := sendJSON(t, hc, op, "POST", lift, nil); a.status != http.StatusConflict || a.code != "order_lifted" || a.field != "id" {
		t.Errorf("lifting twice: %d %s %s", a.status, a.code, a.field)
	}
	if a := sendJSON(t, hc, nat, "POST", confirm, nil); a.status != http.StatusConflict || a.code != "order_lifted" {
		t.Errorf("confirming a lifted order: %d %s", a.status, a.code)
	}
	waitColourAt(t, f, sc, code.Code, hcx.Green, posted)

	// The trail, read as the auditor: each step with its actor, reason and
	// subject; the note is not in it.
	var trail struct {
		Entries []node.AuditRecord `json:"entries"`
	}
	if st := callAs(t, hc, aud, "GET", gdURL+"/v1/audit?limit=1000", nil, &trail); st != http.StatusOK {
		t.Fatalf("audit: %d", st)
	}
	want := map[string]string{node.ActionOrderPost: "op-440000", node.ActionOrderConfirm: devidp.NationalName, node.ActionOrderLift: "op-440000"}
	seen := map[string]int{}
	for _, e := range trail.Entries {
		if strings.Contains(e.Note, body["note"]) || strings.Contains(e.Why, "GZ-17") {
			t.Errorf("the trail carries the order's note: %+v", e)
		}
		who, ok := want[e.Action]
		if !ok || e.Subject != sub {
			continue
		}
		seen[e.Action]++
		if !strings.HasSuffix(e.Actor, "#"+who) || e.Why != "end-to-end test" || !strings.Contains(e.Note, id) {
			t.Errorf("%s entry: actor %q why %q note %q", e.Action, e.Actor, e.Why, e.Note)
		}
	}
	for a := range want {
		if seen[a] != 1 {
			t.Errorf("%d %s entries about the resident, want 1", seen[a], a)
		}
	}
}

// sendJSON sends body (nil: none) as who.
func sendJSON(t *testing.T, hc *http.Client, who caller, method, url string, body any) answer {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	return send(t, hc, who, method, url, string(b), nil)
}

// waitColourAt waits until province p's checkpoint sees code as colour.
func waitColourAt(t *testing.T, f *federation, p hcx.ProvinceCode, code string, colour hcx.Colour, since time.Time) {
	t.Helper()
	waitReady(t, f.NodeURLs[p])
	for {
		var v node.Verification
		if st := callAs(t, f.client(), f.asCheckpoint(p), "POST", f.NodeURLs[p]+"/v1/verify", map[string]string{"code": code}, &v); st != http.StatusOK {
			t.Fatalf("verify at %s: status %d", p, st)
		}
		if v.Colour == colour {
			t.Logf("%s sees %s %v after the step", p, colour, time.Since(since))
			return
		}
		if time.Since(since) > 5*time.Second {
			t.Fatalf("verify at %s still answers %s 5 s after the step, want %s", p, v.Colour, colour)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
