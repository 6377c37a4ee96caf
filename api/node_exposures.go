package api

import (
	"net/http"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// exposuresRules are the routes of venue exposures (issue 11 item 3): an
// operator of the province marks one of its venues and a window as an
// exposure site, or withdraws a marking, both in the audit trail; the
// exposures the node knows, of every province, are read by operators, the
// national platform and the auditor. No route names a person.
func (h *nodeHandler) exposuresRules() []Rule {
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	auditor := Grant{Role: auth.RoleAuditor, Scope: ScopeAny}
	national := Grant{Role: auth.RoleNational, Scope: ScopeAny}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/exposures", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.markExposure},
		{Method: http.MethodPost, Path: "/v1/exposures/withdraw", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.withdrawExposure},
		{Method: http.MethodGet, Path: "/v1/exposures", Query: []string{"iss"}, Priority: PriorityOperator, Allow: []Grant{operator, national, auditor}, Handler: h.listExposures},
	}
}

func (h *nodeHandler) markExposure(w http.ResponseWriter, r *http.Request) {
	var in node.ExposureInput
	err := DecodeJSON(w, r, 1<<10, &in)
	var x *node.Exposure
	if err == nil {
		x, err = h.n.MarkExposure(r.Context(), in)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, x)
}

func (h *nodeHandler) withdrawExposure(w http.ResponseWriter, r *http.Request) {
	var in node.ExposureInput
	err := DecodeJSON(w, r, 1<<10, &in)
	if err == nil && in.Level != "" {
		err = hcx.Invalidf("level", "a withdrawal names the venue and window only")
	}
	var x *node.Exposure
	if err == nil {
		x, err = h.n.WithdrawExposure(r.Context(), in)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, x)
}

func (h *nodeHandler) listExposures(w http.ResponseWriter, r *http.Request) {
	xs, err := h.n.Exposures(r.Context(), hcx.ProvinceCode(r.URL.Query().Get("iss")))
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"exposures": xs})
}
