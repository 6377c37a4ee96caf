package devidp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/hcxfed/hcx"
)

var testProvinces = []hcx.ProvinceCode{"110000", "440000"}

func startTest(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", Config{Dir: dir, Provinces: testProvinces})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func user(t *testing.T, s *Server, name string) User {
	t.Helper()
	for _, u := range s.Users() {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no dev user %s", name)
	return User{}
}

// claimsOf decodes a JWT's payload without checking it (auth's tests
// check tokens for real).
func claimsOf(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDevResidentsHaveValidDocuments(t *testing.T) {
	for _, r := range devResidents {
		if err := hcx.ValidateDocument(r.DocType, r.DocNumber, time.Now()); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
}

func TestCodeFlowIssuesRoleClaims(t *testing.T) {
	s := startTest(t, "")
	ctx := context.Background()
	for _, tc := range []struct {
		user  string
		check func(t *testing.T, c map[string]any)
	}{
		{"op-440000", func(t *testing.T, c map[string]any) {
			if c["hcx_role"] != "operator" || c["hcx_province"] != "440000" {
				t.Errorf("claims %v", c)
			}
		}},
		{"auditor", func(t *testing.T, c map[string]any) {
			if c["hcx_role"] != "auditor" || c["hcx_province"] != nil {
				t.Errorf("claims %v", c)
			}
		}},
		{"national-cdc", func(t *testing.T, c map[string]any) {
			if c["hcx_role"] != "national" || c["hcx_province"] != nil {
				t.Errorf("claims %v", c)
			}
		}},
		{"li-lei", func(t *testing.T, c map[string]any) {
			if c["hcx_role"] != "resident" || c["hcx_doc_number"] != "440106198805120037" || c["hcx_doc_verified"] != true || c["hcx_doc_type"] != "CN-ID" || c["name"] != "李雷" {
				t.Errorf("claims %v", c)
			}
		}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			u := user(t, s, tc.user)
			raw, err := FetchToken(ctx, nil, s.Issuer(), u.Name, u.Password)
			if err != nil {
				t.Fatal(err)
			}
			c := claimsOf(t, raw)
			if c["iss"] != s.Issuer() || c["sub"] != u.Name || c["preferred_username"] != u.Name {
				t.Errorf("iss/sub: %v", c)
			}
			if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != CLIClientID {
				t.Errorf("aud = %v, want [%s]", c["aud"], CLIClientID)
			}
			tc.check(t, c)
		})
	}
}

func TestLoginRefusesWrongPassword(t *testing.T) {
	s := startTest(t, "")
	_, err := FetchToken(context.Background(), nil, s.Issuer(), "op-440000", "not-the-password")
	if err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("err = %v, want wrong password", err)
	}
	_, err = FetchToken(context.Background(), nil, s.Issuer(), "nobody", "x")
	if err == nil {
		t.Fatal("an unknown user logged in")
	}
}

func TestKeyAndPasswordsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s1 := startTest(t, dir)
	u1 := user(t, s1, "auditor")
	kid1 := s1.store.key.id
	s1.Close()
	s2 := startTest(t, dir)
	if u2 := user(t, s2, "auditor"); u2.Password != u1.Password {
		t.Error("the auditor's password changed across a restart")
	}
	if s2.store.key.id != kid1 {
		t.Error("the signing key changed across a restart")
	}
	st, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Issuer != s2.Issuer() || st.CLIClientID != CLIClientID || len(st.Users) != len(s2.Users()) {
		t.Errorf("state %+v", st)
	}
}

