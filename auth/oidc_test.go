package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
)

var oidcTestProvinces = []hcx.ProvinceCode{"440000", "510000"}

func startIdP(t *testing.T) *devidp.Server {
	t.Helper()
	s, err := devidp.Start("127.0.0.1:0", devidp.Config{Provinces: oidcTestProvinces})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func devToken(t *testing.T, s *devidp.Server, name string) string {
	t.Helper()
	for _, u := range s.Users() {
		if u.Name == name {
			raw, err := devidp.FetchToken(context.Background(), nil, s.Issuer(), u.Name, u.Password)
			if err != nil {
				t.Fatal(err)
			}
			return raw
		}
	}
	t.Fatalf("no dev user %s", name)
	return ""
}

// nodeOIDC is Guangdong's node trusting idp, accepting the CLI's tokens
// as bearer tokens.
func nodeOIDC(idp *devidp.Server, now func() time.Time) *OIDC {
	return &OIDC{Now: now, Issuers: []IssuerConfig{{
		URL:       idp.Issuer(),
		ClientID:  devidp.NodeClientID("440000"),
		Audiences: []string{devidp.CLIClientID},
	}}}
}

// flipSignature changes one character in the middle of a JWT's signature:
// still base64url, no longer the signature.
func flipSignature(raw string) string {
	parts := strings.Split(raw, ".")
	sig := []byte(parts[2])
	if sig[len(sig)/2] == 'A' {
		sig[len(sig)/2] = 'B'
	} else {
		sig[len(sig)/2] = 'A'
	}
	return parts[0] + "." + parts[1] + "." + string(sig)
}

func bearer(raw string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/whatever", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	return r
}

func errCode(err error) (hcx.ErrorCode, string) {
	var e *hcx.Error
	if errors.As(err, &e) {
		return e.Class, e.Code
	}
	return "", ""
}

func TestOIDCRoleClaimsMapToPrincipals(t *testing.T) {
	idp := startIdP(t)
	o := nodeOIDC(idp, nil)
	for _, tc := range []struct {
		user string
		want Principal
	}{
		{"op-440000", Principal{Role: RoleOperator, Province: "440000", Name: "op-440000", Actor: "oidc:" + idp.Issuer() + "#op-440000", Method: MethodBearer}},
		{"op-510000", Principal{Role: RoleOperator, Province: "510000", Name: "op-510000", Actor: "oidc:" + idp.Issuer() + "#op-510000", Method: MethodBearer}},
		{"auditor", Principal{Role: RoleAuditor, Name: "auditor", Actor: "oidc:" + idp.Issuer() + "#auditor", Method: MethodBearer}},
		{"national-cdc", Principal{Role: RoleNational, Name: "national-cdc", Actor: "oidc:" + idp.Issuer() + "#national-cdc", Method: MethodBearer}},
		// A resident's subject is bound by the node, never by a bearer
		// token; their name stays out of the principal.
		{"li-lei", Principal{Role: RoleResident, Actor: "oidc:" + idp.Issuer() + "#li-lei", Method: MethodBearer}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			p, err := o.Authenticate(bearer(devToken(t, idp, tc.user)))
			if err != nil {
				t.Fatal(err)
			}
			if *p != tc.want {
				t.Errorf("principal = %+v, want %+v", *p, tc.want)
			}
		})
	}
}

