package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// The operator's checkpoint codes (issue 16 follow-ups): an operator
// issues a one-time code for a checkpoint's staff (shown once, on the
// answer to the form: the node keeps only its hash, and a redirect could
// carry it only in the address), lists the codes and revokes one, which
// ends the sessions it started. Through POST, GET and DELETE
// /v1/checkpoint-codes, so the gate and the audit trail decide as for the
// API.
func init() {
	addRoutes(
		route{"GET /app/operator/checkpoints", (*Server).opCheckpoints},
		route{"POST /app/operator/checkpoints", (*Server).opCheckpointIssue},
		route{"POST /app/operator/checkpoints/{id}/revoke", (*Server).opCheckpointRevoke},
	)
	pageFields["operator-checkpoints"] = []string{"name", "unit", "reason", "revoke-reason"}
}

// cpCodesPage is the checkpoint codes page: the code just issued, if any,
// and a page of codes, newest first.
type cpCodesPage struct {
	Issued *node.CheckpointCode
	Codes  []node.CheckpointCode
	Before string // this page's cursor ("" for the newest)
	Next   string // the older page's, if any
}

// cpCodesData reads the page of codes before (a cursor from the API).
func (s *Server) cpCodesData(r *http.Request, before string) (cpCodesPage, error) {
	var list node.CheckpointCodePage
	path := "/v1/checkpoint-codes?limit=" + strconv.Itoa(opPage)
	if before != "" {
		path += "&before=" + url.QueryEscape(before)
	}
	err := s.getJSON(r, path, &list)
	return cpCodesPage{Codes: list.Codes, Before: before, Next: list.Next}, err
}

func (s *Server) opCheckpoints(w http.ResponseWriter, r *http.Request) {
	data, err := s.cpCodesData(r, r.URL.Query().Get("before"))
	if !s.needStaff(w, r, err) {
		return
	}
	s.render(w, r, http.StatusOK, "operator-checkpoints", Page{Who: s.staffWho(r), Data: data})
}

func (s *Server) opCheckpointIssue(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	f := r.PostForm
	var code node.CheckpointCode
	_, err := s.api.Do(withReason(r, f.Get("reason")), http.MethodPost, "/v1/checkpoint-codes",
		node.CheckpointCodeRequest{Name: strings.TrimSpace(f.Get("name")), Unit: strings.TrimSpace(f.Get("unit"))}, &code)
	data, lerr := s.cpCodesData(r, "")
	if err != nil {
		s.showOp(w, r, "operator-checkpoints", data, opField(err, nil))
		return
	}
	if lerr != nil {
		s.formError(w, r, "error", lerr)
		return
	}
	// Shown once, here: the page is no-store, and a reload asks to send
	// the form again rather than show the code.
	data.Issued = &code
	s.render(w, r, http.StatusCreated, "operator-checkpoints", Page{Who: s.staffWho(r), Path: "/app/operator/checkpoints", Data: data})
}

func (s *Server) opCheckpointRevoke(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	_, err := s.api.Do(withReason(r, r.PostForm.Get("reason")), http.MethodDelete, "/v1/checkpoint-codes/"+url.PathEscape(r.PathValue("id")), nil, nil)
	if err != nil {
		data, _ := s.cpCodesData(r, "")
		s.showOp(w, r, "operator-checkpoints", data, opField(err, map[string]string{auth.HeaderReason: "revoke-reason"}))
		return
	}
	redirect(w, r, "/app/operator/checkpoints?done=checkpoint_code_revoked")
}
