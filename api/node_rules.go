package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// RulesEditor is what the rules routes need from a node (node.Node): the
// operator pages of issue 16 read, check, explain and publish the
// province's rules through them.
type RulesEditor interface {
	RulesInForce() *node.RulesInForce
	CheckRules(src []byte) (*node.RulesCheck, error)
	ExplainResident(ctx context.Context, req node.ExplainRequest) (*node.RulesExplanation, error)
	PublishRules(ctx context.Context, src []byte, base string) (*node.RulesPublished, error)
}

var _ RulesEditor = (*node.Node)(nil)

// maxRulesJSONBody bounds the JSON requests that carry a rule file: the
// file (node.MaxCandidateRules) escaped in a JSON string grows, mostly by
// its newlines and quotes; the file itself is checked against its own
// bound once decoded.
const maxRulesJSONBody = 2*node.MaxCandidateRules + 4<<10

// explainHorizon bounds `at` of an explanation on either side of now: the
// facts the node keeps reach about a year back.
const explainHorizon = 366 * 24 * time.Hour

// rulesRules are the routes of the province's rules. Reading them is for
// the province's operators and the national auditor; checking, explaining
// and publishing for the operators. Explaining shows a resident's facts and
// publishing changes every resident's colour: both are in the trail, with
// the operator's X-HCX-Reason.
func (h *nodeHandler) rulesRules() []Rule {
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	auditor := Grant{Role: auth.RoleAuditor, Scope: ScopeAny}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/rules", Priority: PriorityOperator, Allow: []Grant{operator, auditor}, Handler: h.rulesInForce},
		{Method: http.MethodPut, Path: "/v1/rules", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.publishRules},
		{Method: http.MethodPost, Path: "/v1/rules/check", Priority: PriorityOperator, Allow: []Grant{operator}, Handler: h.checkRules},
		{Method: http.MethodPost, Path: "/v1/rules/explain", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.explainRules},
	}
}

func (h *nodeHandler) rulesEditor() (RulesEditor, error) {
	e, ok := h.n.(RulesEditor)
	if !ok {
		return nil, hcx.Errorf(hcx.EUnavailable, "no_rules_editor", "this node does not serve its rules")
	}
	return e, nil
}

func (h *nodeHandler) rulesInForce(w http.ResponseWriter, r *http.Request) {
	e, err := h.rulesEditor()
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, e.RulesInForce())
}

// checkRules serves POST /v1/rules/check: the body is a candidate rule
// file as YAML. A candidate that does not load is answered 200 with its
// problems: the check's answer, not a bad request.
func (h *nodeHandler) checkRules(w http.ResponseWriter, r *http.Request) {
	e, err := h.rulesEditor()
	if err == nil {
		err = yamlBody(r)
	}
	var src []byte
	if err == nil {
		src, err = ReadBody(w, r, node.MaxCandidateRules)
	}
	if err == nil && len(src) == 0 {
		err = hcx.Invalidf("body", "the body is empty: send the candidate rule file (YAML)")
	}
	var c *node.RulesCheck
	if err == nil {
		c, err = e.CheckRules(src)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, c)
}

// yamlBody refuses a check whose body is not declared as YAML or text.
func yamlBody(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/yaml" || mt == "text/plain") {
		return nil
	}
	return &hcx.Error{Class: hcx.EInvalid, Code: "unsupported_media_type", Field: "Content-Type",
		Message: fmt.Sprintf("a candidate rule file is application/yaml or text/plain, not %q", clip(ct))}
}

// explainRequest is the body of POST /v1/rules/explain.
type explainRequest struct {
	Subject string `json:"subject"`
	// Rules is a candidate rule file; none: the rules in force.
	Rules *string `json:"rules"`
	// At is RFC 3339; none: now.
	At string `json:"at"`
}

func (h *nodeHandler) explainRules(w http.ResponseWriter, r *http.Request) {
	e, err := h.rulesEditor()
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	var req explainRequest
	if err := DecodeJSON(w, r, maxRulesJSONBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	var nr node.ExplainRequest
	if req.Subject == "" {
		err = hcx.Invalidf("subject", "name the resident: their subject")
	} else if nr.Subject, err = node.ParseSubject(req.Subject); err != nil {
		err = renameField(err, "subject")
	}
	if err == nil && req.Rules != nil {
		nr.Rules, err = candidateField("rules", *req.Rules)
	}
	if err == nil && req.At != "" {
		nr.At, err = time.Parse(time.RFC3339, req.At)
		switch {
		case err != nil:
			err = hcx.Invalidf("at", "%q: want RFC 3339, such as 2026-03-20T12:00:00+08:00", clip(req.At))
		case nr.At.Before(time.Now().Add(-explainHorizon)) || nr.At.After(time.Now().Add(explainHorizon)):
			err = hcx.Invalidf("at", "%s is more than a year from now", req.At)
		}
	}
	var ans *node.RulesExplanation
	if err == nil {
		ans, err = e.ExplainResident(r.Context(), nr)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, ans)
}

// candidateField is a rule file given in the JSON member field: not empty,
// and within node.MaxCandidateRules.
func candidateField(field, s string) ([]byte, error) {
	if s == "" {
		return nil, hcx.Invalidf(field, "the rule file is empty")
	}
	if len(s) > node.MaxCandidateRules {
		return nil, &hcx.Error{Class: hcx.ETooLarge, Code: "too_large", Field: field,
			Message: fmt.Sprintf("the rule file is %d bytes, at most %d", len(s), node.MaxCandidateRules)}
	}
	return []byte(s), nil
}

// renameField is an invalid-input err naming field instead of the field it
// names (a subject validated as the path's "sub" arrives here in the body's
// "subject").
func renameField(err error, field string) error {
	var he *hcx.Error
	if errors.As(err, &he) && he.Class == hcx.EInvalid {
		return hcx.Invalidf(field, "%s", he.Message)
	}
	return err
}

// publishRequest is the body of PUT /v1/rules.
type publishRequest struct {
	Source string `json:"source"`
	// BaseVersion is the version the operator's check and diff were
	// against (the check's in_force).
	BaseVersion string `json:"base_version"`
}

func (h *nodeHandler) publishRules(w http.ResponseWriter, r *http.Request) {
	e, err := h.rulesEditor()
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	var req publishRequest
	if err := DecodeJSON(w, r, maxRulesJSONBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	src, err := candidateField("source", req.Source)
	if err == nil && req.BaseVersion == "" {
		err = hcx.Invalidf("base_version", "name the version your check was against (the check's in_force)")
	}
	var ans *node.RulesPublished
	if err == nil {
		ans, err = e.PublishRules(r.Context(), src, req.BaseVersion)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, ans)
}
