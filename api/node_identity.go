package api

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// Binding identity with proof and delegation (DESIGN.md §8b): an operator
// checks a person in person and hands out a one-time enrolment code; the
// person starts their first session with it and adds passkeys. Operators
// record guardians for dependants; a guardian then reaches a dependant's
// routes through ScopeSelfOrDependant.
func (h *nodeHandler) identityRules() []Rule {
	operator := []Grant{{Role: auth.RoleOperator, Scope: ScopeProvince}}
	operatorOrAuditor := []Grant{operator[0], {Role: auth.RoleAuditor, Scope: ScopeAny}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/enrolments", Priority: PriorityOperator, Allow: operator, Audited: true, Handler: h.issueEnrolment},
		{Method: http.MethodPost, Path: "/v1/auth/enrol", Priority: PriorityResident, Allow: []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}, Handler: h.useEnrolment},
		// The auditor reads everything (DESIGN.md §8b); the read is in the trail like an operator's.
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/identity", Priority: PriorityOperator, Allow: operatorOrAuditor, Audited: true, Action: node.ActionResidentReadIdentity, Handler: h.residentIdentity},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/guardians", Priority: PriorityOperator, Allow: operator, Audited: true, Handler: h.addGuardian},
		{Method: http.MethodDelete, Path: "/v1/residents/{sub}/guardians/{guardian}", Priority: PriorityOperator, Allow: operator, Audited: true, Handler: h.removeGuardian},
		{Method: http.MethodGet, Path: "/v1/me", Priority: PriorityResident, Allow: []Grant{{Role: auth.RoleResident, Scope: ScopeAny}}, Handler: h.me},
	}
}

func (h *nodeHandler) issueEnrolment(w http.ResponseWriter, r *http.Request) {
	var req node.RegisterRequest
	if err := DecodeJSON(w, r, maxJSONBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	e, err := h.n.IssueEnrolment(r.Context(), req)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, e)
}

type enrolRequest struct {
	Code string `json:"code"`
}

func (h *nodeHandler) useEnrolment(w http.ResponseWriter, r *http.Request) {
	var req enrolRequest
	if err := DecodeJSON(w, r, 1<<10, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	if h.opts.StartSession == nil {
		WriteError(w, h.log, hcx.Errorf(hcx.EUnavailable, "sessions_unavailable", "this node does not keep sessions; enrolment is off"))
		return
	}
	sub, err := h.n.UseEnrolment(r.Context(), req.Code)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	p := &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + string(sub), Subject: sub, Method: auth.MethodSession}
	if err := h.opts.StartSession(w, r, p); err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"subject": sub, "next": "add a passkey: POST /v1/auth/passkeys/register/begin"})
}

func (h *nodeHandler) residentIdentity(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	id, err := h.n.ResidentIdentity(r.Context(), sub)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, id)
}

type guardianRequest struct {
	Guardian hcx.Subject `json:"guardian"`
}

func (h *nodeHandler) addGuardian(w http.ResponseWriter, r *http.Request) {
	var req guardianRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, 1<<10, &req)
	}
	if err == nil {
		req.Guardian, err = parseSubjectField("guardian", string(req.Guardian))
	}
	if err == nil {
		err = h.n.AddGuardian(r.Context(), sub, req.Guardian)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, map[string]any{"dependant": sub, "guardian": req.Guardian})
}

func (h *nodeHandler) removeGuardian(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var g hcx.Subject
	if err == nil {
		g, err = parseSubjectField("guardian", mux.Vars(r)["guardian"])
	}
	if err == nil {
		err = h.n.RemoveGuardian(r.Context(), sub, g)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"dependant": sub, "guardian": g, "removed": true})
}

func parseSubjectField(field, s string) (hcx.Subject, error) {
	sub, err := node.ParseSubject(s)
	if err != nil {
		return "", hcx.Invalidf(field, "%q is not a subject (52 characters of base32, lower case)", s)
	}
	return sub, nil
}

// meAnswer is what a resident sees of themselves: masked identity, colour,
// and the dependants they act for.
type meAnswer struct {
	Subject    hcx.Subject   `json:"subject"`
	Name       string        `json:"name"`
	IDTail     string        `json:"id_tail"`
	Colour     hcx.Colour    `json:"colour"`
	Vaccinated bool          `json:"vaccinated"`
	Since      time.Time     `json:"since"`
	Dependants []meDependant `json:"dependants"`
}

type meDependant struct {
	Subject    hcx.Subject `json:"subject"`
	Name       string      `json:"name"`
	IDTail     string      `json:"id_tail"` // two children masked alike are told apart by it
	Colour     hcx.Colour  `json:"colour"`
	Vaccinated bool        `json:"vaccinated"`
}

func (h *nodeHandler) me(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
	if p.Subject == "" {
		WriteError(w, h.log, hcx.Errorf(hcx.EForbidden, "identity_unbound", "this login is not bound to a registered resident; log in with the identity provider or an enrolment code"))
		return
	}
	res, err := h.n.Resident(r.Context(), p.Subject)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	out := meAnswer{Subject: res.Subject, Name: res.MaskedName, IDTail: res.IDTail, Colour: res.Status.Colour, Vaccinated: res.Status.Vaccinated, Since: res.Status.Since, Dependants: []meDependant{}}
	deps, err := h.n.Dependants(r.Context(), p.Subject)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	for _, d := range deps {
		dr, err := h.n.Resident(r.Context(), d)
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
		out.Dependants = append(out.Dependants, meDependant{Subject: d, Name: dr.MaskedName, IDTail: dr.IDTail, Colour: dr.Status.Colour, Vaccinated: dr.Status.Vaccinated})
	}
	WriteJSON(w, http.StatusOK, out)
}
