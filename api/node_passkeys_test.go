package api_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/auth/passkeytest"
	"github.com/hcxfed/hcx/node"
)

// movingClock is a clock the test moves by hand.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *movingClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Two residents' subjects. Their identity binding is another package's
// work: here a test-only StartSession call gives each a session.
const (
	subA hcx.Subject = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	subB hcx.Subject = "bbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// passkeyEnv is a real node on badger behind the real node handler, with
// real session cookies and passkeys, served over HTTP (or HTTPS).
type passkeyEnv struct {
	t      *testing.T
	n      *node.Node
	sess   *auth.Sessions
	clock  *movingClock
	url    string
	origin string
	http   *http.Client
}

func newPasskeyEnv(t *testing.T, tls bool) *passkeyEnv {
	t.Helper()
	clock := &movingClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	e := &passkeyEnv{t: t, clock: clock}
	e.n = newTestNode(t, clock.Now)
	e.sess = auth.NewSessions(e.n, auth.SessionConfig{Now: clock.Now})
	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	e.url, e.http = srv.URL, srv.Client()
	e.origin = strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	h = api.WithCSRF(api.NewNodeHandler(e.n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{
		Authn:        auth.Chain{e.sess},
		StartSession: e.sess.Start, EndSession: e.sess.End, ClearSession: e.sess.Clear,
		Passkeys: api.PasskeyConfig{RPID: "localhost", Origins: []string{e.origin}, Now: clock.Now},
	}))
	return e
}

// residentCookie starts a session for a resident bound to sub, as the
// identity package's OIDC or enrolment-code login will.
func (e *passkeyEnv) residentCookie(sub hcx.Subject) *http.Cookie {
	e.t.Helper()
	rec := httptest.NewRecorder()
	p := &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + string(sub), Subject: sub}
	if err := e.sess.Start(rec, httptest.NewRequest(http.MethodPost, "/test-login", nil), p); err != nil {
		e.t.Fatal(err)
	}
	return sessionCookie(e.t, rec.Result())
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie in the answer (status %d)", auth.SessionCookie, resp.StatusCode)
	return nil
}

type answer struct {
	status int
	body   []byte
	resp   *http.Response
}

func (a answer) code() string {
	var v struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(a.body, &v)
	return v.Error.Code
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %s: %v", a.body, err)
	}
}

// do sends a request with an optional JSON body, cookie and extra headers.
func (e *passkeyEnv) do(method, path string, body any, c *http.Cookie, hdr ...string) answer {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if c != nil {
		req.AddCookie(c)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, resp: resp}
}

func (e *passkeyEnv) want(a answer, status int, code string) {
	e.t.Helper()
	if a.status != status || (code != "" && a.code() != code) {
		e.t.Fatalf("got %d %s, want %d %s", a.status, a.body, status, code)
	}
}

type begun struct {
	Ceremony  string          `json:"ceremony"`
	PublicKey json.RawMessage `json:"publicKey"`
}

func (b begun) options() []byte {
	o, _ := json.Marshal(map[string]json.RawMessage{"publicKey": b.PublicKey})
	return o
}

func (e *passkeyEnv) begin(path string, body any, c *http.Cookie) begun {
	e.t.Helper()
	a := e.do(http.MethodPost, path, body, c)
	e.want(a, http.StatusOK, "")
	var b begun
	a.decode(e.t, &b)
	return b
}

func finish(ceremony string, cred []byte) map[string]any {
	return map[string]any{"ceremony": ceremony, "credential": json.RawMessage(cred)}
}

// client drives the node's passkey routes with a, as e2e tests will.
func (e *passkeyEnv) client(a *passkeytest.Authenticator) *passkeytest.Client {
	return &passkeytest.Client{HTTP: e.http, URL: e.url, Auth: a}
}

