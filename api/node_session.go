package api

import (
	"net/http"

	"github.com/hcxfed/hcx/auth"
)

// sessionRules are GET /v1/auth/session (issue 16 follow-ups): the role of
// the caller's login, so that the pages show each role only the pages it
// may use. GET /v1/me answers residents alone; an operator, an auditor and
// a checkpoint code's staff are all 403 there. The answer holds no
// identity: the role, and the province of a role bound to one.
func (h *nodeHandler) sessionRules() []Rule {
	holders := []Grant{{Role: auth.RoleResident, Scope: ScopeAny}, {Role: auth.RoleOperator, Scope: ScopeAny}, {Role: auth.RoleAuditor, Scope: ScopeAny}, {Role: auth.RoleNational, Scope: ScopeAny}, {Role: auth.RoleCheckpoint, Scope: ScopeAny}}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/auth/session", Priority: PriorityResident, Allow: holders, Handler: h.session},
	}
}

// sessionAnswer is GET /v1/auth/session's answer.
type sessionAnswer struct {
	Role     auth.Role `json:"role"`
	Province string    `json:"province,omitempty"`
}

func (h *nodeHandler) session(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
	WriteJSON(w, http.StatusOK, sessionAnswer{Role: p.Role, Province: string(p.Province)})
}
