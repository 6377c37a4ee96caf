package auth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hcxfed/hcx"
)

// SessionCookie is the name of the cookie that carries a session's secret.
const SessionCookie = "hcx_session"

// CodeSessionInvalid is the error code of a session cookie that names no
// live session (unknown, forged, ended or expired).
const CodeSessionInvalid = "session_invalid"

// maxSessionCookie bounds the cookie value read: a secret is 43 characters.
const maxSessionCookie = 128

// SessionStore keeps server-side sessions; the province node implements it
// in its store (node/sessions.go).
type SessionStore interface {
	// NewSession stores a session for p and returns its secret and its
	// absolute expiry.
	NewSession(ctx context.Context, p *Principal) (secret string, expires time.Time, err error)
	// Session returns the principal of the live session with the secret,
	// with Method MethodSession and Session set to the session's id, or an
	// *hcx.Error with code CodeSessionInvalid.
	Session(ctx context.Context, secret string) (*Principal, error)
	// EndSession deletes the session with the id (Principal.Session).
	EndSession(ctx context.Context, id string) error
}

// SessionConfig configures session cookies.
type SessionConfig struct {
	// Secure marks cookies Secure even on a plain-HTTP request: set it when
	// the node is served behind a TLS-terminating proxy at a public
	// https:// URL. A request that came over TLS always gets Secure.
	Secure bool
	// Now is the clock of the cookie's Max-Age; use the store's. Default
	// time.Now.
	Now func() time.Time
}

// Sessions reads and writes session cookies over a SessionStore. It is the
// Authenticator for residents' (and browser operators') sessions, and its
// Start is where every login ends (api.NodeOptions.StartSession).
type Sessions struct {
	store SessionStore
	cfg   SessionConfig
}

// NewSessions returns the session cookie handler over store.
func NewSessions(store SessionStore, cfg SessionConfig) *Sessions {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sessions{store: store, cfg: cfg}
}

var _ Authenticator = (*Sessions)(nil)

// Authenticate implements Authenticator: no hcx_session cookie is (nil,
// nil); a cookie that names no live session is a 401 with code
// session_invalid (the api then clears the cookie with Clear).
func (s *Sessions) Authenticate(r *http.Request) (*Principal, error) {
	c, err := r.Cookie(SessionCookie)
	if errors.Is(err, http.ErrNoCookie) {
		return nil, nil
	}
	if err != nil || c.Value == "" || len(c.Value) > maxSessionCookie {
		return nil, InvalidSession()
	}
	p, err := s.store.Session(r.Context(), c.Value)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// InvalidSession is the error of a session cookie that names no live
// session; session stores return it.
func InvalidSession() *hcx.Error {
	return hcx.Errorf(hcx.EUnauthorized, CodeSessionInvalid, "the session is unknown or has expired; log in again")
}

// Start starts a server-side session for p and sets its cookie on w:
// HttpOnly, Path=/, SameSite=Strict, Secure under TLS (or when configured),
// Max-Age the session's absolute lifetime. p must be a principal with a role
// other than anonymous and an actor.
func (s *Sessions) Start(w http.ResponseWriter, r *http.Request, p *Principal) error {
	secret, expires, err := s.store.NewSession(r.Context(), p)
	if err != nil {
		return err
	}
	maxAge := int(expires.Sub(s.cfg.Now()).Seconds())
	if maxAge < 1 {
		maxAge = 1
	}
	http.SetCookie(w, s.cookie(r, secret, maxAge))
	return nil
}

// End ends the session p came with (logout) and clears the cookie. A
// principal that did not come with a session is an EInvalid error.
func (s *Sessions) End(w http.ResponseWriter, r *http.Request, p *Principal) error {
	if p == nil || p.Method != MethodSession || p.Session == "" {
		return hcx.Errorf(hcx.EInvalid, "no_session", "this request did not come with a session cookie; there is nothing to log out of")
	}
	if err := s.store.EndSession(r.Context(), p.Session); err != nil {
		return err
	}
	s.Clear(w, r)
	return nil
}

// Clear tells the browser to drop its session cookie.
func (s *Sessions) Clear(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, s.cookie(r, "", -1))
}

func (s *Sessions) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.cfg.Secure || r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}
