package api

import (
	"net/http"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// Travel and risk areas (issue 10, item 4; docs/decisions.md "Issue 10:
// travel and risk areas"): the telecom feed's itineraries, and a province's
// risk areas, designated by its operators and published to the hub.
func (h *nodeHandler) travelRules() []Rule {
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	feed := Grant{Role: auth.RoleFeed, Scope: ScopeProvince}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/itinerary", Priority: PriorityBulk, Allow: []Grant{feed, operator}, Audited: true, Handler: h.itinerary},
		{Method: http.MethodPost, Path: "/v1/risk-areas", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.designateRiskAreas},
		{Method: http.MethodPost, Path: "/v1/risk-areas/end", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.endRiskArea},
		// Risk areas are published by the provinces for everyone to see,
		// as the health-code systems did: no identity, no credential.
		{Method: http.MethodGet, Path: "/v1/risk-areas", Query: []string{"iss", "in_force"}, Priority: PriorityResident,
			Allow: []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}, Handler: h.listRiskAreas},
	}
}

// maxRiskAreasBody fits exchange.MaxRiskAreas areas.
const maxRiskAreasBody = 256 << 10

func (h *nodeHandler) itinerary(w http.ResponseWriter, r *http.Request) {
	var req node.Itinerary
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxJSONBody, &req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	res, err := h.n.IngestItinerary(r.Context(), sub, &req)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

type riskAreasRequest struct {
	Areas []node.RiskAreaInput `json:"areas"`
}

func (h *nodeHandler) designateRiskAreas(w http.ResponseWriter, r *http.Request) {
	var req riskAreasRequest
	if err := DecodeJSON(w, r, maxRiskAreasBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	areas, err := h.n.DesignateRiskAreas(r.Context(), req.Areas)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, map[string]any{"areas": areas})
}

type endRiskAreaRequest struct {
	Div  hcx.DivisionCode `json:"div"`
	From time.Time        `json:"from"`
	To   time.Time        `json:"to,omitzero"`
}

func (h *nodeHandler) endRiskArea(w http.ResponseWriter, r *http.Request) {
	var req endRiskAreaRequest
	err := DecodeJSON(w, r, 4<<10, &req)
	if err == nil && req.Div.Validate() != nil {
		err = hcx.Invalidf("div", "division %q is not a GB/T 2260 (2019) code", req.Div)
	}
	if err == nil && req.From.IsZero() {
		err = hcx.Invalidf("from", "from (RFC 3339) names the designation to end, with div")
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	a, err := h.n.EndRiskArea(r.Context(), req.Div, req.From, req.To)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, a)
}

func (h *nodeHandler) listRiskAreas(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r, "iss", "in_force")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	inForce, err := parseBool(q, "in_force")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	iss := hcx.ProvinceCode(q["iss"])
	if iss != "" && iss.Validate() != nil {
		WriteError(w, h.log, hcx.Invalidf("iss", "%q is not a provincial-level GB/T 2260 code", iss))
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"areas": h.n.RiskAreas(iss, inForce)})
}
