package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/node"
)

// oidcFixture is Guangdong's node (real badger) trusting a real dev
// identity provider, both over HTTP on loopback.
type oidcFixture struct {
	idp  *devidp.Server
	node *node.Node
	url  string

	mu       sync.Mutex
	sessions []auth.Principal        // recorded by the test-only StartSession
	bound    []auth.VerifiedIdentity // seen by the test-only BindIdentity
}

func newOIDCFixture(t *testing.T) *oidcFixture {
	t.Helper()
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{Provinces: []hcx.ProvinceCode{"440000", "510000"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	f := &oidcFixture{idp: idp, node: newTestNode(t, time.Now)}
	const secret = "node-secret-for-tests"
	opts := api.NodeOptions{
		OIDC: &auth.OIDC{Issuers: []auth.IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.NodeClientID("440000"), ClientSecret: secret}}},
		// recordSession stands in for the sessions package.
		StartSession: func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.sessions = append(f.sessions, *p)
			return nil
		},
		// bindByRegistering stands in for the identity package: the
		// verified document becomes a resident of this node.
		BindIdentity: func(ctx context.Context, id auth.VerifiedIdentity) (hcx.Subject, error) {
			f.mu.Lock()
			f.bound = append(f.bound, id)
			f.mu.Unlock()
			res, err := f.node.Register(ctx, node.RegisterRequest{DocType: id.DocType, DocNumber: id.DocNumber, Name: id.Name})
			if err != nil {
				return "", err
			}
			return res.Subject, nil
		},
	}
	f.url = "http://" + serve(t, api.NewNodeHandler(f.node, slog.New(slog.NewTextHandler(io.Discard, nil)), opts), api.ServerTimeouts{})
	if err := idp.RegisterClient(devidp.Client{ID: devidp.NodeClientID("440000"), Secret: secret, RedirectURIs: []string{f.url + "/v1/auth/oidc/callback"}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *oidcFixture) password(t *testing.T, name string) string {
	t.Helper()
	for _, u := range f.idp.Users() {
		if u.Name == name {
			return u.Password
		}
	}
	t.Fatalf("no dev user %s", name)
	return ""
}

// browser is a cookie-keeping client that follows redirects, except into
// the node's callback when stopAtCallback is set.
func browser(t *testing.T, stopAtCallback bool) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if stopAtCallback && req.URL.Path == "/v1/auth/oidc/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// loginAt starts a login at the node with next and fills in the identity
// provider's password form; it returns the last answer.
func (f *oidcFixture) loginAt(t *testing.T, b *http.Client, next, user string) *http.Response {
	t.Helper()
	resp, err := b.Get(f.url + "/v1/auth/oidc/login?next=" + url.QueryEscape(next))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), f.idp.Issuer()+"/login") {
		t.Fatalf("login start ended at %s with %s, want the provider's login page", resp.Request.URL, resp.Status)
	}
	id := resp.Request.URL.Query().Get("authRequestID")
	resp, err = b.PostForm(f.idp.Issuer()+"/login", url.Values{"id": {id}, "username": {user}, "password": {f.password(t, user)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeAPIError(t *testing.T, resp *http.Response) string {
	t.Helper()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("answer %s is not an API error: %s", resp.Status, b)
	}
	return e.Error.Code
}

func TestOIDCBrowserLoginOfAGuangdongOperator(t *testing.T) {
	f := newOIDCFixture(t)
	resp := f.loginAt(t, browser(t, false), "/healthz", "op-440000")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != f.url+"/healthz" {
		t.Fatalf("login ended at %s with %s, want %s/healthz", resp.Request.URL, resp.Status, f.url)
	}
	if len(f.sessions) != 1 {
		t.Fatalf("%d sessions started, want 1", len(f.sessions))
	}
	want := auth.Principal{Role: auth.RoleOperator, Province: "440000", Name: "op-440000", Actor: "oidc:" + f.idp.Issuer() + "#op-440000", Method: auth.MethodSession}
	if got := f.sessions[0]; got != want {
		t.Errorf("session principal = %+v, want %+v", got, want)
	}
	if len(f.bound) != 0 {
		t.Errorf("an operator's login bound an identity: %d", len(f.bound))
	}
}

func TestOIDCBrowserLoginBindsAResidentsVerifiedDocument(t *testing.T) {
	f := newOIDCFixture(t)
	resp := f.loginAt(t, browser(t, false), "/healthz", "li-lei")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login ended at %s with %s", resp.Request.URL, resp.Status)
	}
	if len(f.bound) != 1 || f.bound[0].DocNumber != "440106198805120037" || f.bound[0].Name != "李雷" || f.bound[0].DocType != hcx.DocCNID {
		t.Fatalf("bound %+v", f.bound)
	}
	if len(f.sessions) != 1 {
		t.Fatalf("%d sessions", len(f.sessions))
	}
	p := f.sessions[0]
	if p.Role != auth.RoleResident || p.Subject == "" || p.Actor != "resident:"+string(p.Subject) || p.Name != "" {
		t.Errorf("session principal = %+v", p)
	}
	if _, err := f.node.Resident(context.Background(), p.Subject); err != nil {
		t.Errorf("the bound subject is not a resident: %v", err)
	}
}

func TestOIDCCallbackRefusesAnotherBrowsersState(t *testing.T) {
	f := newOIDCFixture(t)
	// The attacker logs in with their own account and stops at the
	// callback, then lures the victim's browser to it (login CSRF).
	attacker := browser(t, true)
	resp := f.loginAt(t, attacker, "/healthz", "op-510000")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("attacker's login: %s", resp.Status)
	}
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, f.url+"/v1/auth/oidc/callback?") {
		t.Fatalf("callback %q", callback)
	}
	victim := browser(t, false)
	// The victim has a login of their own under way: its state is not the
	// attacker's either.
	if r, err := victim.Get(f.url + "/v1/auth/oidc/login"); err == nil {
		r.Body.Close()
	}
	resp, err := victim.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if code := decodeAPIError(t, resp); resp.StatusCode != http.StatusForbidden || code != "oidc_state_mismatch" {
		t.Fatalf("victim's callback: %s %s, want 403 oidc_state_mismatch", resp.Status, code)
	}

	// The attacker's own browser with the state changed: refused too.
	u, _ := url.Parse(callback)
	q := u.Query()
	q.Set("state", q.Get("state")+"x")
	u.RawQuery = q.Encode()
	resp2, err := attacker.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	if code := decodeAPIError(t, resp2); resp2.StatusCode != http.StatusForbidden || code != "oidc_state_mismatch" {
		t.Fatalf("changed state: %s %s", resp2.Status, code)
	}
	if len(f.sessions) != 0 {
		t.Fatalf("a session was started: %+v", f.sessions)
	}
}

