package api

import (
	"net/http"

	"github.com/hcxfed/hcx/auth"
)

// witnessRules are the routes of the node as a witness of the hub's log
// (C2SP tlog-witness, node/witness.go): only hub members, with request
// tokens of their hub certificates, submit checkpoints to cosign.
func (h *nodeHandler) witnessRules() []Rule {
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/witness/add-checkpoint", Priority: PriorityOperator,
			Allow: []Grant{{Role: auth.RoleHub, Scope: ScopeAny}}, Handler: h.witnessAdd},
	}
}

// witnessAdd serves POST /v1/witness/add-checkpoint: 200 with the
// cosignature line, 409 text/x.tlog.size with the witness's size, other
// refusals as the JSON error with tlog-witness's status (witness.ServeAdd).
// The caller named in the witness's conflicts is the hub member's
// certificate name.
func (h *nodeHandler) witnessAdd(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
	h.n.Witness().ServeAdd(w, r, "hub member "+p.Name+" ("+p.Actor+")")
}
