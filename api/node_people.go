package api

import (
	"net/http"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// Proxies under the Tianjin rules (issue 10): a resident registers and holds
// dependants themselves and ends their own delegations. The routes are the
// guardian's own ({sub} is the guardian: scope self), so a guardian cannot
// pass a dependant on to someone else. Switching the person shown is
// GET /v1/me (the guardian and their dependants); a dependant's colour and
// vaccination mark are GET /v1/residents/{sub} and its code, reached
// through ScopeSelfOrDependant.
func (h *nodeHandler) peopleRules() []Rule {
	self := []Grant{{Role: auth.RoleResident, Scope: ScopeSelf}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/dependants", Priority: PriorityResident, Allow: self, Audited: true, Handler: h.registerDependant},
		{Method: http.MethodDelete, Path: "/v1/residents/{sub}/dependants/{dependant}", Priority: PriorityResident, Allow: self, Audited: true, Handler: h.endDependant},
	}
}

func (h *nodeHandler) registerDependant(w http.ResponseWriter, r *http.Request) {
	var req node.DependantRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, 1<<10, &req)
	}
	var out *node.DependantAnswer
	if err == nil {
		out, err = h.n.RegisterDependant(r.Context(), sub, req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, out)
}

func (h *nodeHandler) endDependant(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	dep, err := parseSubjectField("dependant", mux.Vars(r)["dependant"])
	if err == nil {
		err = h.n.RemoveGuardian(r.Context(), dep, sub)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"dependant": dep, "guardian": sub, "removed": true})
}