// register registers a new passkey of a on the resident's session and
// returns its credential.
func (e *passkeyEnv) register(a *passkeytest.Authenticator, c *http.Cookie, name string) *passkeytest.Credential {
	e.t.Helper()
	cred, err := e.client(a).Register(c, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return cred
}

// login logs in with cred and returns the answer (its cookie on success).
func (e *passkeyEnv) login(a *passkeytest.Authenticator, cred *passkeytest.Credential) answer {
	e.t.Helper()
	b := e.begin("/v1/auth/passkeys/login/begin", nil, nil)
	resp, err := a.Get(b.options(), cred)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b.Ceremony, resp), nil)
}

func (e *passkeyEnv) loginCookie(a *passkeytest.Authenticator, cred *passkeytest.Credential) *http.Cookie {
	e.t.Helper()
	c, err := e.client(a).Login(cred)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

type passkeyList struct {
	Passkeys []struct {
		ID       string    `json:"id"`
		Name     string    `json:"name"`
		Created  time.Time `json:"created"`
		LastUsed time.Time `json:"last_used"`
	} `json:"passkeys"`
}

func (e *passkeyEnv) list(c *http.Cookie) passkeyList {
	e.t.Helper()
	a := e.do(http.MethodGet, "/v1/auth/passkeys", nil, c)
	e.want(a, http.StatusOK, "")
	var l passkeyList
	a.decode(e.t, &l)
	return l
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestPasskeysRegisterTwoLogInWithEachAndRemoveOne(t *testing.T) {
	e := newPasskeyEnv(t, false)
	first := e.residentCookie(subA)
	phone, laptop := passkeytest.New(e.origin), passkeytest.New(e.origin)
	credPhone := e.register(phone, first, "phone")
	credLaptop := e.register(laptop, first, "laptop")

	// The user handle is random, the same for both, and names no one.
	if !bytes.Equal(credPhone.UserHandle, credLaptop.UserHandle) || len(credPhone.UserHandle) != 32 ||
		bytes.Contains(credPhone.UserHandle, []byte(subA)) {
		t.Fatalf("user handles %x and %x", credPhone.UserHandle, credLaptop.UserHandle)
	}

	e.clock.Add(time.Minute)
	viaPhone := e.loginCookie(phone, credPhone)
	viaLaptop := e.loginCookie(laptop, credLaptop)
	l := e.list(viaPhone)
	if len(l.Passkeys) != 2 {
		t.Fatalf("listed %d passkeys, want 2", len(l.Passkeys))
	}
	names := map[string]string{}
	for _, pk := range l.Passkeys {
		names[pk.ID] = pk.Name
		if !pk.LastUsed.Equal(e.clock.Now()) {
			t.Errorf("passkey %s last used %v, want %v", pk.Name, pk.LastUsed, e.clock.Now())
		}
	}
	if names[b64(credPhone.ID)] != "phone" || names[b64(credLaptop.ID)] != "laptop" {
		t.Fatalf("names %v", names)
	}

	// Removing the phone's passkey ends the other sessions of the resident
	// (the one opened with the phone among them), but not the asking one.
	a := e.do(http.MethodDelete, "/v1/auth/passkeys/"+b64(credPhone.ID), nil, viaLaptop)
	e.want(a, http.StatusOK, "")
	var removed struct {
		Remaining int    `json:"remaining"`
		Ended     int    `json:"sessions_ended"`
		Note      string `json:"note"`
	}
	a.decode(t, &removed)
	if removed.Remaining != 1 || removed.Ended != 2 || removed.Note != "" {
		t.Fatalf("removal answered %s", a.body)
	}
	e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, viaPhone), http.StatusUnauthorized, auth.CodeSessionInvalid)
	e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, first), http.StatusUnauthorized, auth.CodeSessionInvalid)
	if l := e.list(viaLaptop); len(l.Passkeys) != 1 || l.Passkeys[0].ID != b64(credLaptop.ID) {
		t.Fatalf("after removal: %+v", l)
	}
	e.want(e.login(phone, credPhone), http.StatusUnauthorized, "passkey_unknown")
	again := e.loginCookie(laptop, credLaptop)

	// Removing the last one is allowed, and the answer says what then.
	a = e.do(http.MethodDelete, "/v1/auth/passkeys/"+b64(credLaptop.ID), nil, again)
	e.want(a, http.StatusOK, "")
	a.decode(t, &removed)
	if removed.Remaining != 0 || !strings.Contains(removed.Note, "identity provider") {
		t.Fatalf("removing the last passkey answered %s", a.body)
	}
	e.want(e.login(laptop, credLaptop), http.StatusUnauthorized, "passkey_unknown")
}

