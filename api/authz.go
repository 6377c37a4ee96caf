package api

import (
	"net/http"

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
	PriorityBulk                       // bulk feeds, long reads
	PriorityOps                        // health checks and metrics: never shed
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
	Audited bool
	Handler http.HandlerFunc
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

// gate wraps a rule's handler: authenticate, check the table and the query
// parameters, then serve with the principal in the request's context.
type gate struct {
	authn   auth.Authenticator
	inScope scopeChecker
	onError func(w http.ResponseWriter, r *http.Request, err error)
}

func (g *gate) wrap(rule *Rule) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := auth.Anonymous
		if g.authn != nil {
			var err error
			if p, err = g.authn.Authenticate(r); err != nil {
				g.onError(w, r, err)
				return
			}
		}
		if err := authorize(rule, r, p, g.inScope); err != nil {
			g.onError(w, r, err)
			return
		}
		if _, err := queryParams(r, rule.Query...); err != nil {
			g.onError(w, r, err)
			return
		}
		rule.Handler(w, r.WithContext(auth.NewContext(r.Context(), p)))
	}
}

// mount registers rules on router behind g.
func (g *gate) mount(router *mux.Router, rules []Rule) {
	for i := range rules {
		rule := &rules[i]
		router.HandleFunc(rule.Path, g.wrap(rule)).Methods(rule.Method)
	}
}
