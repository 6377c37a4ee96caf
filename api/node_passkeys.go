package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// Residents' passkeys (DESIGN.md §8b): a resident whose session is bound to
// their subject registers passkeys; anyone logs in with one (a discoverable
// credential: no user name is typed) and gets a session through
// NodeOptions.StartSession.

// PasskeyStore is what the passkey routes need from a node (node/passkeys.go,
// node/sessions.go).
type PasskeyStore interface {
	PasskeyHandle(ctx context.Context, sub hcx.Subject) ([]byte, error)
	PasskeyOwner(ctx context.Context, handle []byte) (hcx.Subject, error)
	Passkeys(ctx context.Context, sub hcx.Subject) ([]node.Passkey, error)
	AddPasskey(ctx context.Context, sub hcx.Subject, pk node.Passkey) error
	UsePasskey(ctx context.Context, sub hcx.Subject, id []byte, counter uint32, credential json.RawMessage) error
	RemovePasskey(ctx context.Context, sub hcx.Subject, id []byte) (int, error)
	EndSession(ctx context.Context, id string) error
	EndSessions(ctx context.Context, actor, except string) (int, error)
}

var _ PasskeyStore = (*node.Node)(nil)

// PasskeyConfig is the node's WebAuthn relying party. A zero RPID turns the
// passkey routes off (they answer 503 passkeys_off).
type PasskeyConfig struct {
	// RPID is the domain passkeys are bound to ("localhost" in hcx dev,
	// the node's public host name in production).
	RPID string
	// Origins are the page origins allowed to use them, such as
	// "https://hcx.gd.example" or "http://localhost:8441".
	Origins []string
	// DisplayName is the relying party's name shown by authenticators;
	// default "hcx".
	DisplayName string
	// Now is the clock of ceremony expiry; default time.Now.
	Now func() time.Time
}

// PasskeysFor derives the relying party from the URL residents' pages are
// served at: RP ID its host name, origin its scheme://host[:port]. hcx dev
// serves on loopback and passes "http://localhost:<port>" (browsers treat
// localhost as a secure context, and an IP address cannot be an RP ID).
func PasskeysFor(publicURL string) (PasskeyConfig, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return PasskeyConfig{}, fmt.Errorf("passkeys: public URL %q: want http(s)://host[:port]", publicURL)
	}
	if u.Scheme == "http" && u.Hostname() != "localhost" {
		return PasskeyConfig{}, fmt.Errorf("passkeys: %q is plain HTTP on a host other than localhost; browsers offer passkeys only to https:// pages (or http://localhost)", publicURL)
	}
	return PasskeyConfig{RPID: u.Hostname(), Origins: []string{u.Scheme + "://" + u.Host}}, nil
}

// Ceremony bounds.
const (
	ceremonyTTL     = 5 * time.Minute
	maxCeremonies   = 10000
	maxPasskeyName  = 64
	maxPasskeyBody  = 32 << 10
	passkeyUserName = "hcx resident"
)

// passkeyUser is a resident as go-webauthn sees them: a random handle and
// their credentials, nothing that names them.
type passkeyUser struct {
	handle []byte
	creds  []webauthn.Credential
}