func TestPasskeyLoginStartsAResidentSessionWithStrictCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[tls]
		t.Run(name, func(t *testing.T) {
			e := newPasskeyEnv(t, tls)
			a := passkeytest.New(e.origin)
			cred := e.register(a, e.residentCookie(subA), "")
			ans := e.login(a, cred)
			e.want(ans, http.StatusOK, "")
			var who struct {
				Role    string `json:"role"`
				Subject string `json:"subject"`
			}
			ans.decode(t, &who)
			if who.Role != "resident" || who.Subject != string(subA) {
				t.Fatalf("login answered %s", ans.body)
			}
			c := sessionCookie(t, ans.resp)
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge != int(node.DefaultSessionTTL/time.Second) {
				t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Max-Age=%d", c, int(node.DefaultSessionTTL/time.Second))
			}
			if c.Secure != tls {
				t.Fatalf("cookie Secure = %v under %s", c.Secure, name)
			}
			if raw, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil || len(raw) != 32 {
				t.Fatalf("cookie value %q is not 32 random bytes in base64url", c.Value)
			}
		})
	}
}

func TestPasskeyLoginReplacesTheSessionTheBrowserCameWith(t *testing.T) {
	e := newPasskeyEnv(t, false)
	old := e.residentCookie(subA)
	a := passkeytest.New(e.origin)
	cred := e.register(a, old, "phone")
	b := e.begin("/v1/auth/passkeys/login/begin", nil, old)
	resp, err := a.Get(b.options(), cred)
	if err != nil {
		t.Fatal(err)
	}
	ans := e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b.Ceremony, resp), old)
	e.want(ans, http.StatusOK, "")
	e.list(sessionCookie(t, ans.resp))
	e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, old), http.StatusUnauthorized, auth.CodeSessionInvalid)
}

func TestLogoutEndsTheSessionAndClearsTheCookie(t *testing.T) {
	e := newPasskeyEnv(t, false)
	c := e.residentCookie(subA)
	e.list(c)
	a := e.do(http.MethodPost, "/v1/auth/logout", nil, c)
	e.want(a, http.StatusOK, "")
	if cleared := sessionCookie(t, a.resp); cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Fatalf("logout set %+v, want the cookie cleared", cleared)
	}
	a = e.do(http.MethodGet, "/v1/auth/passkeys", nil, c)
	e.want(a, http.StatusUnauthorized, auth.CodeSessionInvalid)
	if cleared := sessionCookie(t, a.resp); cleared.MaxAge >= 0 {
		t.Fatalf("a refused cookie was not cleared: %+v", cleared)
	}
	// Logging out needs a session; anonymous callers get 401.
	e.want(e.do(http.MethodPost, "/v1/auth/logout", nil, nil), http.StatusUnauthorized, "unauthenticated")
}

func TestForgedSessionCookiesAreRefusedAndCleared(t *testing.T) {
	e := newPasskeyEnv(t, false)
	other := newPasskeyEnv(t, false)
	random := make([]byte, 32)
	rand.Read(random)
	real := e.residentCookie(subA)
	tampered := []byte(real.Value)
	tampered[0] ^= 1
	for name, value := range map[string]string{
		"reject/random-32-bytes":           b64(random),
		"reject/another-nodes-session":     other.residentCookie(subA).Value,
		"reject/one-character-changed":     string(tampered),
		"reject/garbage":                   "not-a-session",
		"reject/over-long":                 strings.Repeat("A", 4096),
		"reject/session-id-not-the-secret": strings.Repeat("0", 64),
	} {
		t.Run(name, func(t *testing.T) {
			before := e.n.StoreVersion()
			a := e.do(http.MethodGet, "/v1/auth/passkeys", nil, &http.Cookie{Name: auth.SessionCookie, Value: value})
			e.want(a, http.StatusUnauthorized, auth.CodeSessionInvalid)
			if c := sessionCookie(t, a.resp); c.MaxAge >= 0 {
				t.Fatalf("cookie not cleared: %+v", c)
			}
			if e.n.StoreVersion() != before {
				t.Fatal("a forged cookie wrote to the store")
			}
		})
	}
	e.list(real)
}

