package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/hcxfed/hcx/devidp"
)

// devInit runs `hcx dev init --dir dir --hubs 1` with more flags.
func devInit(t *testing.T, dir string, flags ...string) error {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"dev", "init", "--dir", dir, "--hubs", "1"}, flags...), &out, &out)
	if err == nil && !strings.Contains(out.String(), "identity provider") {
		t.Errorf("dev init printed %q, naming no identity provider", out.String())
	}
	return err
}

// TestDevInitWritesTheIdentityProviderAndEachNodesOIDCFile: hcx dev init
// makes the provider's state, one client per node with its callback, and
// each node's --oidc file holding that client's secret; a second run keeps
// the secrets and passwords and takes a new issuer.
func TestDevInitWritesTheIdentityProviderAndEachNodesOIDCFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "material")
	if err := devInit(t, dir, "--node-url", "440000=https://gd.example:9444"); err != nil {
		t.Fatal(err)
	}
	st, err := devidp.ReadState(filepath.Join(dir, "idp"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Issuer != "http://idp.localhost:8690" {
		t.Errorf("issuer %s, want the compose default http://idp.localhost:8690", st.Issuer)
	}
	clients, err := devidp.LoadClients(filepath.Join(dir, "idp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != len(devProvinces) {
		t.Fatalf("%d clients, want one per node (%d)", len(clients), len(devProvinces))
	}
	want := map[string]string{
		"hcx-node-110000": "https://localhost:8711/v1/auth/oidc/callback", "hcx-node-310000": "https://localhost:8731/v1/auth/oidc/callback",
		"hcx-node-440000": "https://gd.example:9444/v1/auth/oidc/callback", "hcx-node-510000": "https://localhost:8751/v1/auth/oidc/callback",
	}
	secrets := map[string]string{}
	for _, c := range clients {
		if len(c.RedirectURIs) != 1 || c.RedirectURIs[0] != want[c.ID] {
			t.Errorf("client %s redirects to %v, want %s", c.ID, c.RedirectURIs, want[c.ID])
		}
		if len(c.Secret) < 32 {
			t.Errorf("client %s has a weak secret %q", c.ID, c.Secret)
		}
		secrets[c.ID] = c.Secret
	}
	for _, p := range devProvinces {
		o, err := readOIDCConfig(filepath.Join(dir, "oidc", string(p)+".json")) // refuses a file others may read
		if err != nil {
			t.Fatalf("--oidc file of %s: %v", p, err)
		}
		is := o.Issuers[0]
		if len(o.Issuers) != 1 || is.URL != st.Issuer || is.ClientID != devidp.NodeClientID(p) || is.ClientSecret != secrets[is.ClientID] || len(is.Audiences) != 1 || is.Audiences[0] != devidp.CLIClientID {
			t.Errorf("--oidc file of %s: %+v", p, o.Issuers)
		}
	}

	if err := devInit(t, dir, "--idp-issuer", "http://idp.example:9000"); err != nil {
		t.Fatal(err)
	}
	st2, err := devidp.ReadState(filepath.Join(dir, "idp"))
	if err != nil {
		t.Fatal(err)
	}
	if st2.Issuer != "http://idp.example:9000" {
		t.Errorf("issuer after a second run with --idp-issuer: %s", st2.Issuer)
	}
	for i := range st.Users {
		if st.Users[i].Password != st2.Users[i].Password {
			t.Errorf("a second dev init changed %s's password", st.Users[i].Name)
		}
	}
	clients2, _ := devidp.LoadClients(filepath.Join(dir, "idp"))
	for _, c := range clients2 {
		if c.Secret != secrets[c.ID] {
			t.Errorf("a second dev init changed %s's secret", c.ID)
		}
	}
	if o, err := readOIDCConfig(filepath.Join(dir, "oidc", "440000.json")); err != nil || o.Issuers[0].URL != "http://idp.example:9000" {
		t.Errorf("--oidc file after the new issuer: %+v, %v", o, err)
	}
}

// TestDevInitRefusesBadIdentityProviderFlags: each bad flag is named and
// nothing is written.
func TestDevInitRefusesBadIdentityProviderFlags(t *testing.T) {
	for _, c := range []struct{ flag, value, want string }{
		{"--node-url", "440000", "P=URL"},
		{"--node-url", "990000=https://x.example", "P=URL"},
		{"--node-url", "440000=https://gd.example/", "trailing slash"},
		{"--node-url", "440000=ftp://gd.example", "http(s)"},
		{"--idp-issuer", "http://idp.example/", "--idp-issuer"},
		{"--idp-issuer", "idp.example", "--idp-issuer"},
	} {
		dir := filepath.Join(t.TempDir(), "material")
		err := devInit(t, dir, c.flag, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: %v, want an error saying %q", c.flag, c.value, err, c.want)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s %s: the refused run made %s", c.flag, c.value, dir)
		}
	}
}

// TestDevIdPServesWhatDevInitWrote runs `hcx dev idp` on the material of
// `hcx dev init`: hcx dev token --dir logs the operator in (the issuer's
// host, a .localhost name, dialled on the loopback), and a node's client
// completes a code flow with the secret from its --oidc file.
func TestDevIdPServesWhatDevInitWrote(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	issuer := fmt.Sprintf("http://idp.localhost:%d", port)
	dir := filepath.Join(t.TempDir(), "material")
	if err := devInit(t, dir, "--idp-issuer", issuer, "--node-url", "440000=https://gd.example:9444"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out, errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"dev", "idp", "--dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hcx dev idp: %v\n%s", err, errOut.String())
		}
	})
	hc := devidp.NewHTTPClient()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		resp, err := hc.Get(issuer + "/.well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("hcx dev idp does not answer at %s: %v\n%s", issuer, err, errOut.String())
		}
	}

	tok, err := devTokenFor(t, "--dir", dir, "--role", "operator", "--province", "440000")
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Fatalf("hcx dev token against hcx dev idp: %q, %v", tok, err)
	}

	o, err := readOIDCConfig(filepath.Join(dir, "oidc", "440000.json"))
	if err != nil {
		t.Fatal(err)
	}
	is := o.Issuers[0]
	cfg := &oauth2.Config{ClientID: is.ClientID, ClientSecret: is.ClientSecret, RedirectURL: "https://gd.example:9444/v1/auth/oidc/callback", Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/authorize", TokenURL: issuer + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	st, _ := devidp.ReadState(filepath.Join(dir, "idp"))
	var pw string
	for _, u := range st.Users {
		if u.Name == "li-lei" {
			pw = u.Password
		}
	}
	loc, err := devidp.LogIn(ctx, nil, issuer, cfg.AuthCodeURL("s1", oauth2.SetAuthURLParam("nonce", "n1"), oauth2.S256ChallengeOption(verifier)), "li-lei", pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.String(), cfg.RedirectURL+"?") || loc.Query().Get("code") == "" {
		t.Fatalf("the node's login went to %s, want its callback with a code", loc.Redacted())
	}
	got, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("the node's client exchanges the code with its secret: %v", err)
	}
	if id, _ := got.Extra("id_token").(string); id == "" {
		t.Error("no ID token for the node")
	}
	bad := *cfg
	bad.ClientSecret = "not-the-secret"
	loc, err = devidp.LogIn(ctx, nil, issuer, bad.AuthCodeURL("s2", oauth2.SetAuthURLParam("nonce", "n2"), oauth2.S256ChallengeOption(verifier)), "li-lei", pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Error("the provider gave tokens for a wrong client secret")
	}
}

// TestDevIdPFlags: arguments, a directory hcx dev init did not write, and
// an address that cannot be listened on are refused with what to do.
func TestDevIdPFlags(t *testing.T) {
	empty := t.TempDir()
	dir := filepath.Join(t.TempDir(), "material")
	if err := devInit(t, dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dir", dir, "extra"}, `unexpected argument "extra"`},
		{[]string{"--dir", empty, "--listen", "127.0.0.1:0"}, "run hcx dev init first"},
		{[]string{"--dir", dir, "--listen", "127.0.0.1:notaport"}, "listen on 127.0.0.1:notaport"},
		{[]string{"--nope"}, "flag provided but not defined"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"dev", "idp"}, c.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error()+out.String(), c.want) {
			t.Errorf("hcx dev idp %v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "idp", devidp.ClientsFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"dev", "idp", "--dir", dir, "--listen", "127.0.0.1:0"}, &out, &out); err == nil || !strings.Contains(err.Error(), devidp.ClientsFile) {
		t.Errorf("a broken %s: %v, want an error naming it", devidp.ClientsFile, err)
	}
}
