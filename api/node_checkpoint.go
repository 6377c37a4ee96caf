package api

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// CheckpointCodes is what the browser checkpoint routes need from a node
// (node.Node; node/checkpointcodes.go).
type CheckpointCodes interface {
	IssueCheckpointCode(ctx context.Context, req node.CheckpointCodeRequest) (*node.CheckpointCode, error)
	UseCheckpointCode(ctx context.Context, code string) (*auth.Principal, error)
	RevokeCheckpointCode(ctx context.Context, id string) (*node.CheckpointCode, error)
	CheckpointCodes(ctx context.Context, before string, limit int) (*node.CheckpointCodePage, error)
}

var _ CheckpointCodes = (*node.Node)(nil)

// checkpointRules are the browser checkpoint sessions (issue 16 item 2): a
// browser cannot hold a checkpoint device's SM2 key, so an operator of the
// province issues a one-time checkpoint code and revokes it (audited), and
// the checkpoint's staff start a session with it, anonymously as with an
// enrolment code (the same priority, so the same per-address rate limit).
// The session's principal is a checkpoint of the province: the gate then
// lets it call /v1/verify and /v1/verify/batch, nothing else.
func (h *nodeHandler) checkpointRules() []Rule {
	operator := []Grant{{Role: auth.RoleOperator, Scope: ScopeProvince}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/checkpoint-codes", Priority: PriorityOperator, Allow: operator, Audited: true, Handler: h.issueCheckpointCode},
		// The operator's page lists them (never a code); the auditor reads
		// everything.
		{Method: http.MethodGet, Path: "/v1/checkpoint-codes", Query: []string{"before", "limit"}, Priority: PriorityOperator, Allow: []Grant{operator[0], {Role: auth.RoleAuditor, Scope: ScopeAny}}, Handler: h.listCheckpointCodes},
		{Method: http.MethodDelete, Path: "/v1/checkpoint-codes/{id}", Priority: PriorityOperator, Allow: operator, Audited: true, Handler: h.revokeCheckpointCode},
		{Method: http.MethodPost, Path: "/v1/auth/checkpoint", Priority: PriorityResident, Allow: []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}, Handler: h.useCheckpointCode},
	}
}

func (h *nodeHandler) checkpointCodes() (CheckpointCodes, error) {
	c, ok := h.n.(CheckpointCodes)
	if !ok {
		return nil, hcx.Errorf(hcx.EUnavailable, "no_checkpoint_codes", "this node keeps no checkpoint codes")
	}
	return c, nil
}

func (h *nodeHandler) issueCheckpointCode(w http.ResponseWriter, r *http.Request) {
	var req node.CheckpointCodeRequest
	c, err := h.checkpointCodes()
	if err == nil {
		err = DecodeJSON(w, r, 1<<10, &req)
	}
	var code *node.CheckpointCode
	if err == nil {
		code, err = c.IssueCheckpointCode(r.Context(), req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, code)
}

func (h *nodeHandler) listCheckpointCodes(w http.ResponseWriter, r *http.Request) {
	c, err := h.checkpointCodes()
	var q map[string]string
	if err == nil {
		q, err = queryParams(r, "before", "limit")
	}
	limit := node.DefaultCheckpointCodePage
	if err == nil {
		limit, err = queryLimit(q, node.DefaultCheckpointCodePage, node.MaxCheckpointCodePage)
	}
	var page *node.CheckpointCodePage
	if err == nil {
		page, err = c.CheckpointCodes(r.Context(), q["before"], limit)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}

func (h *nodeHandler) revokeCheckpointCode(w http.ResponseWriter, r *http.Request) {
	c, err := h.checkpointCodes()
	var code *node.CheckpointCode
	if err == nil {
		code, err = c.RevokeCheckpointCode(r.Context(), mux.Vars(r)["id"])
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, code)
}

func (h *nodeHandler) useCheckpointCode(w http.ResponseWriter, r *http.Request) {
	var req enrolRequest
	c, err := h.checkpointCodes()
	if err == nil {
		err = DecodeJSON(w, r, 1<<10, &req)
	}
	if err == nil && h.opts.StartSession == nil {
		err = hcx.Errorf(hcx.EUnavailable, "sessions_unavailable", "this node does not keep sessions; checkpoint codes are off")
	}
	var p *auth.Principal
	if err == nil {
		p, err = c.UseCheckpointCode(r.Context(), req.Code)
	}
	if err == nil {
		err = h.opts.StartSession(w, r, p)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"role": p.Role, "province": p.Province, "name": p.Name, "next": "verify codes: POST /v1/verify, POST /v1/verify/batch"})
}