func TestSessionsExpireIdleAndAbsolute(t *testing.T) {
	e := newPasskeyEnv(t, false)
	idle := e.residentCookie(subA)
	busy := e.residentCookie(subB)
	for elapsed := time.Duration(0); elapsed < node.DefaultSessionTTL; elapsed += 25 * time.Minute {
		e.list(busy)
		if elapsed == 25*time.Minute {
			e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, idle), http.StatusOK, "")
		}
		if elapsed == 75*time.Minute { // last used at 25 minutes
			e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, idle), http.StatusUnauthorized, auth.CodeSessionInvalid)
		}
		e.clock.Add(25 * time.Minute)
	}
	e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, busy), http.StatusUnauthorized, auth.CodeSessionInvalid)
}

func TestPasskeyLoginRefusesReplaysClonesAndOtherOrigins(t *testing.T) {
	e := newPasskeyEnv(t, false)
	a := passkeytest.New(e.origin)
	cred := e.register(a, e.residentCookie(subA), "phone")

	t.Run("reject/same-ceremony-twice", func(t *testing.T) {
		b := e.begin("/v1/auth/passkeys/login/begin", nil, nil)
		resp, err := a.Get(b.options(), cred)
		if err != nil {
			t.Fatal(err)
		}
		e.want(e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b.Ceremony, resp), nil), http.StatusOK, "")
		ans := e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b.Ceremony, resp), nil)
		e.want(ans, http.StatusBadRequest, "invalid_ceremony")
		if len(ans.resp.Cookies()) != 0 {
			t.Fatal("a refused login set a cookie")
		}
	})
	t.Run("reject/old-assertion-on-new-challenge", func(t *testing.T) {
		b := e.begin("/v1/auth/passkeys/login/begin", nil, nil)
		old, err := a.Get(b.options(), cred)
		if err != nil {
			t.Fatal(err)
		}
		b2 := e.begin("/v1/auth/passkeys/login/begin", nil, nil)
		e.want(e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b2.Ceremony, old), nil), http.StatusUnauthorized, "passkey_rejected")
	})
	t.Run("reject/counter-not-going-up", func(t *testing.T) {
		e.loginCookie(a, cred)
		b := e.begin("/v1/auth/passkeys/login/begin", nil, nil)
		resp, err := a.Replay(b.options(), cred) // the counter of the last login
		if err != nil {
			t.Fatal(err)
		}
		e.want(e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b.Ceremony, resp), nil), http.StatusUnauthorized, "passkey_counter")
	})
	t.Run("reject/another-origin", func(t *testing.T) {
		// The same passkey, used by a page of another site.
		e.want(e.login(passkeytest.New("https://evil.example"), cred), http.StatusUnauthorized, "passkey_rejected")
	})
	t.Run("reject/register-from-another-origin", func(t *testing.T) {
		c := e.residentCookie(subB)
		b := e.begin("/v1/auth/passkeys/register/begin", nil, c)
		resp, _, err := passkeytest.New("https://evil.example").Create(b.options())
		if err != nil {
			t.Fatal(err)
		}
		e.want(e.do(http.MethodPost, "/v1/auth/passkeys/register/finish", finish(b.Ceremony, resp), c), http.StatusBadRequest, "passkey_invalid")
		if l := e.list(c); len(l.Passkeys) != 0 {
			t.Fatalf("a refused registration stored %d passkeys", len(l.Passkeys))
		}
	})
	t.Run("reject/expired-ceremony", func(t *testing.T) {
		b := e.begin("/v1/auth/passkeys/login/begin", nil, nil)
		resp, err := a.Get(b.options(), cred)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Add(5*time.Minute + time.Second)
		e.want(e.do(http.MethodPost, "/v1/auth/passkeys/login/finish", finish(b.Ceremony, resp), nil), http.StatusBadRequest, "invalid_ceremony")
	})
	// After all of it, the genuine passkey still logs in.
	e.loginCookie(a, cred)
}

