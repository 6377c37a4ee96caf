package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
)

// addVirtualAuthenticator gives the tab a platform authenticator that holds
// resident keys and verifies its user (as a phone's fingerprint would).
func (b *browser) addVirtualAuthenticator() {
	b.t.Helper()
	b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		no := false
		if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: &no}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
		return err
	}))
}

// TestPagesPasskeyCeremony: a resident handed an enrolment code by an
// operator logs in with it on the login page, registers a passkey with
// Chromium's virtual authenticator, logs out, and logs in again with the
// passkey alone.
func TestPagesPasskeyCeremony(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	b := startBrowser(t, f.NodeURLs[gd])
	code, _ := f.enrolmentCode(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619900101771"), "name": "王小明"})

	b.setPrefs("en", false)
	b.load("/app/login")
	// A malformed code is refused next to the field, in the page's
	// language.
	b.fill("#code", "not-a-code")
	b.submit("/app/login/enrol", "/app/login/enrol")
	if txt := b.text(); !strings.Contains(txt, "An enrolment code is 20 letters and digits in four groups of five.") {
		t.Fatalf("a malformed code: the page says %q", txt)
	}
	var invalid string
	b.eval(`document.getElementById("code").getAttribute("aria-invalid") || ""`, &invalid)
	if invalid != "true" {
		t.Errorf("a wrong code: the field is not marked invalid (aria-invalid %q)", invalid)
	}

	b.fill("#code", code)
	b.submit("/app/login/enrol", "/app/resident/passkeys")
	if txt := b.text(); !strings.Contains(txt, "You are logged in") || !strings.Contains(txt, "No passkey yet") {
		t.Fatalf("after the enrolment code: %q", txt)
	}

	b.addVirtualAuthenticator()
	b.fill("#passkey-name", "test phone")
	b.click("button[data-passkey-register]")
	b.waitPath("/app/resident/passkeys?done=passkey_added")
	if txt := b.text(); !strings.Contains(txt, "Passkey added.") || !strings.Contains(txt, "test phone") {
		t.Fatalf("after adding a passkey: %q", txt)
	}

	b.click("form[action='/app/logout'] button")
	b.waitPath("/app/?done=logged_out")
	if txt := b.text(); !strings.Contains(txt, "You are logged out") {
		t.Fatalf("after logging out: %q", txt)
	}
	// Logged out, a resident's page sends the browser to log in.
	b.do(chromedp.Navigate(b.base + "/app/resident/passkeys"))
	b.waitPath("/app/login?done=login_needed")

	b.click("button[data-passkey-login]")
	b.waitPath("/app/resident")
	if txt := b.text(); !strings.Contains(txt, "王*明") && !strings.Contains(txt, "王") {
		t.Fatalf("after logging in with the passkey: %q", txt)
	}
	b.load("/app/resident/passkeys")
	if txt := b.text(); !strings.Contains(txt, "test phone") || !strings.Contains(txt, "last used") {
		t.Errorf("the passkey list after a passkey login: %q", txt)
	}
}

// TestPagesFoundation: the home and login pages in every language and in
// elderly mode pass the accessibility and translation checks; the language
// and care switches work by cookie and Accept-Language picks a language;
// the pages carry a strict Content-Security-Policy; a page form from
// another origin is refused; the API beside the pages is unchanged.
func TestPagesFoundation(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	node := f.NodeURLs[gd]

	get := func(path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", node+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := get("/app/", map[string]string{"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
	if resp.StatusCode != 200 || !strings.Contains(body, `<html lang="ko"`) {
		t.Errorf("GET /app/ with Accept-Language ko: %d, %.200q", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if _, body := get("/app/", map[string]string{"Accept-Language": "fr-FR"}); !strings.Contains(body, `<html lang="zh"`) {
		t.Errorf("Accept-Language fr: want the default, Chinese: %.200q", body)
	}
	if _, body := get("/app/", map[string]string{"Accept-Language": "ja", "Cookie": "hcx_lang=en; hcx_care=1"}); !strings.Contains(body, `<html lang="en" class="care"`) {
		t.Errorf("the cookies choose English and the elderly mode over Accept-Language: %.200q", body)
	}
	if resp, _ := get("/app", nil); resp.Request.URL.Path != "/app/" {
		t.Errorf("GET /app ends at %s, want /app/", resp.Request.URL.Path)
	}
	// The API beside the pages answers as before.
	if resp, body := get("/healthz", nil); resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		t.Errorf("GET /healthz beside the pages: %d %q", resp.StatusCode, body)
	}
	// A form posted from another site is refused (cross-origin protection).
	req, _ := http.NewRequest("POST", node+"/app/prefs", strings.NewReader("lang=en&next=/app/"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site POST /app/prefs: %v %v, want 403", resp.StatusCode, err)
	}

	// A resident's credential not bound to a registered resident (a bare
	// ID token) is not taken for staff: no operator's links.
	li := f.asPerson(t, "li-lei")
	var unbound struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if st := callAs(t, f.client(), li, "GET", node+"/v1/me", nil, &unbound); st != http.StatusForbidden || unbound.Error.Code != "identity_unbound" {
		t.Fatalf("GET /v1/me with li-lei's bare ID token: %d %+v, want 403 identity_unbound", st, unbound)
	}
	req, _ = http.NewRequest("GET", node+"/app/", nil)
	li.sign(t, req, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Contains(string(body), `href="/app/operator"`) || !strings.Contains(string(body), `action="/app/logout"`) {
			t.Errorf("the home page for an unbound resident: %d, staff links or no logout:\n%s", resp.StatusCode, body)
		}
	}

	// hcx dev says where the pages are, at the passkeys' origin.
	var guide bytes.Buffer
	printDevGuide(&guide, f)
	if want := strings.Replace(node, "127.0.0.1", "localhost", 1) + "/app/"; !strings.Contains(guide.String(), want) {
		t.Errorf("hcx dev's guide does not point at %s:\n%s", want, guide.String())
	}

	b := startBrowser(t, node)
	b.eachLook("home", "/app/", nil)
	b.eachLook("login", "/app/login", func(lang string, care bool) {
		var fs string
		b.eval(`getComputedStyle(document.documentElement).fontSize`, &fs)
		if want := map[bool]string{false: "16px", true: "24px"}[care]; fs != want {
			t.Errorf("login (%s, care %v): root font size %s, want %s", lang, care, fs, want)
		}
	})

	// The switches on the page: choose Japanese, then the elderly mode;
	// the choice stays on the same page.
	b.setPrefs("zh", false)
	b.load("/app/login")
	b.click(`button[name=lang][value=ja]`)
	b.waitPath("/app/login")
	b.click(`button[name=care]`)
	b.waitPath("/app/login")
	var got struct {
		Lang string `json:"lang"`
		Care bool   `json:"care"`
	}
	b.eval(`({lang: document.documentElement.lang, care: document.documentElement.classList.contains("care")})`, &got)
	if got.Lang != "ja" || !got.Care {
		t.Errorf("after the switches: %+v, want ja in elderly mode", got)
	}
}

// TestPagesIdentityProviderLogin: from the login page opened at localhost
// (the passkeys' origin), a resident logs in at the dev identity provider
// and lands on their code page. The login starts at the node's public URL,
// where its callback is registered, so the login's state cookie and the
// callback share an origin.
func TestPagesIdentityProviderLogin(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	user := f.devUser(t, "li-lei")
	b := startBrowser(t, f.NodeURLs[gd])
	b.setPrefs("en", false)
	b.load("/app/login")
	b.click(`a[href*="/v1/auth/oidc/login"]`)
	b.idpLogin(user.Name, user.Password, "/app/resident")
	if txt := b.text(); !strings.Contains(txt, "Scan the venue code first") || !strings.Contains(txt, "Green") {
		t.Fatalf("after the identity provider's login: %s %q", b.url(), txt)
	}

	// Staff: Guangdong's operator logs in from the home page's link; the
	// navigation is a staff member's (the operator's pages are other
	// files' work: here only the login and the navigation).
	b2 := startBrowser(t, f.NodeURLs[gd])
	b2.setPrefs("en", false)
	b2.staffLogin(f, devidp.OperatorName(gd), "/app/")
	if txt := b2.text(); !strings.Contains(txt, "Operations") || !strings.Contains(txt, "Log out") || strings.Contains(txt, "My code") {
		t.Errorf("an operator's navigation: %q", txt)
	}
}
