package api

import (
	"math"
	"net/http"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// logStatusRules are the route of the node's view of the hub's log (issue
// 16, the auditor's page): the national auditor reads it at every node, an
// operator at their own. It carries no resident's data: sizes, times,
// hashes, witness names and the audit trail's head.
func (h *nodeHandler) logStatusRules() []Rule {
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/log/status", Priority: PriorityOps,
			Allow:   []Grant{{Role: auth.RoleAuditor, Scope: ScopeAny}, {Role: auth.RoleOperator, Scope: ScopeProvince}},
			Handler: h.logStatus},
	}
}

// logStatusAnswer is GET /v1/log/status's answer: the node's view of the
// log and the head of its own audit trail (what an auditor holds it to).
type logStatusAnswer struct {
	node.LogStatus
	Province  string         `json:"province"`
	TrailHead node.AuditHead `json:"audit_head"`
}

func (h *nodeHandler) logStatus(w http.ResponseWriter, r *http.Request) {
	// A page after the newest entry is the trail's head alone.
	page, err := h.n.AuditTrail(r.Context(), math.MaxUint64, 1)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, logStatusAnswer{LogStatus: h.n.LogStatus(), Province: string(h.n.Province()), TrailHead: page.Head})
}
