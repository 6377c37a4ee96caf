package auth

import (
	"context"
	"fmt"

	"github.com/hcxfed/hcx"
)

// Role is what a caller is to the federation.
type Role string

// Roles (DESIGN.md §8b). A guardian is a resident: the right to act for a
// dependant comes from a delegation record, not from a role.
const (
	RoleAnonymous Role = "anonymous"
	RoleResident  Role = "resident"
	RoleOperator  Role = "operator" // a province's data bureau
	RoleAuditor   Role = "auditor"  // the national auditor: reads everything, writes nothing
	// RoleNational is national platform staff: a person who confirms the
	// manual red orders a province's disease-control authority makes
	// (issue 10, CDC orders). Not the auditor: it writes confirmations.
	RoleNational   Role = "national"
	RoleFeed       Role = "feed"       // a lab, vaccination registry or telecom feed of one province
	RoleCheckpoint Role = "checkpoint" // a checkpoint device enrolled in one province
	RoleProvince   Role = "province"   // a province node, at the hub (its signing certificate)
	RoleHub        Role = "hub"        // a hub member
)

// Roles lists every role, anonymous first, in a stable order (the matrix
// test and docs/authz.md walk it).
var Roles = []Role{RoleAnonymous, RoleResident, RoleOperator, RoleAuditor, RoleFeed, RoleCheckpoint, RoleProvince, RoleHub, RoleNational}

// Method is how a principal proved itself.
type Method string

// Methods.
const (
	MethodNone         Method = ""
	MethodSession      Method = "session"       // a session cookie
	MethodBearer       Method = "bearer"        // an OIDC ID token
	MethodRequestToken Method = "request-token" // an SM2-signed request token
)

// Principal is who is calling. It carries no name or document number of a
// resident: logs and the audit trail may record it whole.
type Principal struct {
	Role Role `json:"role"`
	// Actor is a stable id of the person or machine that acts, for the
	// audit trail: "oidc:<issuer>#<sub>" for an OIDC user, "cert:<kid>" for
	// a certificate, "resident:<subject>" for a resident.
	Actor string `json:"actor"`
	// Name is a display name for staff and machines (an operator's login
	// name, a certificate's common name); empty for residents.
	Name string `json:"name,omitempty"`
	// Province binds operators, feeds, checkpoint devices and province
	// signers to one province.
	Province hcx.ProvinceCode `json:"province,omitempty"`
	// Subject is a resident's own subject, once their identity is bound.
	Subject hcx.Subject `json:"subject,omitempty"`
	// Method is how the caller proved itself.
	Method Method `json:"method,omitempty"`
	// Session is the id (not the secret) of the session the request came
	// with, for logout; empty otherwise.
	Session string `json:"-"`
}

// Anonymous is the principal of a request without credentials.
var Anonymous = &Principal{Role: RoleAnonymous, Actor: "anonymous"}

// IsAnonymous reports whether p proved nothing.
func (p *Principal) IsAnonymous() bool { return p == nil || p.Role == RoleAnonymous }

// String is a log-safe description.
func (p *Principal) String() string {
	if p.IsAnonymous() {
		return "anonymous"
	}
	if p.Province != "" {
		return fmt.Sprintf("%s %s (%s)", p.Role, p.Actor, p.Province)
	}
	return fmt.Sprintf("%s %s", p.Role, p.Actor)
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal in ctx, Anonymous if none.
func FromContext(ctx context.Context) *Principal {
	if p, ok := ctx.Value(ctxKey{}).(*Principal); ok && p != nil {
		return p
	}
	return Anonymous
}

// InContext reports whether ctx carries a principal at all (anonymous
// included): the node refuses a write whose context has none, because the
// audit trail would not know who made it.
func InContext(ctx context.Context) bool {
	_, ok := ctx.Value(ctxKey{}).(*Principal)
	return ok
}

// System is the principal of the node's own work (scheduled re-decisions,
// following the hub): not a caller, but an actor the audit trail can name.
func System(what string) *Principal {
	return &Principal{Role: "system", Actor: "system:" + what}
}
