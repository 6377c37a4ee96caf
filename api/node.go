package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

// Node is what the province node's routes need from a node.
type Node interface {
	Province() hcx.ProvinceCode
	Register(ctx context.Context, req node.RegisterRequest) (*node.Resident, error)
	Resident(ctx context.Context, sub hcx.Subject) (*node.Resident, error)
	Ingest(ctx context.Context, sub hcx.Subject, ev node.Event) (*node.Status, error)
	IssueCode(ctx context.Context, sub hcx.Subject, offline bool) (*node.Code, error)
	Verify(ctx context.Context, qr string) (*node.Verification, error)
	Ready() error
	Applied() uint64
	PolicyVersion() string
	WriteMetrics(w io.Writer)
}

var _ Node = (*node.Node)(nil)

// Body limits of the node's routes.
const maxJSONBody = 64 << 10

// NodeOptions configures a node's API beyond the node itself.
type NodeOptions struct {
	// Authn reads callers' credentials; nil serves every caller as
	// anonymous.
	Authn auth.Authenticator
	// StartSession starts a server-side session for p and sets its cookie
	// on w: every login route (passkey, OIDC, enrolment code) ends in it.
	// Nil: logins are refused (503).
	StartSession func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error
	// DeviceIssuer issues a device's certificate when an operator approves
	// its enrolment. Nil: approval answers 503 naming `hcx ca issue --csr`.
	DeviceIssuer DeviceIssuer
}

// NewNodeHandler serves a province node's API. Who may call each route is
// declared in nodeRules.
func NewNodeHandler(n Node, log *slog.Logger, opts NodeOptions) http.Handler {
	h := &nodeHandler{n: n, log: log.With("component", "api", "province", string(n.Province())), opts: opts}
	r := mux.NewRouter()
	g := &gate{authn: opts.Authn, inScope: h.inScope, onError: func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, h.log, err) }}
	g.mount(r, h.rules())
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, h.log, hcx.Errorf(hcx.ENotFound, "no_route", "no route %s %s; see docs/api.md", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, h.log, &hcx.Error{Class: hcx.EInvalid, Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path})
	})
	return r
}

// rules is the node's route table: every route, who may call it, and how
// far each role reaches. Feature files add their own tables here.
func (h *nodeHandler) rules() []Rule {
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	rules := []Rule{
		{Method: http.MethodPost, Path: "/v1/residents", Priority: PriorityOperator, Allow: anyone, Handler: h.register},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}", Priority: PriorityResident, Allow: anyone, Handler: h.resident},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/labs", Priority: PriorityBulk, Allow: anyone, Handler: h.lab},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/contacts", Priority: PriorityBulk, Allow: anyone, Handler: h.contact},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/code", Query: []string{"offline"}, Priority: PriorityResident, Allow: anyone, Handler: h.code},
		{Method: http.MethodPost, Path: "/v1/verify", Priority: PriorityCheckpoint, Allow: anyone, Handler: h.verify},
		{Method: http.MethodGet, Path: "/healthz", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{Method: http.MethodGet, Path: "/readyz", Priority: PriorityOps, Allow: anyone, Handler: h.ready},
		{Method: http.MethodGet, Path: "/metrics", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			h.n.WriteMetrics(w)
		}},
	}
	rules = append(rules, h.devicesRules()...)
	return rules
}

// inScope checks a grant's scope for the node (see Scope).
func (h *nodeHandler) inScope(r *http.Request, p *auth.Principal, s Scope) error {
	switch s {
	case ScopeProvince:
		if p.Province != h.n.Province() {
			return hcx.Errorf(hcx.EForbidden, "other_province", "a %s of %s may not act at %s's node", p.Role, p.Province, h.n.Province())
		}
		return nil
	case ScopeSelf, ScopeSelfOrDependant:
		sub, err := h.subject(r)
		if err != nil {
			return err
		}
		if p.Subject != "" && p.Subject == sub {
			return nil
		}
		// Delegation records come with the guardians' routes.
		return hcx.Errorf(hcx.EForbidden, "not_yours", "this resident is not you, and you hold no delegation for them")
	}
	return hcx.Errorf(hcx.EForbidden, "forbidden_scope", "scope %q is not known to this server", s)
}

type nodeHandler struct {
	n    Node
	log  *slog.Logger
	opts NodeOptions
}

func (h *nodeHandler) subject(r *http.Request) (hcx.Subject, error) {
	return node.ParseSubject(mux.Vars(r)["sub"])
}

func (h *nodeHandler) register(w http.ResponseWriter, r *http.Request) {
	var req node.RegisterRequest
	if err := DecodeJSON(w, r, maxJSONBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	res, err := h.n.Register(r.Context(), req)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, res)
}

func (h *nodeHandler) resident(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	res, err := h.n.Resident(r.Context(), sub)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

// labRequest is a lab result as the bureau's feed posts it.
type labRequest struct {
	Result string    `json:"result"` // "positive" or "negative"
	Kind   string    `json:"kind,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

func (h *nodeHandler) lab(w http.ResponseWriter, r *http.Request) {
	var req labRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxJSONBody, &req)
	}
	if err == nil && req.Result != "positive" && req.Result != "negative" {
		err = hcx.Invalidf("result", "result %q: want positive or negative", req.Result)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	h.ingest(w, r, sub, node.Event{Lab: &policy.LabResult{At: req.At, Positive: req.Result == "positive", Kind: req.Kind}})
}

type contactRequest struct {
	Issuer hcx.ProvinceCode `json:"issuer,omitempty"`
	At     time.Time        `json:"at,omitzero"`
}

func (h *nodeHandler) contact(w http.ResponseWriter, r *http.Request) {
	var req contactRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxJSONBody, &req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	if req.Issuer == "" {
		req.Issuer = h.n.Province()
	}
	if err := req.Issuer.Validate(); err != nil {
		// Name the request's member, not the type's generic field.
		var e *hcx.Error
		if errors.As(err, &e) {
			err = hcx.Invalidf("issuer", "%s", e.Message)
		}
		WriteError(w, h.log, err)
		return
	}
	h.ingest(w, r, sub, node.Event{Contact: &policy.ContactFlag{Issuer: req.Issuer, At: req.At}})
}

func (h *nodeHandler) ingest(w http.ResponseWriter, r *http.Request, sub hcx.Subject, ev node.Event) {
	st, err := h.n.Ingest(r.Context(), sub, ev)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (h *nodeHandler) code(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	q, err := queryParams(r, "offline")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	offline, err := parseBool(q, "offline")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	c, err := h.n.IssueCode(r.Context(), sub, offline)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, c)
}

type verifyRequest struct {
	Code string `json:"code"`
}

func (h *nodeHandler) verify(w http.ResponseWriter, r *http.Request) {
	var req verifyRequest
	if err := DecodeJSON(w, r, 8<<10, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	v, err := h.n.Verify(r.Context(), req.Code)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (h *nodeHandler) ready(w http.ResponseWriter, r *http.Request) {
	if err := h.n.Ready(); err != nil {
		WriteError(w, h.log, hcx.Errorf(hcx.EUnavailable, "not_ready", "%v", err))
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "log_applied": h.n.Applied(), "policy": h.n.PolicyVersion()})
}
