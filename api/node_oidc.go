package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// The browser's OIDC login at a node: /v1/auth/oidc/login sends the
// browser to the identity provider with a state, a nonce and a PKCE
// challenge kept in a bounded server-side map, named by a short HttpOnly
// cookie; /v1/auth/oidc/callback checks that the state it comes back with
// is the one this browser started, exchanges the code, checks the ID token
// (auth.OIDC.Exchange), binds a resident's verified document to a subject
// (NodeOptions.BindIdentity), starts a session (NodeOptions.StartSession)
// and sends the browser on to next, a path on this node.

// Login state limits.
const (
	oidcLoginTTL      = 10 * time.Minute
	maxOIDCLogins     = 10000
	maxNextLength     = 1024
	oidcStateCookie   = "hcx_oidc_state"
	oidcCallbackPath  = "/v1/auth/oidc/callback"
	maxOIDCErrorShown = 200
)

// oidcLogin is one login under way.
type oidcLogin struct {
	issuer, redirect, nonce, verifier, next string
	expires                                 time.Time
}

// oidcLogins is the bounded map of logins under way, by state.
type oidcLogins struct {
	mu sync.Mutex
	m  map[string]*oidcLogin
}

func (l *oidcLogins) put(state string, v *oidcLogin, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= maxOIDCLogins {
		for k, e := range l.m {
			if now.After(e.expires) {
				delete(l.m, k)
			}
		}
		if len(l.m) >= maxOIDCLogins {
			return hcx.Errorf(hcx.ETooMany, "too_many_logins", "too many logins are under way at this node; try again in a few minutes")
		}
	}
	l.m[state] = v
	return nil
}

// take removes and returns the login of state: a state works once.
func (l *oidcLogins) take(state string, now time.Time) *oidcLogin {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.m[state]
	if !ok {
		return nil
	}
	delete(l.m, state)
	if now.After(v.expires) {
		return nil
	}
	return v
}

// oidcRules are the login routes. Anyone may call them: they are how a
// caller gets credentials.
func (h *nodeHandler) oidcRules() []Rule {
	logins := &oidcLogins{m: map[string]*oidcLogin{}}
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/auth/oidc/login", Query: []string{"next", "issuer"}, Priority: PriorityResident, Allow: anyone,
			Handler: func(w http.ResponseWriter, r *http.Request) { h.oidcLogin(w, r, logins) }},
		{Method: http.MethodGet, Path: oidcCallbackPath, Query: []string{"code", "state", "error", "error_description", "error_uri", "iss", "session_state"}, Priority: PriorityResident, Allow: anyone,
			Handler: func(w http.ResponseWriter, r *http.Request) { h.oidcCallback(w, r, logins) }},
	}
}

func (h *nodeHandler) oidcNow() time.Time {
	if h.opts.OIDC != nil && h.opts.OIDC.Now != nil {
		return h.opts.OIDC.Now()
	}
	return time.Now()
}

func (h *nodeHandler) oidcReady() error {
	if h.opts.OIDC == nil || len(h.opts.OIDC.Issuers) == 0 {
		return hcx.Errorf(hcx.EUnavailable, "oidc_not_configured", "this node trusts no identity provider: OIDC login is off")
	}
	if h.opts.StartSession == nil {
		return hcx.Errorf(hcx.EUnavailable, "sessions_unavailable", "this node starts no sessions: logins are off")
	}
	return nil
}