func TestPasskeysOfOneResidentAreOutOfAnothersReach(t *testing.T) {
	e := newPasskeyEnv(t, false)
	ca, cb := e.residentCookie(subA), e.residentCookie(subB)
	a := passkeytest.New(e.origin)
	credA := e.register(a, ca, "a's phone")

	// B neither sees nor removes A's passkey.
	if l := e.list(cb); len(l.Passkeys) != 0 {
		t.Fatalf("B sees %d passkeys", len(l.Passkeys))
	}
	e.want(e.do(http.MethodDelete, "/v1/auth/passkeys/"+b64(credA.ID), nil, cb), http.StatusNotFound, "passkey_not_found")
	// B cannot finish A's registration ceremony with B's own authenticator.
	b := e.begin("/v1/auth/passkeys/register/begin", nil, ca)
	resp, _, err := passkeytest.New(e.origin).Create(b.options())
	if err != nil {
		t.Fatal(err)
	}
	e.want(e.do(http.MethodPost, "/v1/auth/passkeys/register/finish", finish(b.Ceremony, resp), cb), http.StatusBadRequest, "invalid_ceremony")
	// A's passkey logs A in, never B.
	c := e.loginCookie(a, credA)
	if l := e.list(c); len(l.Passkeys) != 1 || l.Passkeys[0].Name != "a's phone" {
		t.Fatalf("A's login lists %+v", l)
	}
}

func TestPasskeyRoutesRefuseBadInputNamingTheField(t *testing.T) {
	e := newPasskeyEnv(t, false)
	c := e.residentCookie(subA)
	unbound := httptest.NewRecorder()
	if err := e.sess.Start(unbound, httptest.NewRequest(http.MethodPost, "/", nil), &auth.Principal{Role: auth.RoleResident, Actor: "oidc:https://idp#x"}); err != nil {
		t.Fatal(err)
	}
	noSubject := sessionCookie(t, unbound.Result())
	good := e.begin("/v1/auth/passkeys/register/begin", nil, c)
	for _, tc := range []struct {
		name, method, path string
		body               any
		cookie             *http.Cookie
		status             int
		code               string
	}{
		{"reject/anonymous-register", http.MethodPost, "/v1/auth/passkeys/register/begin", nil, nil, 401, "unauthenticated"},
		{"reject/anonymous-list", http.MethodGet, "/v1/auth/passkeys", nil, nil, 401, "unauthenticated"},
		{"reject/identity-not-bound", http.MethodPost, "/v1/auth/passkeys/register/begin", nil, noSubject, 403, "identity_unbound"},
		{"reject/name-too-long", http.MethodPost, "/v1/auth/passkeys/register/begin", map[string]string{"name": strings.Repeat("长", 65)}, c, 400, "invalid_name"},
		{"reject/name-control-character", http.MethodPost, "/v1/auth/passkeys/register/begin", map[string]string{"name": "a\nb"}, c, 400, "invalid_name"},
		{"reject/unknown-member", http.MethodPost, "/v1/auth/passkeys/register/begin", `{"nick":"x"}`, c, 400, "bad_json"},
		{"reject/unknown-ceremony", http.MethodPost, "/v1/auth/passkeys/login/finish", finish("nope", []byte(`{}`)), nil, 400, "invalid_ceremony"},
		{"reject/finish-without-credential", http.MethodPost, "/v1/auth/passkeys/register/finish", `{"ceremony":"x"}`, c, 400, "invalid_ceremony"},
		{"reject/credential-not-webauthn", http.MethodPost, "/v1/auth/passkeys/register/finish", finish(good.Ceremony, []byte(`{"id":"x"}`)), c, 400, "passkey_invalid"},
		{"reject/login-finish-not-json", http.MethodPost, "/v1/auth/passkeys/login/finish", "{", nil, 400, "bad_json"},
		{"reject/remove-bad-id", http.MethodDelete, "/v1/auth/passkeys/!!", nil, c, 400, "invalid_id"},
		{"reject/remove-unknown-id", http.MethodDelete, "/v1/auth/passkeys/" + b64([]byte("nothing")), nil, c, 404, "passkey_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.n.StoreVersion()
			e.want(e.do(tc.method, tc.path, tc.body, tc.cookie), tc.status, tc.code)
			if e.n.StoreVersion() != before {
				t.Fatal("a refused request wrote to the store")
			}
		})
	}
}

