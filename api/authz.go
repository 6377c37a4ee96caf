package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// Who may do what is declared here, in one table per server, next to the
// routes (NewNodeHandler, NewHubHandler): each Rule names a route, the roles
// that may call it and, per role, how far that role reaches (Scope). The
// middleware built by mount authenticates the caller, checks the table and
// only then calls the handler; handlers never decide access themselves. The
// matrix test drives every rule with every role and renders docs/authz.md.

// Scope narrows a role's grant on a route.
type Scope string

// Scopes.
const (
	// ScopeAny: every authenticated caller of the role (or anyone, for
	// RoleAnonymous).
	ScopeAny Scope = "any"
	// ScopeProvince: the caller's province is this server's province.
	ScopeProvince Scope = "province"
	// ScopeSelf: a resident acting on their own {sub}.
	ScopeSelf Scope = "self"
	// ScopeSelfOrDependant: a resident acting on their own {sub}, or a
	// guardian on a dependant's through a delegation record.
	ScopeSelfOrDependant Scope = "self-or-dependant"
)

// Grant lets one role call a route within a scope.
type Grant struct {
	Role  auth.Role
	Scope Scope
}

// Priority is a route's load-shedding class: under overload, lower classes
// are refused first.
type Priority int

// Priorities, highest first.
const (
	PriorityCheckpoint Priority = iota // verifying codes at checkpoints
	PriorityResident                   // residents' own requests, declarations
	PriorityOperator                   // operators' single writes and reads
	PriorityBulk                       // single feed records, long reads
	// PriorityFeed is the bulk feeds' own class: each request may hold up
	// to MaxFeedBody of body while its token is checked and its lines
	// parsed, so few run at once (memory is bounded by the class).
	PriorityFeed
	PriorityOps // health checks and metrics: never shed
)

// Rule is one route and who may call it.
type Rule struct {
	Method string // GET, POST, DELETE…
	Path   string // a gorilla/mux template, such as /v1/residents/{sub}
	// Query lists the query parameters the route accepts; any other is a
	// 400 naming it.
	Query    []string
	Priority Priority
	Allow    []Grant
	// Audited marks a route whose every call is written to the operator
	// audit trail (writes by operators and feeds, and reads of identity).
	// A write's entry is written by the node in the same transaction as
	// the write; for a read (GET) the gate records Action before the
	// handler runs, and refuses the request if it cannot. An operator
	// calling an audited route must say why (X-HCX-Reason), and so must
	// national platform staff.
	Audited bool
	// Action names an audited read in the trail, such as
	// "resident.read_identity"; empty: derived from the path.
	Action  string
	Handler http.HandlerFunc
}

// action is the trail's name of an audited read of rule: its Action, or
// "read." and the path's fixed segments after /v1, dotted.
func (rule *Rule) action() string {
	if rule.Action != "" {
		return rule.Action
	}
	a := "read"
	for _, seg := range strings.Split(strings.TrimPrefix(rule.Path, "/v1"), "/") {
		if seg == "" || strings.HasPrefix(seg, "{") {
			continue
		}
		a += "." + strings.ReplaceAll(strings.ToLower(seg), "-", "_")
	}
	return a
}

// scopeChecker decides whether principal p may reach the resource a request
// names within scope s. Each server supplies its own (a node knows its
// province and its delegation records; the hub has no residents).
type scopeChecker func(r *http.Request, p *auth.Principal, s Scope) error

// allowed finds the grant of p's role on rule, nil if none.
func (rule *Rule) grantFor(role auth.Role) *Grant {
	for i := range rule.Allow {
		if rule.Allow[i].Role == role {
			return &rule.Allow[i]
		}
	}
	return nil
}

