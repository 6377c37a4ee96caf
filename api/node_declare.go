package api

import (
	"context"
	"net/http"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// maxDeclarationBody bounds a declaration or a check-in: MaxDeclaredStays
// stays and MaxSymptoms symptoms take well under 4 KiB.
const maxDeclarationBody = 8 << 10

// declareRules are the routes of declarations and daily check-ins (issue
// 10, items 2 and 7). A resident declares and checks in for themselves, a
// guardian for a dependant; the province's operators and the auditor read
// declarations, in the trail like every read of them.
func (h *nodeHandler) declareRules() []Rule {
	resident := Grant{Role: auth.RoleResident, Scope: ScopeSelfOrDependant}
	readers := []Grant{resident, {Role: auth.RoleOperator, Scope: ScopeProvince}, {Role: auth.RoleAuditor, Scope: ScopeAny}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/declarations", Priority: PriorityResident, Allow: []Grant{resident}, Audited: true, Handler: h.declare},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/declarations", Priority: PriorityResident, Allow: readers, Audited: true, Action: node.ActionDeclarationRead, Handler: h.declarations},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/checkins", Priority: PriorityResident, Allow: []Grant{resident}, Audited: true, Handler: h.checkIn},
	}
}

func (h *nodeHandler) declare(w http.ResponseWriter, r *http.Request) {
	postStatus(h, w, r, h.n.Declare)
}

func (h *nodeHandler) checkIn(w http.ResponseWriter, r *http.Request) {
	postStatus(h, w, r, h.n.CheckIn)
}

// postStatus decodes a request of type T for the resident the path names,
// hands it to do and answers the status do gives.
func postStatus[T any](h *nodeHandler, w http.ResponseWriter, r *http.Request, do func(context.Context, hcx.Subject, T) (*node.Status, error)) {
	var req T
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxDeclarationBody, &req)
	}
	var st *node.Status
	if err == nil {
		st, err = do(r.Context(), sub, req)
	}
	h.answer(w, st, err)
}

func (h *nodeHandler) declarations(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var out *node.Declarations
	if err == nil {
		out, err = h.n.Declarations(r.Context(), sub)
	}
	h.answer(w, out, err)
}

// answer writes v as 200, or err.
func (h *nodeHandler) answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}