func TestPasskeyRoutesAnswer503WhenNotConfigured(t *testing.T) {
	n := newTestNode(t, time.Now)
	sess := auth.NewSessions(n, auth.SessionConfig{})
	srv := httptest.NewServer(api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: auth.Chain{sess}, StartSession: sess.Start}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/auth/passkeys/login/begin", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

func TestCrossOriginStateChangesAreRefused(t *testing.T) {
	e := newPasskeyEnv(t, false)
	c := e.residentCookie(subA)
	for _, tc := range []struct {
		name   string
		hdr    []string
		status int
	}{
		{"reject/origin-of-another-site", []string{"Origin", "https://evil.example"}, 403},
		{"reject/sec-fetch-site-cross-site", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"reject/sec-fetch-site-same-site", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"pass/sec-fetch-site-same-origin", []string{"Sec-Fetch-Site", "same-origin"}, 200},
		{"pass/origin-of-the-node", []string{"Origin", e.url}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(http.MethodPost, "/v1/auth/passkeys/register/begin", nil, c, tc.hdr...)
			if tc.status == 403 {
				e.want(a, 403, "cross_origin")
				// The refused logout changes nothing: the session lives.
				e.want(e.do(http.MethodPost, "/v1/auth/logout", nil, c, tc.hdr...), 403, "cross_origin")
				e.list(c)
				return
			}
			e.want(a, tc.status, "")
		})
	}
	// A machine client sends neither header and passes; a cross-site GET
	// (a link) is not a state change and passes.
	e.want(e.do(http.MethodPost, "/v1/auth/passkeys/login/begin", nil, nil), 200, "")
	e.want(e.do(http.MethodGet, "/v1/auth/passkeys", nil, c, "Sec-Fetch-Site", "cross-site"), 200, "")
	e.want(e.do(http.MethodPost, "/v1/auth/logout", nil, c), 200, "")
}

func TestPasskeysForDerivesTheRelyingPartyFromThePublicURL(t *testing.T) {
	for _, tc := range []struct {
		url, rpID, origin string
	}{
		{"http://localhost:8441", "localhost", "http://localhost:8441"},
		{"https://hcx.gd.example/", "hcx.gd.example", "https://hcx.gd.example"},
		{"https://hcx.gd.example:8443/app", "hcx.gd.example", "https://hcx.gd.example:8443"},
	} {
		cfg, err := api.PasskeysFor(tc.url)
		if err != nil || cfg.RPID != tc.rpID || len(cfg.Origins) != 1 || cfg.Origins[0] != tc.origin {
			t.Errorf("PasskeysFor(%q) = %+v, %v", tc.url, cfg, err)
		}
	}
	for _, bad := range []string{"http://127.0.0.1:8441", "http://hcx.gd.example", "ftp://localhost", "localhost:8441", ""} {
		if _, err := api.PasskeysFor(bad); err == nil {
			t.Errorf("PasskeysFor(%q) accepted", bad)
		}
	}
}
