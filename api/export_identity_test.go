package api

import (
	"log/slog"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx/auth"
)

// ProbeScopes serves two probe routes behind n's own scope check (inScope)
// for residents: GET /probe/residents/{sub}/self (ScopeSelf) and GET
// /probe/residents/{sub}/self-or-dependant (ScopeSelfOrDependant). No node
// route grants ScopeSelf, so the external tests reach it here. Test only.
func ProbeScopes(n Node, log *slog.Logger, authn auth.Authenticator) http.Handler {
	h := &nodeHandler{n: n, log: log, opts: NodeOptions{Authn: authn}}
	reached := func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"subject": mux.Vars(r)["sub"]})
	}
	r := mux.NewRouter()
	g := &gate{authn: authn, inScope: h.inScope, onError: h.gateError}
	g.mount(r, []Rule{
		{Method: http.MethodGet, Path: "/probe/residents/{sub}/self", Allow: []Grant{{Role: auth.RoleResident, Scope: ScopeSelf}}, Handler: reached},
		{Method: http.MethodGet, Path: "/probe/residents/{sub}/self-or-dependant", Allow: []Grant{{Role: auth.RoleResident, Scope: ScopeSelfOrDependant}}, Handler: reached},
	})
	return r
}

// IdentityRules is the node's identity route table, for tests of its
// flags. Test only.
func IdentityRules() []Rule { return (&nodeHandler{}).identityRules() }