func (u *passkeyUser) WebAuthnID() []byte                         { return u.handle }
func (u *passkeyUser) WebAuthnName() string                       { return passkeyUserName }
func (u *passkeyUser) WebAuthnDisplayName() string                { return passkeyUserName }
func (u *passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// ceremony is one registration or login under way: the library's state
// (the challenge) kept on the server, named by a random id the client
// returns with its answer.
type ceremony struct {
	login   bool
	sub     hcx.Subject // registration: whose
	name    string      // registration: the passkey's name
	data    webauthn.SessionData
	expires time.Time
}

// ceremonies is a bounded, single-use store of ceremonies under way.
type ceremonies struct {
	mu  sync.Mutex
	m   map[string]*ceremony
	now func() time.Time
}

func (c *ceremonies) put(cer *ceremony) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	now := c.now()
	cer.expires = now.Add(ceremonyTTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCeremonies {
		for k, v := range c.m {
			if !now.Before(v.expires) {
				delete(c.m, k)
			}
		}
	}
	if len(c.m) >= maxCeremonies {
		return "", hcx.Errorf(hcx.ETooMany, "too_many_ceremonies", "too many passkey ceremonies are under way; try again in a minute")
	}
	c.m[id] = cer
	return id, nil
}

// take removes and returns the ceremony: each is used once, whatever the
// outcome.
func (c *ceremonies) take(id string, login bool, sub hcx.Subject) (*ceremony, error) {
	c.mu.Lock()
	cer, ok := c.m[id]
	delete(c.m, id)
	c.mu.Unlock()
	if !ok || cer.login != login || cer.sub != sub || !c.now().Before(cer.expires) {
		return nil, hcx.Invalidf("ceremony", "no such passkey ceremony: it is unknown, was used already or is over 5 minutes old; begin again")
	}
	return cer, nil
}

// passkeyRoutes serves the passkey routes of one node handler.
type passkeyRoutes struct {
	h     *nodeHandler
	store PasskeyStore
	wa    *webauthn.WebAuthn // nil: passkeys are off
	cer   *ceremonies
	now   func() time.Time
}

// passkeyRules is the node's table of session and passkey routes.
func (h *nodeHandler) passkeyRules() []Rule {
	cfg := h.opts.Passkeys
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pr := &passkeyRoutes{h: h, cer: &ceremonies{m: map[string]*ceremony{}, now: cfg.Now}, now: cfg.Now}
	pr.store, _ = h.n.(PasskeyStore)
	if cfg.RPID != "" && pr.store != nil {
		name := cfg.DisplayName
		if name == "" {
			name = "hcx"
		}
		wa, err := webauthn.New(&webauthn.Config{
			RPID: cfg.RPID, RPDisplayName: name, RPOrigins: cfg.Origins,
			AttestationPreference: protocol.PreferNoAttestation,
			AuthenticatorSelection: protocol.AuthenticatorSelection{
				ResidentKey: protocol.ResidentKeyRequirementRequired, RequireResidentKey: protocol.ResidentKeyRequired(),
				UserVerification: protocol.VerificationRequired,
			},
		})
		if err != nil {
			h.log.Error("passkeys are off: the relying party configuration does not check out", "rp_id", cfg.RPID, "err", err)
		} else {
			pr.wa = wa
		}
	}
	resident := []Grant{{Role: auth.RoleResident, Scope: ScopeAny}}
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	sessionHolders := []Grant{{Role: auth.RoleResident, Scope: ScopeAny}, {Role: auth.RoleOperator, Scope: ScopeAny}, {Role: auth.RoleAuditor, Scope: ScopeAny}, {Role: auth.RoleNational, Scope: ScopeAny}, {Role: auth.RoleCheckpoint, Scope: ScopeAny}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/auth/passkeys/register/begin", Priority: PriorityResident, Allow: resident, Handler: pr.serve(true, pr.registerBegin)},
		{Method: http.MethodPost, Path: "/v1/auth/passkeys/register/finish", Priority: PriorityResident, Allow: resident, Handler: pr.serve(true, pr.registerFinish)},
		{Method: http.MethodPost, Path: "/v1/auth/passkeys/login/begin", Priority: PriorityResident, Allow: anyone, Handler: pr.serve(true, pr.loginBegin)},
		{Method: http.MethodPost, Path: "/v1/auth/passkeys/login/finish", Priority: PriorityResident, Allow: anyone, Handler: pr.serve(true, pr.loginFinish)},
		{Method: http.MethodGet, Path: "/v1/auth/passkeys", Priority: PriorityResident, Allow: resident, Handler: pr.serve(false, pr.list)},
		{Method: http.MethodDelete, Path: "/v1/auth/passkeys/{id}", Priority: PriorityResident, Allow: resident, Handler: pr.serve(false, pr.remove)},
		{Method: http.MethodPost, Path: "/v1/auth/logout", Priority: PriorityResident, Allow: sessionHolders, Handler: h.logout},
	}
}

// passkeyHandler is a passkey route's body: it writes a success and
// returns what went wrong.
type passkeyHandler func(w http.ResponseWriter, r *http.Request) error

// serve turns h into a route handler; needsRP routes answer 503 when
// passkeys are off.
func (pr *passkeyRoutes) serve(needsRP bool, h passkeyHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := pr.off(needsRP)
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			WriteError(w, pr.h.log, err)
		}
	}
}

func (pr *passkeyRoutes) off(needsRP bool) error {
	if pr.store == nil || (needsRP && pr.wa == nil) {
		return hcx.Errorf(hcx.EUnavailable, "passkeys_off", "passkeys are not configured on this node; log in with your identity provider")
	}
	return nil
}

// boundSubject is the caller's own subject; a resident session not bound to
// an identity yet cannot hold passkeys.
func boundSubject(r *http.Request) (hcx.Subject, error) {
	p := auth.FromContext(r.Context())
	if p.Subject == "" {
		return "", hcx.Errorf(hcx.EForbidden, "identity_unbound", "your login is not bound to a verified identity yet; bind it with your identity provider or an enrolment code first")
	}
	return p.Subject, nil
}

