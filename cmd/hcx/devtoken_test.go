package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/devidp"
)

// devTokenFor runs `hcx dev token` with args and returns what it printed.
func devTokenFor(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"dev", "token"}, args...), &out, &errOut)
	return strings.TrimSpace(out.String()), err
}

func bearerGet(t *testing.T, u, token string) (int, apiError) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// `hcx dev token` logs in at the federation's identity provider through the
// real code flow and prints an ID token that the nodes accept as a bearer
// token; a changed token is refused.
func TestDevTokenIsAcceptedByTheNodes(t *testing.T) {
	dir := t.TempDir()
	f := startTestFederationIn(t, dir, 1)

	// hcx dev prints the provider, every user with their password, and how
	// to get a token.
	var guide bytes.Buffer
	printDevGuide(&guide, f)
	for _, u := range f.IdP.Users() {
		if !strings.Contains(guide.String(), u.Name) || !strings.Contains(guide.String(), u.Password) {
			t.Errorf("the guide does not show dev user %s and their password", u.Name)
		}
	}
	for _, want := range []string{f.IdP.Issuer(), "hcx dev token --dir " + dir + " --role operator --province 440000", "--role resident --user li-lei"} {
		if !strings.Contains(guide.String(), want) {
			t.Errorf("the guide lacks %q:\n%s", want, guide.String())
		}
	}

	tok, err := devTokenFor(t, "--dir", dir, "--role", "operator", "--province", "440000")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("printed %q, not a JWT", tok)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if c["iss"] != f.IdP.Issuer() || c["hcx_role"] != "operator" || c["hcx_province"] != "440000" {
		t.Fatalf("claims %v", c)
	}

	// The node's authenticator reads it as Guangdong's operator.
	o := &auth.OIDC{Issuers: []auth.IssuerConfig{{URL: f.IdP.Issuer(), ClientID: devidp.NodeClientID("440000"), Audiences: []string{devidp.CLIClientID}}}}
	req, _ := http.NewRequest(http.MethodGet, f.NodeURLs["440000"]+"/healthz", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	p, err := o.Authenticate(req)
	if err != nil || p.Role != auth.RoleOperator || p.Province != "440000" {
		t.Fatalf("principal %v, %v", p, err)
	}
	for _, prov := range devProvinces {
		if status, e := bearerGet(t, f.NodeURLs[prov]+"/healthz", tok); status != http.StatusOK {
			t.Errorf("%s: %d %s", prov, status, e.Error.Code)
		}
	}
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(`"440000"`), []byte(`"510000"`), 1)) + "." + parts[2]
	if status, e := bearerGet(t, f.NodeURLs["510000"]+"/healthz", forged); status != http.StatusUnauthorized || e.Error.Code != "token_bad_signature" {
		t.Errorf("forged token: %d %s, want 401 token_bad_signature", status, e.Error.Code)
	}

	for _, args := range [][]string{{"--role", "auditor"}, {"--role", "national"}, {"--role", "resident", "--user", "li-lei"}} {
		tok, err := devTokenFor(t, append([]string{"--dir", dir}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if status, e := bearerGet(t, f.NodeURLs["110000"]+"/healthz", tok); status != http.StatusOK {
			t.Errorf("%v: %d %s", args, status, e.Error.Code)
		}
	}

	// The browser login is wired too: it sends the browser to the provider.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(f.NodeURLs["440000"] + "/v1/auth/oidc/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %s, want 302 to the identity provider", resp.Status)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), f.IdP.Issuer()) || loc.Query().Get("client_id") != devidp.NodeClientID("440000") {
		t.Errorf("login sends to %s", loc)
	}
}

func TestDevTokenRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dir", dir}, "--role"},
		{[]string{"--dir", dir, "--role", "operator"}, "--province"},
		{[]string{"--dir", dir, "--role", "operator", "--province", "449999"}, "province"},
		{[]string{"--dir", dir, "--role", "resident"}, "--user"},
		{[]string{"--dir", dir, "--role", "feed"}, "feed"},
		{[]string{"--dir", dir, "--role", "auditor"}, "start hcx dev first"},
	} {
		_, err := devTokenFor(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}