func TestAuthRequestsAreBoundedAndExpire(t *testing.T) {
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	s, err := New(Config{Issuer: "http://127.0.0.1:1", Provinces: testProvinces, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	st := s.store
	for i := 0; i < MaxAuthRequests; i++ {
		st.requests[randomString(8)] = &authRequest{expires: now.Add(AuthRequestTTL)}
	}
	if _, err := st.CreateAuthRequest(context.Background(), fakeAuthRequest(), ""); err == nil {
		t.Fatal("an auth request beyond the bound was accepted")
	}
	now = now.Add(AuthRequestTTL + time.Second)
	r, err := st.CreateAuthRequest(context.Background(), fakeAuthRequest(), "")
	if err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if len(st.requests) != 1 {
		t.Errorf("%d requests kept, want only the new one", len(st.requests))
	}
	now = now.Add(AuthRequestTTL + time.Second)
	if _, err := st.AuthRequestByID(context.Background(), r.GetID()); err == nil {
		t.Error("an expired auth request was found")
	}
	if err := st.checkPassword(r.GetID(), "auditor", user(t, s, "auditor").Password); err != errAuthRequestGone {
		t.Errorf("login on an expired request: %v", err)
	}
}

func TestNewRefusesBadIssuer(t *testing.T) {
	for _, iss := range []string{"", "127.0.0.1:8690", "ftp://x", "http://127.0.0.1:8690/"} {
		if _, err := New(Config{Issuer: iss}); err == nil {
			t.Errorf("issuer %q accepted", iss)
		}
	}
}

func fakeAuthRequest() *oidc.AuthRequest {
	return &oidc.AuthRequest{ClientID: CLIClientID, RedirectURI: CLIRedirectURI, ResponseType: oidc.ResponseTypeCode, Scopes: []string{"openid"}}
}

func TestLoginPage(t *testing.T) {
	s := startTest(t, "")
	resp, err := http.Get(s.Issuer() + "/login?authRequestID=nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login page for an unknown request: %s, want 400", resp.Status)
	}
	r, err := s.store.CreateAuthRequest(context.Background(), fakeAuthRequest(), "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(s.Issuer() + "/login?authRequestID=" + r.GetID())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="password"`) || !strings.Contains(string(body), r.GetID()) {
		t.Errorf("login page: %s %s", resp.Status, body)
	}
	resp, err = http.PostForm(s.Issuer()+"/login", url.Values{"id": {r.GetID()}, "username": {"auditor"}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "wrong password") {
		t.Errorf("wrong password: %s %s", resp.Status, body)
	}
	if done, _ := s.store.AuthRequestByID(context.Background(), r.GetID()); done.Done() {
		t.Error("a wrong password completed the login")
	}
	resp, err = http.Post(s.Issuer()+"/login", "application/x-www-form-urlencoded", strings.NewReader("id="+strings.Repeat("a", maxLoginForm)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an oversized form: %s, want 400", resp.Status)
	}
}

func TestLoopbackForLocalhostDialsLocalhostNamesOnTheLoopback(t *testing.T) {
	for in, want := range map[string]string{
		"idp.localhost:8690":  "127.0.0.1:8690",
		"IDP.LocalHost.:8690": "127.0.0.1:8690",
		"localhost:443":       "127.0.0.1:443",
		"idp:8690":            "idp:8690",
		"localhost.example:1": "localhost.example:1",
		"notlocalhost:1":      "notlocalhost:1",
		"10.0.0.1:80":         "10.0.0.1:80",
		"no-port":             "no-port",
	} {
		if got := LoopbackForLocalhost(in); got != want {
			t.Errorf("LoopbackForLocalhost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientsFileRoundTripsAndIsBounded(t *testing.T) {
	dir := t.TempDir()
	if cs, err := LoadClients(dir); err != nil || cs != nil {
		t.Fatalf("no file: %v, %v; want no clients", cs, err)
	}
	cs := []Client{{ID: "hcx-node-440000", Secret: "s", RedirectURIs: []string{"https://localhost:8744/v1/auth/oidc/callback"}}, {ID: "public", RedirectURIs: []string{"http://127.0.0.1/cb"}}}
	if err := SaveClients(dir, cs); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ClientsFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600 (it holds secrets)", ClientsFile, err, fi.Mode())
	}
	got, err := LoadClients(dir)
	if err != nil || len(got) != 2 || got[0].Secret != "s" || got[1].Secret != "" || got[0].RedirectURIs[0] != cs[0].RedirectURIs[0] {
		t.Fatalf("loaded %+v, %v; want %+v", got, err, cs)
	}
	if err := SaveClients(dir, make([]Client, MaxClients+1)); err == nil {
		t.Error("saved more than MaxClients clients")
	}
	b, _ := json.Marshal(make([]Client, MaxClients+1))
	if err := os.WriteFile(filepath.Join(dir, ClientsFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClients(dir); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("loaded a file of %d clients: %v", MaxClients+1, err)
	}
}