// user loads a resident's passkeys as go-webauthn's user.
func (pr *passkeyRoutes) user(ctx context.Context, sub hcx.Subject) (*passkeyUser, []node.Passkey, error) {
	handle, err := pr.store.PasskeyHandle(ctx, sub)
	if err != nil {
		return nil, nil, err
	}
	pks, err := pr.store.Passkeys(ctx, sub)
	if err != nil {
		return nil, nil, err
	}
	u := &passkeyUser{handle: handle}
	for _, pk := range pks {
		var c webauthn.Credential
		if err := json.Unmarshal(pk.Credential, &c); err != nil {
			return nil, nil, fmt.Errorf("stored passkey: %w", err)
		}
		u.creds = append(u.creds, c)
	}
	return u, pks, nil
}

type registerBeginRequest struct {
	Name string `json:"name"`
}

// ceremonyAnswer is a begin route's answer: the options for
// navigator.credentials.create/get ("publicKey"), and the ceremony id to
// send back with the credential.
type ceremonyAnswer struct {
	Ceremony  string `json:"ceremony"`
	PublicKey any    `json:"publicKey"`
}

// ceremonyRequest is a finish route's body: the ceremony id and the
// credential as PublicKeyCredential.toJSON() gives it.
type ceremonyRequest struct {
	Ceremony   string          `json:"ceremony"`
	Credential json.RawMessage `json:"credential"`
}

// finishing reads a finish route's body and takes its ceremony (login, or
// the registration of sub).
func (pr *passkeyRoutes) finishing(w http.ResponseWriter, r *http.Request, login bool, sub hcx.Subject) (*ceremony, json.RawMessage, error) {
	var req ceremonyRequest
	if err := DecodeJSON(w, r, maxPasskeyBody, &req); err != nil {
		return nil, nil, err
	}
	cer, err := pr.cer.take(req.Ceremony, login, sub)
	return cer, req.Credential, err
}

func (pr *passkeyRoutes) registerBegin(w http.ResponseWriter, r *http.Request) error {
	sub, err := boundSubject(r)
	if err != nil {
		return err
	}
	var req registerBeginRequest
	if r.ContentLength != 0 {
		if err := DecodeJSON(w, r, maxPasskeyBody, &req); err != nil {
			return err
		}
	}
	req.Name = strings.TrimSpace(req.Name)
	if utf8.RuneCountInString(req.Name) > maxPasskeyName || strings.ContainsFunc(req.Name, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return hcx.Invalidf("name", "a passkey's name is at most %d printable characters", maxPasskeyName)
	}
	u, _, err := pr.user(r.Context(), sub)
	if err != nil {
		return err
	}
	creation, data, err := pr.wa.BeginRegistration(u, webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()))
	if err != nil {
		return fmt.Errorf("begin passkey registration: %w", err)
	}
	id, err := pr.cer.put(&ceremony{sub: sub, name: req.Name, data: *data})
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, ceremonyAnswer{Ceremony: id, PublicKey: creation.Response})
	return nil
}