func (h *nodeHandler) oidcLogin(w http.ResponseWriter, r *http.Request, logins *oidcLogins) {
	if err := h.oidcReady(); err != nil {
		WriteError(w, h.log, err)
		return
	}
	q := r.URL.Query()
	next, err := sameOriginPath(q.Get("next"))
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	issuer := q.Get("issuer")
	if issuer == "" {
		issuer = h.opts.OIDC.DefaultIssuer()
	}
	now := h.oidcNow()
	state := randomToken()
	l := &oidcLogin{issuer: issuer, redirect: h.callbackURL(r), nonce: randomToken(), verifier: oauth2.GenerateVerifier(), next: next, expires: now.Add(oidcLoginTTL)}
	to, err := h.opts.OIDC.AuthCodeURL(issuer, l.redirect, state, l.nonce, l.verifier)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	if err := logins.put(state, l, now); err != nil {
		WriteError(w, h.log, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: oidcStateCookie, Value: state, Path: oidcCallbackPath, MaxAge: int(oidcLoginTTL / time.Second),
		// Lax, not Strict: the callback is a top-level navigation from the
		// identity provider's site, which a Strict cookie would not follow.
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusFound)
}

func (h *nodeHandler) oidcCallback(w http.ResponseWriter, r *http.Request, logins *oidcLogins) {
	w.Header().Set("Cache-Control", "no-store")
	if err := h.oidcReady(); err != nil {
		WriteError(w, h.log, err)
		return
	}
	// The state cookie is spent whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: oidcStateCookie, Value: "", Path: oidcCallbackPath, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		WriteError(w, h.log, hcx.Invalidf("state", "the callback carries no state: start the login again at /v1/auth/oidc/login"))
		return
	}
	c, err := r.Cookie(oidcStateCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		WriteError(w, h.log, hcx.Errorf(hcx.EForbidden, "oidc_state_mismatch", "this login was not started by this browser (the state does not match its cookie): start the login again at /v1/auth/oidc/login"))
		return
	}
	l := logins.take(state, h.oidcNow())
	if l == nil {
		WriteError(w, h.log, &hcx.Error{Class: hcx.EInvalid, Code: "oidc_state_unknown", Field: "state", Message: "this login expired or was already used: start it again at /v1/auth/oidc/login"})
		return
	}
	if e := q.Get("error"); e != "" {
		WriteError(w, h.log, hcx.Errorf(hcx.EUnauthorized, "oidc_login_refused", "the identity provider refused the login: %s %s", clip(e), clip(q.Get("error_description"))))
		return
	}
	code := q.Get("code")
	if code == "" {
		WriteError(w, h.log, hcx.Invalidf("code", "the callback carries no code: start the login again"))
		return
	}
	login, err := h.opts.OIDC.Exchange(r.Context(), l.issuer, l.redirect, code, l.verifier, l.nonce)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	p := login.Principal
	if p.Role == auth.RoleResident {
		if h.opts.BindIdentity == nil {
			WriteError(w, h.log, hcx.Errorf(hcx.EUnavailable, "identity_binding_unavailable", "this node cannot bind an identity to a resident yet: log in with a passkey or an enrolment code"))
			return
		}
		sub, err := h.opts.BindIdentity(r.Context(), *login.Identity)
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
		p.Subject = sub
		p.Actor = "resident:" + string(sub)
	}
	if err := h.opts.StartSession(w, r, p); err != nil {
		WriteError(w, h.log, err)
		return
	}
	h.log.Info("oidc login", "role", string(p.Role), "province", string(p.Province))
	http.Redirect(w, r, l.next, http.StatusSeeOther)
}

// callbackURL is this node's callback, as registered at the providers.
func (h *nodeHandler) callbackURL(r *http.Request) string {
	if h.opts.BaseURL != "" {
		return strings.TrimSuffix(h.opts.BaseURL, "/") + oidcCallbackPath
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + oidcCallbackPath
}

// sameOriginPath checks a next= parameter: a path on this server, never
// another origin (open redirects hand a session's first page to anyone).
func sameOriginPath(next string) (string, error) {
	if next == "" {
		return "/", nil
	}
	bad := func(why string) error {
		return &hcx.Error{Class: hcx.EInvalid, Code: "invalid_next", Field: "next", Message: "next must be a path on this server, such as /v1/me: " + why}
	}
	if len(next) > maxNextLength {
		return "", bad("it is longer than 1024 bytes")
	}
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "", bad("it must start with a single /")
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "", bad("it holds a control character or a backslash")
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return "", bad("it names another origin")
	}
	return next, nil
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