func TestOIDCAttacksFail(t *testing.T) {
	idp := startIdP(t)
	other := startIdP(t) // a real provider nobody configured
	good := devToken(t, idp, "op-440000")
	foreign := devToken(t, other, "op-440000")

	parts := strings.Split(good, ".")
	flipped := flipSignature(good)
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"440000"`, `"510000"`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
	hs256 := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."

	later := func() time.Time { return time.Now().Add(devidp.IDTokenLifetime + time.Minute) }
	for _, tc := range []struct {
		name  string
		o     *OIDC
		token string
		code  string
	}{
		{"reject/unknown-issuer", nodeOIDC(idp, nil), foreign, "token_unknown_issuer"},
		{"reject/another-audience", &OIDC{Issuers: []IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.NodeClientID("440000")}}}, good, "token_wrong_audience"},
		{"reject/expired", nodeOIDC(idp, later), good, "token_expired"},
		{"reject/bad-signature", nodeOIDC(idp, nil), flipped, "token_bad_signature"},
		{"reject/claims-changed-after-signing", nodeOIDC(idp, nil), tampered, "token_bad_signature"},
		{"reject/algorithm-not-allowed", nodeOIDC(idp, nil), hs256, "token_bad_signature"},
		{"reject/unsigned", nodeOIDC(idp, nil), none, "token_bad_signature"},
		{"reject/not-a-jwt", nodeOIDC(idp, nil), "abc.def", "token_malformed"},
		{"reject/too-long", nodeOIDC(idp, nil), strings.Repeat("a", MaxIDTokenBytes+1), "token_malformed"},
		{"reject/province-the-issuer-may-not-vouch-for", &OIDC{Issuers: []IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.CLIClientID, Provinces: []hcx.ProvinceCode{"510000"}}}}, good, "token_claims"},
		// A province's own provider may not make national platform staff.
		{"reject/national-staff-from-a-province-provider", &OIDC{Issuers: []IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.CLIClientID, Provinces: []hcx.ProvinceCode{"440000"}}}}, devToken(t, idp, "national-cdc"), "token_claims"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.o.Authenticate(bearer(tc.token))
			if p != nil {
				t.Fatalf("accepted as %v", p)
			}
			class, code := errCode(err)
			if class != hcx.EUnauthorized || code != tc.code {
				t.Fatalf("err = %v (%s/%s), want unauthorized/%s", err, class, code, tc.code)
			}
		})
	}
}

func TestOIDCProviderDownIs503NamingIt(t *testing.T) {
	idp := startIdP(t)
	raw := devToken(t, idp, "auditor")
	o := nodeOIDC(idp, nil) // not yet discovered
	idp.Close()
	start := time.Now()
	_, err := o.Authenticate(bearer(raw))
	class, code := errCode(err)
	if class != hcx.EUnavailable || code != "oidc_provider_unavailable" || !strings.Contains(err.Error(), idp.Issuer()) {
		t.Fatalf("err = %v (%s/%s), want unavailable naming %s", err, class, code, idp.Issuer())
	}
	// The failure is remembered: the next request does not wait again.
	if _, err := o.Authenticate(bearer(raw)); err == nil {
		t.Fatal("accepted with the provider down")
	}
	if d := time.Since(start); d > 2*oidcDiscoveryTimeout {
		t.Errorf("took %v", d)
	}
}

func TestOIDCLeavesOtherCredentialsAlone(t *testing.T) {
	o := &OIDC{}
	for name, h := range map[string]string{
		"none":            "",
		"basic":           "Basic dXNlcjpwYXNz",
		"other-typ":       "Bearer " + base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"SM2","typ":"hcx-request+jws"}`)) + ".e30.c2ln",
		"other-scheme":    "HCX-Token abc",
		"bearer-no-space": "Bearer",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if p, err := o.Authenticate(r); p != nil || err != nil {
			t.Errorf("%s: (%v, %v), want (nil, nil)", name, p, err)
		}
	}
}

func TestVerifyIdentityReadsTheVerifiedDocument(t *testing.T) {
	idp := startIdP(t)
	o := nodeOIDC(idp, nil)
	id, err := o.VerifyIdentity(context.Background(), devToken(t, idp, "han-meimei"))
	if err != nil {
		t.Fatal(err)
	}
	want := VerifiedIdentity{DocType: hcx.DocCNID, DocNumber: "510107199203010040", Name: "韩梅梅", Issuer: idp.Issuer(), Subject: "han-meimei"}
	if *id != want {
		t.Errorf("identity = %+v, want %+v", *id, want)
	}
	if _, err := o.VerifyIdentity(context.Background(), devToken(t, idp, "op-440000")); err == nil {
		t.Error("an operator's token gave an identity to bind")
	} else if _, code := errCode(err); code != "token_claims" {
		t.Errorf("operator: %v", err)
	}
}

func TestOIDCClaimsAreChecked(t *testing.T) {
	is := &issuer{cfg: IssuerConfig{URL: "https://idp.example"}}
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		claims hcxClaims
		ident  bool
	}{
		{"reject/no-role", hcxClaims{}, false},
		{"reject/machine-role", hcxClaims{Role: "feed", Province: "440000"}, false},
		{"reject/operator-without-province", hcxClaims{Role: "operator"}, false},
		{"reject/operator-of-a-prefecture", hcxClaims{Role: "operator", Province: "440100"}, false},
		{"reject/operator-of-no-province", hcxClaims{Role: "operator", Province: "990000"}, false},
		{"reject/long-username", hcxClaims{Role: "auditor", PreferredUsername: strings.Repeat("x", 65)}, false},
		{"reject/document-not-verified", hcxClaims{Role: "resident", Name: "李雷", DocType: "CN-ID", DocNumber: "440106198805120037"}, true},
		{"reject/bad-check-digit", hcxClaims{Role: "resident", Name: "李雷", DocType: "CN-ID", DocNumber: "440106198805120038", DocVerified: true}, true},
		{"reject/unknown-document-type", hcxClaims{Role: "resident", Name: "李雷", DocType: "passport", DocNumber: "E12345678", DocVerified: true}, true},
		{"reject/no-name", hcxClaims{Role: "resident", DocType: "CN-ID", DocNumber: "440106198805120037", DocVerified: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &verified{iss: is, tok: &oidc.IDToken{Subject: "u1"}, claims: tc.claims}
			var err error
			if tc.ident {
				_, err = v.identity(now)
			} else {
				_, err = v.principal()
			}
			if class, code := errCode(err); class != hcx.EUnauthorized || code != "token_claims" {
				t.Fatalf("err = %v, want token_claims", err)
			}
		})
	}
}