// passkeyView is a passkey as its owner sees it.
type passkeyView struct {
	ID       string    `json:"id"`
	Name     string    `json:"name,omitempty"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

func viewOf(pk *node.Passkey) passkeyView {
	return passkeyView{ID: base64.RawURLEncoding.EncodeToString(pk.ID), Name: pk.Name, Created: pk.Created, LastUsed: pk.LastUsed}
}

func (pr *passkeyRoutes) registerFinish(w http.ResponseWriter, r *http.Request) error {
	sub, err := boundSubject(r)
	if err != nil {
		return err
	}
	cer, raw, err := pr.finishing(w, r, false, sub)
	if err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(raw)
	if err != nil {
		return webauthnError(err)
	}
	u, _, err := pr.user(r.Context(), sub)
	if err != nil {
		return err
	}
	cred, err := pr.wa.CreateCredential(u, cer.data, parsed)
	if err != nil {
		return webauthnError(err)
	}
	blob, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	pk := node.Passkey{ID: cred.ID, Name: cer.name, Created: pr.now().UTC(), Counter: cred.Authenticator.SignCount, Credential: blob}
	if err := pr.store.AddPasskey(r.Context(), sub, pk); err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, viewOf(&pk))
	return nil
}

// webauthnError turns go-webauthn's refusal of a registration into a 400
// naming the member, with the library's reason (which carries no secret).
func webauthnError(err error) error {
	var he *hcx.Error
	if errors.As(err, &he) {
		return he // ours, from a store call inside the library
	}
	return &hcx.Error{Class: hcx.EInvalid, Code: "passkey_invalid", Field: "credential", Message: "the passkey's answer does not check out: " + libraryReason(err)}
}

func libraryReason(err error) string {
	msg := err.Error()
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		msg += " (" + pe.DevInfo + ")"
	}
	return msg
}

func (pr *passkeyRoutes) loginBegin(w http.ResponseWriter, r *http.Request) error {
	assertion, data, err := pr.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return fmt.Errorf("begin passkey login: %w", err)
	}
	id, err := pr.cer.put(&ceremony{login: true, data: *data})
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusOK, ceremonyAnswer{Ceremony: id, PublicKey: assertion.Response})
	return nil
}

func (pr *passkeyRoutes) loginFinish(w http.ResponseWriter, r *http.Request) error {
	if pr.h.opts.StartSession == nil {
		return hcx.Errorf(hcx.EUnavailable, "sessions_off", "this node starts no sessions; log in is not possible here")
	}
	cer, raw, err := pr.finishing(w, r, true, "")
	if err != nil {
		return err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(raw)
	if err != nil {
		return webauthnError(err)
	}
	var sub hcx.Subject
	_, cred, err := pr.wa.ValidatePasskeyLogin(func(id, handle []byte) (webauthn.User, error) {
		s, err := pr.store.PasskeyOwner(r.Context(), handle)
		if err != nil {
			return nil, err
		}
		u, pks, err := pr.user(r.Context(), s)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(pks, func(pk node.Passkey) bool { return bytes.Equal(pk.ID, id) }) {
			return nil, node.UnknownPasskey() // removed
		}
		sub = s
		return u, nil
	}, cer.data, parsed)
	if err != nil {
		var he *hcx.Error
		if errors.As(err, &he) {
			return he
		}
		return hcx.Errorf(hcx.EUnauthorized, "passkey_rejected", "passkey login refused: %s", libraryReason(err))
	}
	// go-webauthn flags a counter that did not go up (CloneWarning) but lets
	// it pass; the store refuses it, atomically, so that two logins racing
	// with one counter cannot both pass.
	blob, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	if err := pr.store.UsePasskey(r.Context(), sub, cred.ID, parsed.Response.AuthenticatorData.Counter, blob); err != nil {
		return err
	}
	p := &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + string(sub), Subject: sub, Method: auth.MethodSession}
	if err := pr.h.opts.StartSession(w, r, p); err != nil {
		return err
	}
	// A login replaces the session the browser came with, if any: it is
	// never left alive under a cookie the browser no longer holds.
	if prev := auth.FromContext(r.Context()); prev.Session != "" {
		if err := pr.store.EndSession(r.Context(), prev.Session); err != nil {
			pr.h.log.Warn("end the session a login replaced", "err", err)
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"role": p.Role, "subject": sub})
	return nil
}

func (pr *passkeyRoutes) list(w http.ResponseWriter, r *http.Request) error {
	sub, err := boundSubject(r)
	if err != nil {
		return err
	}
	pks, err := pr.store.Passkeys(r.Context(), sub)
	if err != nil {
		return err
	}
	out := make([]passkeyView, 0, len(pks))
	for i := range pks {
		out = append(out, viewOf(&pks[i]))
	}
	WriteJSON(w, http.StatusOK, map[string]any{"passkeys": out})
	return nil
}

func (pr *passkeyRoutes) remove(w http.ResponseWriter, r *http.Request) error {
	sub, err := boundSubject(r)
	if err != nil {
		return err
	}
	raw := mux.Vars(r)["id"]
	id, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(id) == 0 {
		return hcx.Invalidf("id", "a passkey id is the base64url id from GET /v1/auth/passkeys")
	}
	left, err := pr.store.RemovePasskey(r.Context(), sub, id)
	if err != nil {
		return err
	}
	// Whoever held the passkey may hold sessions it opened: end every
	// session of the resident but the one asking.
	p := auth.FromContext(r.Context())
	ended, err := pr.store.EndSessions(r.Context(), p.Actor, p.Session)
	if err != nil {
		return err
	}
	ans := map[string]any{"removed": raw, "remaining": left, "sessions_ended": ended}
	if left == 0 {
		ans["note"] = "you hold no passkey now: next time, log in with your identity provider or an enrolment code, then register a new passkey"
	}
	WriteJSON(w, http.StatusOK, ans)
	return nil
}

// logout ends the caller's session and clears its cookie.
func (h *nodeHandler) logout(w http.ResponseWriter, r *http.Request) {
	if h.opts.EndSession == nil {
		WriteError(w, h.log, hcx.Errorf(hcx.EUnavailable, "sessions_off", "this node keeps no sessions"))
		return
	}
	if err := h.opts.EndSession(w, r, auth.FromContext(r.Context())); err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "logged_out"})
}

// gateError writes an authentication or authorisation refusal; a session
// cookie that did not check out is cleared in the same answer.
func (h *nodeHandler) gateError(w http.ResponseWriter, r *http.Request, err error) {
	var e *hcx.Error
	if errors.As(err, &e) && e.Code == auth.CodeSessionInvalid && h.opts.ClearSession != nil {
		h.opts.ClearSession(w, r)
	}
	WriteError(w, h.log, err)
}