// authorize says whether p may call rule, as an *hcx.Error: 401 when an
// anonymous caller needs credentials, 403 when the caller's role or scope
// does not reach.
func authorize(rule *Rule, r *http.Request, p *auth.Principal, inScope scopeChecker) error {
	if g := rule.grantFor(auth.RoleAnonymous); g != nil {
		return nil
	}
	if p.IsAnonymous() {
		return hcx.Errorf(hcx.EUnauthorized, "unauthenticated", "%s %s needs credentials: %s", rule.Method, rule.Path, rolesOf(rule))
	}
	g := rule.grantFor(p.Role)
	if g == nil {
		return hcx.Errorf(hcx.EForbidden, "forbidden_role", "a %s may not call %s %s (allowed: %s)", p.Role, rule.Method, rule.Path, rolesOf(rule))
	}
	if g.Scope == ScopeAny || g.Scope == "" {
		return nil
	}
	return inScope(r, p, g.Scope)
}

func rolesOf(rule *Rule) string {
	s := ""
	for i, g := range rule.Allow {
		if i > 0 {
			s += ", "
		}
		s += string(g.Role)
	}
	return s
}

// gate wraps a rule's handler: take a place in the route's priority class
// (limits), authenticate, take a token from the caller's bucket, check the
// table, the reason and the query parameters, record an audited read, then
// serve with the principal and the request's id and reason in the context.
type gate struct {
	authn   auth.Authenticator
	inScope scopeChecker
	onError func(w http.ResponseWriter, r *http.Request, err error)
	// limits are the abuse limits; nil limits nothing.
	limits *Limits
	// auditRead records an audited read before its handler runs; nil on a
	// server without a trail.
	auditRead func(ctx context.Context, r *http.Request, action string) error
}

func (g *gate) wrap(rule *Rule) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		noteRoute(r, rule.Path)
		// Shedding comes first: under overload, not even authentication
		// (a signature check) is spent on a request that will be refused.
		release, err := g.limits.admit(rule.Priority)
		if err != nil {
			g.onError(w, r, err)
			return
		}
		defer release()
		req, reqErr := auth.ReadRequest(r)
		w.Header().Set(auth.HeaderRequestID, req.ID)
		p := auth.Anonymous
		if g.authn != nil {
			if p, err = g.authn.Authenticate(r); err != nil {
				// Bad credentials cost the address a token.
				if lerr := g.limits.allow(r, auth.Anonymous); lerr != nil {
					err = lerr
				}
				g.onError(w, r, err)
				return
			}
			if p == nil { // a lone Authenticator (not a Chain) found nothing
				p = auth.Anonymous
			}
		}
		noteRole(r, p.Role)
		// Health checks and metrics touch no disk and check no signature:
		// a load balancer or a prober polling from one address is never
		// rate limited (and, as PriorityOps, never shed).
		if rule.Priority != PriorityOps {
			if err := g.limits.allow(r, p); err != nil {
				g.onError(w, r, err)
				return
			}
		}
		if err := authorize(rule, r, p, g.inScope); err != nil {
			g.onError(w, r, err)
			return
		}
		if reqErr != nil {
			g.onError(w, r, reqErr)
			return
		}
		if rule.Audited && (p.Role == auth.RoleOperator || p.Role == auth.RoleNational) && req.Reason == "" {
			g.onError(w, r, &hcx.Error{Class: hcx.EInvalid, Code: "reason_required", Field: auth.HeaderReason,
				Message: fmt.Sprintf("%s %s is recorded in the audit trail: say why in the %s header", rule.Method, rule.Path, auth.HeaderReason)})
			return
		}
		if _, err := queryParams(r, rule.Query...); err != nil {
			g.onError(w, r, err)
			return
		}
		ctx := auth.WithRequest(auth.NewContext(r.Context(), p), req)
		if rule.Audited && (rule.Method == http.MethodGet || rule.Method == http.MethodHead) {
			if g.auditRead == nil {
				g.onError(w, r, hcx.Errorf(hcx.EUnavailable, "no_audit_trail", "%s %s is audited but this server keeps no audit trail", rule.Method, rule.Path))
				return
			}
			if err := g.auditRead(ctx, r, rule.action()); err != nil {
				g.onError(w, r, err)
				return
			}
		}
		rule.Handler(w, r.WithContext(ctx))
	}
}

// mount registers rules on router behind g.
func (g *gate) mount(router *mux.Router, rules []Rule) {
	for i := range rules {
		rule := &rules[i]
		router.HandleFunc(rule.Path, g.wrap(rule)).Methods(rule.Method)
	}
}
