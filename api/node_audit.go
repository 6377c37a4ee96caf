package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// auditRules are the routes of the operator audit trail: the national
// auditor reads every node's, an operator their own province's. Each entry
// carries its hash and the hash of the one before, so the auditor checks
// the pages join up (node.VerifyAuditRecords) and end at the head.
func (h *nodeHandler) auditRules() []Rule {
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/audit", Query: []string{"after", "limit"}, Priority: PriorityOperator,
			Allow:   []Grant{{Role: auth.RoleAuditor, Scope: ScopeAny}, {Role: auth.RoleOperator, Scope: ScopeProvince}},
			Handler: h.auditTrail},
	}
}

// auditTrail serves GET /v1/audit?after=<seq>&limit=<n>: entries after seq
// after (default 0), oldest first, at most limit (default 100, at most
// 1000), and the trail's head.
func (h *nodeHandler) auditTrail(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r, "after", "limit")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	var after uint64
	if v, ok := q["after"]; ok {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			WriteError(w, h.log, hcx.Invalidf("after", "%q: want the seq of the last entry read, a whole number from 0", clip(v)))
			return
		}
	}
	limit := node.DefaultAuditPage
	if v, ok := q["limit"]; ok {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > node.MaxAuditPage {
			WriteError(w, h.log, hcx.Invalidf("limit", "%q: want a whole number from 1 to %d", clip(v), node.MaxAuditPage))
			return
		}
	}
	page, err := h.n.AuditTrail(r.Context(), after, limit)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}

// auditRead records an audited read (Rule.Audited on a GET) in the node's
// trail, naming the resident of the route's {sub} if it has one.
func (h *nodeHandler) auditRead(ctx context.Context, r *http.Request, action string) error {
	var sub hcx.Subject
	if v, ok := mux.Vars(r)["sub"]; ok {
		s, err := node.ParseSubject(v)
		if err != nil {
			return err
		}
		sub = s
	}
	return h.n.AuditRead(ctx, action, sub, "")
}
