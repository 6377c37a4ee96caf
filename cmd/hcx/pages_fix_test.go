package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
)

// The follow-ups of issue 16's pages in Chromium against a real dev
// federation: a dead session's cookie is cleared by whatever page meets it;
// the navigation shows each role its own pages; an operator issues, lists
// and revokes checkpoint codes on a page.

// navLinks are the navigation's links on the page shown.
func (b *browser) navLinks() []string {
	b.t.Helper()
	var links []string
	b.eval(`[...document.querySelectorAll("nav.nav a")].map(a => a.getAttribute("href"))`, &links)
	return links
}

// sessionCookie is the browser's session cookie for its current origin, ""
// when it has none.
func (b *browser) sessionCookie() string {
	b.t.Helper()
	var value string
	b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
		if err != nil {
			return err
		}
		for _, c := range cookies.Cookies {
			if c.Name == "hcx_session" {
				value = c.Value
			}
		}
		return nil
	}))
	return value
}

// TestPagesFollowUps: a resident whose session was ended elsewhere reloads
// a page, lands on the login page without the dead cookie and logs in
// again with an enrolment code; the navigation of a resident, a checkpoint,
// an operator and the auditor lists only their pages; an operator issues a
// checkpoint code on the page, a second browser logs in with it and checks
// a code, the operator revokes it on the page, and the checkpoint browser
// is sent to log in; GET /v1/checkpoint-codes never answers a code and
// names a bad parameter.
func TestPagesFollowUps(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	node := f.NodeURLs[gd]
	waitReady(t, node) // the trust list is in: the codes verify
	reg := map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619900101661"), "name": "林小玲"}
	first, sub := f.enrolmentCode(t, gd, reg)
	greenSub, green := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619880808551"), "name": "周明"})
	gc := codeOf(t, f, gd, greenSub, green)

	b := startBrowser(t, node)
	b.setPrefs("en", false)

	t.Run("dead session", func(t *testing.T) {
		b.t = t
		b.enrol(first)
		if got, want := b.navLinks(), []string{"/app/resident", "/app/resident/declare", "/app/resident/checks", "/app/resident/appeals", "/app/resident/passkeys", "/app/venues"}; !slices.Equal(got, want) {
			t.Errorf("a resident's navigation: %q, want %q", got, want)
		}
		// The session ends elsewhere: a logout through the API with the
		// same cookie (as another tab of the app would).
		cookie := b.sessionCookie()
		if cookie == "" {
			t.Fatal("no session cookie after the enrolment code")
		}
		req, _ := http.NewRequest("POST", node+"/v1/auth/logout", nil)
		req.AddCookie(&http.Cookie{Name: "hcx_session", Value: cookie})
		resp, err := f.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("logout elsewhere: %d", resp.StatusCode)
		}
		b.do(chromedp.Navigate(b.base + "/app/resident?sub=" + string(sub)))
		b.waitPath("/app/login?done=login_needed")
		if c := b.sessionCookie(); c != "" {
			t.Errorf("the ended session's cookie is still in the browser on the login page")
		}
		// Without clearing cookies by hand, the resident logs in again
		// (with a new code: a person has one enrolment code at a time).
		second, _ := f.enrolmentCode(t, gd, reg)
		b.enrol(second)
		if txt := b.text(); !strings.Contains(txt, "You are logged in") {
			t.Fatalf("logging in again: %q", txt)
		}
		b.click("form[action='/app/logout'] button")
		b.waitPath("/app/?done=logged_out")
	})

	var issued struct{ id, code string }
	ob := startBrowser(t, node)
	ob.setPrefs("en", false)

	t.Run("operator issues", func(t *testing.T) {
		ob.t = t
		ob.staffLogin(f, devidp.OperatorName(gd), "/app/operator")
		if got, want := ob.navLinks(), []string{"/app/operator", "/app/checkpoint"}; !slices.Equal(got, want) {
			t.Errorf("an operator's navigation: %q, want %q", got, want)
		}
		ob.click(`a[href="/app/operator/checkpoints"]`)
		ob.waitPath("/app/operator/checkpoints")
		if txt := ob.text(); !strings.Contains(txt, "No checkpoint code has been issued.") {
			t.Errorf("the empty list: %q", txt)
		}
		// No reason: refused next to the reason field, nothing issued.
		ob.fill("#name", "Gate 7")
		ob.fill("#unit", "Baiyun station")
		ob.eval(`document.getElementById("reason").removeAttribute("required")`, nil)
		ob.submit("/app/operator/checkpoints", "/app/operator/checkpoints")
		var invalid string
		ob.eval(`document.getElementById("reason").getAttribute("aria-invalid") || ""`, &invalid)
		if txt := ob.text(); invalid != "true" || !strings.Contains(txt, "Say why") || ob.has("#op-cp-code") {
			t.Fatalf("no reason: aria-invalid %q, the page says %q", invalid, txt)
		}
		ob.fill("#name", "Gate 7")
		ob.fill("#unit", "Baiyun station")
		ob.fill("#reason", "the autumn fair's east gate")
		ob.submit("/app/operator/checkpoints", "/app/operator/checkpoints")
		ob.eval(`document.getElementById("op-cp-code").innerText.trim()`, &issued.code)
		ob.eval(`document.querySelector("#op-cp-list li").dataset.id`, &issued.id)
		if len(issued.code) != 23 || len(issued.id) != 16 {
			t.Fatalf("issued code %q, id %q", issued.code, issued.id)
		}
		if txt := ob.text(); !strings.Contains(txt, "Code for Gate 7") || !strings.Contains(txt, "Valid once, until") || !strings.Contains(txt, "Not used yet") {
			t.Errorf("the issued code's page: %q", txt)
		}
		ob.screenshot("operator-checkpoints-issued")
		// Reloading the list shows the code no more.
		ob.load("/app/operator/checkpoints")
		if strings.Contains(ob.text(), issued.code) {
			t.Error("the list shows the code again")
		}
	})

	t.Run("checkpoint logs in and checks", func(t *testing.T) {
		b.t = t
		b.load("/app/checkpoint/login")
		b.fill("#code", issued.code)
		b.click("form[action='/app/checkpoint/login'] button[type=submit]")
		b.waitPath("/app/checkpoint?done=checkpoint_in")
		if got, want := b.navLinks(), []string{"/app/checkpoint"}; !slices.Equal(got, want) {
			t.Errorf("a checkpoint's navigation: %q, want %q", got, want)
		}
		b.do(chromedp.SendKeys(chromedp.CSS("#scan"), gc.text+"\r"))
		if txt := b.waitResult("green"); !strings.Contains(txt, "周*") {
			t.Errorf("the checkpoint's check: %q", txt)
		}
	})

	t.Run("operator revokes", func(t *testing.T) {
		ob.t = t
		ob.load("/app/operator/checkpoints")
		if txt := ob.text(); !strings.Contains(txt, "Used ") {
			t.Errorf("the list after the code's use: %q", txt)
		}
		item := `#op-cp-list li[data-id="` + issued.id + `"]`
		ob.fill(item+" input[name=reason]", "the fair is over")
		ob.click(item + " button[type=submit]")
		ob.waitPath("/app/operator/checkpoints?done=checkpoint_code_revoked")
		if txt := ob.text(); !strings.Contains(txt, "The checkpoint code is revoked") || !strings.Contains(txt, "Revoked ") || ob.has(item+" form") {
			t.Errorf("after revoking: %q", txt)
		}
		b.t = t
		b.do(chromedp.Navigate(b.base + "/app/checkpoint"))
		b.waitPath("/app/checkpoint/login")
	})

	t.Run("looks", func(t *testing.T) {
		ob.t = t
		ob.eachLook("operator-checkpoints", "/app/operator/checkpoints", nil)
	})

	t.Run("api list", func(t *testing.T) {
		hc, op := f.client(), f.asOperator(t, gd)
		for _, who := range []caller{op, f.asPerson(t, devidp.AuditorName)} {
			var raw json.RawMessage
			if st := callAs(t, hc, who, "GET", node+"/v1/checkpoint-codes?limit=10", nil, &raw); st != http.StatusOK {
				t.Fatalf("%s lists the codes: %d", who.name, st)
			}
			var page struct {
				Codes []map[string]any `json:"codes"`
			}
			if err := json.Unmarshal(raw, &page); err != nil || len(page.Codes) != 1 {
				t.Fatalf("%s's list: %s", who.name, raw)
			}
			c := page.Codes[0]
			for _, k := range []string{"id", "name", "unit", "issued_by", "issued", "expires", "used", "revoked"} {
				if c[k] == nil || c[k] == "" {
					t.Errorf("%s's list has no %s: %s", who.name, k, raw)
				}
			}
			if _, ok := c["code"]; ok || strings.Contains(string(raw), issued.code) || strings.Contains(string(raw), strings.ReplaceAll(issued.code, "-", "")) {
				t.Errorf("%s's list carries the code: %s", who.name, raw)
			}
		}
		for _, bad := range []struct{ query, field string }{{"limit=0", "limit"}, {"limit=201", "limit"}, {"before=zz", "before"}, {"after=x", "after"}} {
			var e struct {
				Error struct {
					Field string `json:"field"`
				} `json:"error"`
			}
			if st := callAs(t, hc, op, "GET", node+"/v1/checkpoint-codes?"+bad.query, nil, &e); st != http.StatusBadRequest || e.Error.Field != bad.field {
				t.Errorf("?%s: %d naming %q, want 400 naming %s", bad.query, st, e.Error.Field, bad.field)
			}
		}
	})

	t.Run("auditor", func(t *testing.T) {
		ob.t = t
		ob.click("form[action='/app/logout'] button")
		ob.waitPath("/app/?done=logged_out")
		ob.staffLogin(f, devidp.AuditorName, "/app/auditor")
		if got, want := ob.navLinks(), []string{"/app/auditor"}; !slices.Equal(got, want) {
			t.Errorf("the auditor's navigation: %q, want %q", got, want)
		}
	})
}

// has reports whether the page shows an element matching sel.
func (b *browser) has(sel string) bool {
	b.t.Helper()
	var ok bool
	sj, _ := json.Marshal(sel)
	b.eval(`document.querySelector(`+string(sj)+`) !== null`, &ok)
	return ok
}
