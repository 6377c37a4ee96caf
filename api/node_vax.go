package api

import (
	"net/http"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

// Vaccinations (issue 10, item 3): the province's vaccination registry
// posts doses; a dose for a resident of another province travels through
// the hub to their home node (docs/decisions.md, "Issue 10: vaccinations
// across provinces"). The details are the resident's own, their province's
// operators' and the auditor's: a guardian sees the dependant's mark in
// their code and status, not the doses (Tianjin's rule), so the details
// route is ScopeSelf.
func (h *nodeHandler) vaxRules() []Rule {
	feedOrOperator := []Grant{{Role: auth.RoleFeed, Scope: ScopeProvince}, {Role: auth.RoleOperator, Scope: ScopeProvince}}
	readers := []Grant{{Role: auth.RoleResident, Scope: ScopeSelf}, {Role: auth.RoleOperator, Scope: ScopeProvince}, {Role: auth.RoleAuditor, Scope: ScopeAny}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/vaccinations", Priority: PriorityBulk, Allow: feedOrOperator, Audited: true, Handler: h.postVaccination},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/vaccinations", Priority: PriorityResident, Allow: readers, Audited: true, Action: node.ActionVaccinationRead, Handler: h.getVaccinations},
	}
}

// vaccinationRequest is a dose as the registry's feed posts it.
type vaccinationRequest struct {
	Dose        int       `json:"dose"`
	CourseDoses int       `json:"course_doses,omitempty"` // 0: the product's
	Product     string    `json:"product"`
	At          time.Time `json:"at"`
	ID          string    `json:"id"`
}

// forwardedAnswer is the answer for a dose given here to a resident of
// another province.
type forwardedAnswer struct {
	Forwarded bool   `json:"forwarded"`
	ZH        string `json:"zh"`
	EN        string `json:"en"`
}

func (h *nodeHandler) postVaccination(w http.ResponseWriter, r *http.Request) {
	var req vaccinationRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, 4<<10, &req)
	}
	switch {
	case err != nil:
	case req.Dose == 0:
		err = hcx.Invalidf("dose", "dose is required: the dose's number in the course, 1 to 10")
	case req.Product == "":
		err = hcx.Invalidf("product", "product is required")
	case req.At.IsZero():
		err = hcx.Invalidf("at", "at is required: when the dose was given (RFC 3339)")
	case req.ID == "":
		err = hcx.Invalidf("id", "id is required: the registry's record id, which makes a re-sent dose count once")
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	st, err := h.n.Ingest(r.Context(), sub, node.Event{Vaccination: &policy.Vaccination{
		At: req.At, Dose: req.Dose, CourseDoses: req.CourseDoses, Product: req.Product, ID: req.ID}})
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	if st.Forwarded {
		WriteJSON(w, http.StatusAccepted, forwardedAnswer{Forwarded: true,
			ZH: "此人不是本省登记居民：接种记录已经由交换中心转送其所在省，计入其接种标识。",
			EN: "not a resident registered here: the dose is forwarded through the hub to their home province, where it counts for their vaccination mark."})
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (h *nodeHandler) getVaccinations(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	v, err := h.n.Vaccinations(r.Context(), sub)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}