// exchangeFixture is a node client registered at a real provider, with a
// redirect URI nobody serves: the test reads the code from the redirect.
func exchangeFixture(t *testing.T) (*devidp.Server, *OIDC, string) {
	t.Helper()
	idp := startIdP(t)
	const redirect = "http://127.0.0.1:1/v1/auth/oidc/callback"
	if err := idp.RegisterClient(devidp.Client{ID: devidp.NodeClientID("440000"), Secret: "s3cret", RedirectURIs: []string{redirect}}); err != nil {
		t.Fatal(err)
	}
	o := &OIDC{Issuers: []IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.NodeClientID("440000"), ClientSecret: "s3cret"}}}
	return idp, o, redirect
}

func password(t *testing.T, idp *devidp.Server, name string) string {
	for _, u := range idp.Users() {
		if u.Name == name {
			return u.Password
		}
	}
	t.Fatalf("no dev user %s", name)
	return ""
}

// codeFor runs a login up to the code.
func codeFor(t *testing.T, idp *devidp.Server, o *OIDC, redirect, user, nonce, verifier string) string {
	t.Helper()
	ctx := context.Background()
	authURL, err := o.AuthCodeURL(idp.Issuer(), redirect, "state-1", nonce, verifier)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := devidp.LogIn(ctx, nil, idp.Issuer(), authURL, user, password(t, idp, user))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Query().Get("state") != "state-1" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s", loc)
	}
	return loc.Query().Get("code")
}

func TestOIDCExchangeChecksNonceAndPKCE(t *testing.T) {
	idp, o, redirect := exchangeFixture(t)
	ctx := context.Background()
	verifier := "a-pkce-verifier-of-enough-length-0123456789abcdef"

	code := codeFor(t, idp, o, redirect, "wang-fang", "nonce-1", verifier)
	l, err := o.Exchange(ctx, idp.Issuer(), redirect, code, verifier, "nonce-1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Principal.Role != RoleResident || l.Principal.Method != MethodSession || l.Identity == nil || l.Identity.DocNumber != "110105198501010020" {
		t.Fatalf("login %+v / %+v", l.Principal, l.Identity)
	}
	// A code works once.
	if _, err := o.Exchange(ctx, idp.Issuer(), redirect, code, verifier, "nonce-1"); err == nil {
		t.Fatal("a code was exchanged twice")
	} else if _, c := errCode(err); c != "oidc_code_refused" {
		t.Errorf("second exchange: %v", err)
	}

	code = codeFor(t, idp, o, redirect, "op-440000", "nonce-2", verifier)
	if _, err := o.Exchange(ctx, idp.Issuer(), redirect, code, verifier+"x", "nonce-2"); err == nil {
		t.Fatal("a code was exchanged with another PKCE verifier")
	} else if _, c := errCode(err); c != "oidc_code_refused" {
		t.Errorf("wrong verifier: %v", err)
	}

	code = codeFor(t, idp, o, redirect, "op-440000", "nonce-3", verifier)
	if _, err := o.Exchange(ctx, idp.Issuer(), redirect, code, verifier, "nonce-of-another-login"); err == nil {
		t.Fatal("an ID token with another login's nonce was accepted")
	} else if _, c := errCode(err); c != "token_nonce" {
		t.Errorf("wrong nonce: %v", err)
	}

	if _, err := o.AuthCodeURL("https://evil.example", redirect, "s", "n", verifier); err == nil {
		t.Error("a login at an unknown issuer was started")
	} else if class, c := errCode(err); class != hcx.EInvalid || c != "invalid_issuer" {
		t.Errorf("unknown issuer: %v", err)
	}
}

// Many requests at once on a provider not yet discovered: one discovery,
// every token read the same (run with -race).
func TestOIDCConcurrentFirstUse(t *testing.T) {
	idp := startIdP(t)
	raw := devToken(t, idp, "op-510000")
	o := nodeOIDC(idp, nil)
	errs := make(chan error, 16)
	for i := 0; i < cap(errs); i++ {
		go func() {
			p, err := o.Authenticate(bearer(raw))
			if err == nil && p.Province != "510000" {
				err = errors.New("wrong province " + string(p.Province))
			}
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
