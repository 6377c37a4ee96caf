package devidp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// NewHTTPClient is the client FetchToken and LogIn use by default: a
// 10-second time-out, and host names under .localhost dialled on the
// loopback (RFC 6761, section 6.3), as browsers and curl do, whatever the
// system resolver says. docker-compose.yml serves the provider at
// http://idp.localhost:8690: the nodes reach it by that network alias,
// the host through the port published on 127.0.0.1, and the token's iss
// is the same for both.
func NewHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, LoopbackForLocalhost(addr))
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// LoopbackForLocalhost answers 127.0.0.1:port for an address host:port
// whose host is localhost or ends in .localhost, and addr otherwise.
func LoopbackForLocalhost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// FetchToken logs user in at the provider at issuer as the command-line
// client and returns the ID token. It drives the real authorization code
// flow with PKCE, as a browser would: GET the authorization endpoint, POST
// the login form, follow the redirect back to the provider's callback,
// read the code from the redirect to CLIRedirectURI, and exchange it with
// the PKCE verifier. hc may be nil: then NewHTTPClient.
func FetchToken(ctx context.Context, hc *http.Client, issuer, user, password string) (string, error) {
	if hc == nil {
		hc = NewHTTPClient()
	}
	var meta struct {
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	if err := getJSON(ctx, hc, issuer+"/.well-known/openid-configuration", &meta); err != nil {
		return "", fmt.Errorf("discover the identity provider at %s: %w (is hcx dev running?)", issuer, err)
	}
	cfg := &oauth2.Config{
		ClientID:    CLIClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: CLIRedirectURI,
		Scopes:      []string{"openid", "profile"},
	}
	verifier := oauth2.GenerateVerifier()
	state, nonce := randomString(16), randomString(16)
	loc, err := LogIn(ctx, hc, issuer, cfg.AuthCodeURL(state, oauth2.SetAuthURLParam("nonce", nonce), oauth2.S256ChallengeOption(verifier)), user, password)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(loc.String(), CLIRedirectURI+"?") {
		return "", fmt.Errorf("authorize callback: sent to %s, not to %s", loc.Redacted(), CLIRedirectURI)
	}
	if e := loc.Query().Get("error"); e != "" {
		return "", fmt.Errorf("the provider refused the login: %s: %s", e, loc.Query().Get("error_description"))
	}
	if loc.Query().Get("state") != state {
		return "", fmt.Errorf("the provider answered with another login's state")
	}
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", fmt.Errorf("exchange the code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", fmt.Errorf("the provider answered without an ID token")
	}
	return raw, nil
}

// LogIn follows an authorization request (authURL, made by the relying
// party) through the provider at issuer as a browser would, logging in as
// user with password, and returns where the provider finally sends the
// browser: the client's redirect URI with the code and state (or an error)
// in its query.
func LogIn(ctx context.Context, hc *http.Client, issuer, authURL, user, password string) (*url.URL, error) {
	if hc == nil {
		hc = NewHTTPClient()
	}
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	loc, err := redirectOf(ctx, &noFollow, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	id := loc.Query().Get("authRequestID")
	if id == "" {
		return nil, fmt.Errorf("authorize: the provider sent us to %s, not to its login page", loc.Redacted())
	}
	form := url.Values{"id": {id}, "username": {user}, "password": {password}}
	loc, err = redirectOf(ctx, &noFollow, http.MethodPost, issuer+"/login", form)
	if err != nil {
		return nil, fmt.Errorf("log in as %s: %w", user, err)
	}
	loc, err = redirectOf(ctx, &noFollow, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("authorize callback: %w", err)
	}
	return loc, nil
}

// redirectOf makes a request that must answer with a redirect and returns
// its absolute Location.
func redirectOf(ctx context.Context, hc *http.Client, method, u string, form url.Values) (*url.URL, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("unknown user or wrong password")
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("%s %s answered %s: %s", method, req.URL.Redacted(), resp.Status, strings.TrimSpace(string(msg)))
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	return loc, nil
}

func getJSON(ctx context.Context, hc *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
