package api

import (
	"bytes"
	"context"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// ordersRules are the routes of CDC orders (issue 10 item 5): a province's
// operator, acting for the local disease-control authority, places and
// lifts orders; national platform staff confirm red ones, at any node; the
// operators, national staff and the auditor read them. Every call is in the
// audit trail.
func (h *nodeHandler) ordersRules() []Rule {
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	national := Grant{Role: auth.RoleNational, Scope: ScopeAny}
	auditor := Grant{Role: auth.RoleAuditor, Scope: ScopeAny}
	readers := []Grant{operator, national, auditor}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/orders", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.placeOrder},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/orders", Priority: PriorityOperator, Allow: readers, Audited: true, Action: node.ActionOrderRead, Handler: h.residentOrders},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/orders/{id}/confirm", Priority: PriorityOperator, Allow: []Grant{national}, Audited: true, Handler: h.confirmOrder},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/orders/{id}/lift", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.liftOrder},
		{Method: http.MethodGet, Path: "/v1/orders", Query: []string{"state", "after", "limit"}, Priority: PriorityOperator, Allow: readers, Audited: true, Action: node.ActionOrderReadPending, Handler: h.pendingOrders},
	}
}

func (h *nodeHandler) placeOrder(w http.ResponseWriter, r *http.Request) {
	var req node.OrderRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, 4<<10, &req)
	}
	var res *node.OrderResult
	if err == nil {
		res, err = h.n.PlaceOrder(r.Context(), sub, req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	status := http.StatusOK // the same order placed again
	if res.Created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, res)
}

func (h *nodeHandler) confirmOrder(w http.ResponseWriter, r *http.Request) {
	h.orderStep(w, r, h.n.ConfirmOrder)
}

func (h *nodeHandler) liftOrder(w http.ResponseWriter, r *http.Request) {
	h.orderStep(w, r, h.n.LiftOrder)
}

// orderStep serves a step of an order named by the route: its body is
// empty or {}.
func (h *nodeHandler) orderStep(w http.ResponseWriter, r *http.Request, step func(context.Context, hcx.Subject, string) (*node.OrderResult, error)) {
	sub, err := h.subject(r)
	var b []byte
	if err == nil {
		b, err = ReadBody(w, r, 1<<10)
	}
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		err = decodeObject(b, &struct{}{})
	}
	var res *node.OrderResult
	if err == nil {
		res, err = step(r.Context(), sub, mux.Vars(r)["id"])
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

func (h *nodeHandler) residentOrders(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var orders []node.CDCOrder
	if err == nil {
		orders, err = h.n.Orders(r.Context(), sub)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"subject": sub, "orders": orders})
}

// pendingOrders serves GET /v1/orders?state=pending&after=&limit=: the red
// orders awaiting national confirmation at this node, oldest first.
func (h *nodeHandler) pendingOrders(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r, "state", "after", "limit")
	if err == nil && q["state"] != node.OrderPending {
		err = hcx.Invalidf("state", "%q: want state=pending (the red orders awaiting national confirmation); a resident's orders are at GET /v1/residents/{sub}/orders", clip(q["state"]))
	}
	limit := node.DefaultOrderPage
	if err == nil {
		limit, err = queryLimit(q, node.DefaultOrderPage, node.MaxOrderPage)
	}
	var page *node.OrderPage
	if err == nil {
		page, err = h.n.PendingOrders(r.Context(), q["after"], limit)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}
