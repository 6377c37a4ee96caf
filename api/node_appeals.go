package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// Appeals and corrections (issue 10 item 6; docs/decisions.md, "Issue 10:
// appeals and corrections"). A resident or their guardian files an appeal
// against their colour or a record and follows it; an operator of the
// province files one for a 12345 hotline caller, lists the open ones,
// opens one with the evidence and decides it. An identity reclaim is filed
// by the document's owner with their identity provider's ID token, or by an
// operator after an in-person check, and decided like any appeal.
func (h *nodeHandler) appealsRules() []Rule {
	var (
		operator = Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
		resident = Grant{Role: auth.RoleResident, Scope: ScopeSelfOrDependant}
		auditor  = Grant{Role: auth.RoleAuditor, Scope: ScopeAny}
		// A reclaim's owner cannot log in as the resident (that is the
		// point): they prove the document with an ID token, read by the
		// handler, so the grant cannot be narrower than any resident.
		claimant = Grant{Role: auth.RoleResident, Scope: ScopeAny}
	)
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/appeals", Priority: PriorityResident, Allow: []Grant{resident, operator}, Audited: true, Handler: h.fileAppeal},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/appeals", Priority: PriorityResident, Allow: []Grant{resident, operator, auditor}, Handler: h.residentAppeals},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/appeals/{id}", Priority: PriorityResident, Allow: []Grant{resident, operator, auditor}, Handler: h.residentAppeal},
		{Method: http.MethodGet, Path: "/v1/appeals", Query: []string{"after", "limit"}, Priority: PriorityOperator, Allow: []Grant{operator, auditor}, Handler: h.openAppeals},
		{Method: http.MethodPost, Path: "/v1/appeals/{id}/open", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.openAppeal},
		{Method: http.MethodPost, Path: "/v1/appeals/{id}/decision", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.decideAppeal},
		{Method: http.MethodPost, Path: "/v1/reclaims", Priority: PriorityResident, Allow: []Grant{operator, claimant}, Audited: true, Handler: h.fileReclaim},
		{Method: http.MethodGet, Path: "/v1/reclaims/{id}", Priority: PriorityResident, Allow: []Grant{operator, auditor, claimant}, Handler: h.reclaimStatus},
	}
}

func (h *nodeHandler) fileAppeal(w http.ResponseWriter, r *http.Request) {
	var req node.AppealRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, 8<<10, &req)
	}
	var a *node.Appeal
	if err == nil {
		a, err = h.n.FileAppeal(r.Context(), sub, req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, a)
}

// hiddenFrom reports whether a resident's session must not see a: a
// reclaim of their identity that is not accepted. Whoever holds the
// identity's sessions may be the squatter, who is not shown the claimant's
// text or account; the claimant follows it at GET /v1/reclaims/{id}, and
// once it is accepted the owner holds the sessions.
func hiddenFrom(p *auth.Principal, a *node.Appeal) bool {
	return p.Role == auth.RoleResident && a.Kind == node.AppealReclaim && a.Status != node.AppealAccepted
}

func (h *nodeHandler) residentAppeals(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var as []*node.Appeal
	if err == nil {
		as, err = h.n.Appeals(r.Context(), sub)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	p := auth.FromContext(r.Context())
	shown := make([]*node.Appeal, 0, len(as))
	for _, a := range as {
		if !hiddenFrom(p, a) {
			shown = append(shown, a)
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"appeals": shown})
}

func (h *nodeHandler) residentAppeal(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var a *node.Appeal
	if err == nil {
		a, err = h.n.AppealOf(r.Context(), sub, mux.Vars(r)["id"])
	}
	if err == nil && hiddenFrom(auth.FromContext(r.Context()), a) {
		err = &hcx.Error{Class: hcx.ENotFound, Code: "unknown_appeal", Field: "id", Message: "no appeal with this id for this resident at this node"}
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, a)
}

// claimantIdentity reads the verified identity of a resident's bearer ID
// token: what proves a reclaim's claimant (a session proves nothing there).
func (h *nodeHandler) claimantIdentity(r *http.Request) (*auth.VerifiedIdentity, error) {
	p := auth.FromContext(r.Context())
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if p.Method != auth.MethodBearer || !ok || h.opts.OIDC == nil {
		return nil, hcx.Invalidf("Authorization", "a reclaim is proven with your identity provider's ID token (Authorization: Bearer), or in person at an operator's desk / 请使用实名认证登录或到窗口办理")
	}
	return h.opts.OIDC.VerifyIdentity(r.Context(), raw)
}

// reclaimStatus shows a reclaim to the province's operators, the auditor,
// and its claimant: a resident whose ID token's document is the one
// reclaimed (anyone else: 404, as for an id that does not exist).
func (h *nodeHandler) reclaimStatus(w http.ResponseWriter, r *http.Request) {
	var sub hcx.Subject
	if auth.FromContext(r.Context()).Role == auth.RoleResident {
		id, err := h.claimantIdentity(r)
		if err == nil {
			sub, err = h.n.SubjectOf(id.DocType, id.DocNumber)
		}
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
	}
	a, err := h.n.Reclaim(r.Context(), mux.Vars(r)["id"], sub)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, a)
}

func (h *nodeHandler) openAppeals(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r, "after", "limit")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	limit := node.DefaultAppealPage
	if v, ok := q["limit"]; ok {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > node.MaxAppealPage {
			WriteError(w, h.log, hcx.Invalidf("limit", "%q: want a whole number from 1 to %d", clip(v), node.MaxAppealPage))
			return
		}
	}
	page, err := h.n.OpenAppeals(r.Context(), q["after"], limit)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}

func (h *nodeHandler) openAppeal(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		// No body is expected; one that is sent must be an empty object.
		if err := DecodeJSON(w, r, 1<<10, &struct{}{}); err != nil {
			WriteError(w, h.log, err)
			return
		}
	}
	ev, err := h.n.OpenAppeal(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, ev)
}

func (h *nodeHandler) decideAppeal(w http.ResponseWriter, r *http.Request) {
	var req node.DecisionRequest
	err := DecodeJSON(w, r, 8<<10, &req)
	var d *node.AppealDecision
	if err == nil {
		d, err = h.n.DecideAppeal(r.Context(), mux.Vars(r)["id"], req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, d)
}

// fileReclaim files an identity reclaim. An operator files it after an
// in-person check, with the document and name they checked. A resident
// files it with their identity provider's ID token as the bearer
// credential: the document and name are the token's verified ones, and the
// body carries only the text (a session cookie proves nothing here: the
// identity it is bound to is the one in dispute).
func (h *nodeHandler) fileReclaim(w http.ResponseWriter, r *http.Request) {
	var req node.ReclaimRequest
	if err := DecodeJSON(w, r, 8<<10, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	p := auth.FromContext(r.Context())
	proof := node.ReclaimProof{Method: "desk", Actor: p.Actor}
	if p.Role == auth.RoleResident {
		if req.DocType != "" || req.DocNumber != "" || req.Name != "" {
			WriteError(w, h.log, hcx.Invalidf("doc_number", "the document and name come from your ID token; send only the text"))
			return
		}
		id, err := h.claimantIdentity(r)
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
		req.DocType, req.DocNumber, req.Name = id.DocType, id.DocNumber, id.Name
		proof = node.ReclaimProof{Method: "oidc", Actor: p.Actor}
	}
	a, err := h.n.FileReclaim(r.Context(), req, proof)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, a)
}