func TestOIDCCallbackWorksOnce(t *testing.T) {
	f := newOIDCFixture(t)
	b := browser(t, true)
	resp := f.loginAt(t, b, "/healthz", "auditor")
	callback := resp.Header.Get("Location")
	jar := b.Jar
	cookies := jar.Cookies(mustURL(t, callback))
	for i, want := range []int{http.StatusSeeOther, http.StatusBadRequest} { // the second: oidc_state_unknown
		// Replay with the same cookie, as a thief of both would.
		req, _ := http.NewRequest(http.MethodGet, callback, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		r, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Fatalf("callback #%d: %s, want %d", i+1, r.Status, want)
		}
	}
	if len(f.sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(f.sessions))
	}
}

func TestOIDCLoginRefusesNextOnAnotherOrigin(t *testing.T) {
	f := newOIDCFixture(t)
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/evil.example", "javascript:alert(1)", "evil.example", "/ok\r\nLocation: https://evil.example", strings.Repeat("/a", 600)} {
		resp, err := browser(t, false).Get(f.url + "/v1/auth/oidc/login?next=" + url.QueryEscape(next))
		if err != nil {
			t.Fatal(err)
		}
		if code := decodeAPIError(t, resp); resp.StatusCode != http.StatusBadRequest || code != "invalid_next" {
			t.Errorf("next=%q: %s %s, want 400 invalid_next", next, resp.Status, code)
		}
		resp.Body.Close()
	}
}

func TestOIDCLoginIsOffWithoutAProvider(t *testing.T) {
	n := newTestNode(t, time.Now)
	u := "http://" + serve(t, api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{}), api.ServerTimeouts{})
	resp, err := http.Get(u + "/v1/auth/oidc/login")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if code := decodeAPIError(t, resp); resp.StatusCode != http.StatusServiceUnavailable || code != "oidc_not_configured" {
		t.Fatalf("%s %s", resp.Status, code)
	}
}

func TestOIDCLoginRefusesAnUnknownIssuer(t *testing.T) {
	f := newOIDCFixture(t)
	resp, err := browser(t, false).Get(f.url + "/v1/auth/oidc/login?issuer=" + url.QueryEscape("https://evil.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if code := decodeAPIError(t, resp); resp.StatusCode != http.StatusBadRequest || code != "invalid_issuer" {
		t.Fatalf("%s %s", resp.Status, code)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
