package main

// The browser harness of the pages' tests (issue 16), shared by every page
// test: a headless Debian Chromium driven by chromedp against a real dev
// federation's node. Page tests of other roles reuse them: startBrowser,
// load, submit, fill, click, waitPath, text, eval; setPrefs (language,
// elderly mode); enrol (a resident, with f.enrolmentCode), staffLogin (an
// operator or the auditor at the dev identity provider); checkA11y,
// noMissingTranslations, screenshot and eachLook (all of them on one page
// in every language, normal and elderly).

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the pages' screenshots to docs/screenshots/")

// browserPaths are where Debian and others put Chromium.
var browserPaths = []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}

// findBrowser returns the Chromium to drive, or "" when there is none.
func findBrowser() string {
	for _, p := range browserPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// Phone-sized first: the viewport of the tests and screenshots.
const (
	viewportW = 360
	viewportH = 740
)

// browser is one headless Chromium tab on one node's pages.
type browser struct {
	t    testing.TB
	ctx  context.Context
	base string // http://localhost:PORT (an IP address is no WebAuthn relying party)
	node string // the node's public URL (http://127.0.0.1:PORT in dev), where OIDC logins run
	lang string
	care bool
}

// startBrowser starts Chromium on the pages of the node at nodeURL, with
// the extra options a test needs (a fake camera's flags). Without
// Chromium the test skips loudly, unless HCX_REQUIRE_BROWSER=1 (CI) makes
// that a failure.
func startBrowser(t testing.TB, nodeURL string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := findBrowser()
	if path == "" {
		msg := "BROWSER TESTS SKIPPED: no Chromium found (tried " + strings.Join(browserPaths, ", ") + "); run scripts/apt-packages.sh (apt-get install chromium fonts-noto-cjk)"
		if os.Getenv("HCX_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; HCX_REQUIRE_BROWSER=1 makes this a failure")
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(viewportW, viewportH),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not carry a time-out.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH, chromedp.EmulatePortrait)); err != nil {
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	node := strings.TrimSuffix(nodeURL, "/")
	return &browser{t: t, ctx: ctx, base: strings.Replace(node, "127.0.0.1", "localhost", 1), node: node, lang: "zh"}
}

// do runs steps within a minute.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser at %s: %v", b.url(), err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into out.
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate at %s: %v\n%s", b.url(), err, expr)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatalf("evaluate: %s: %v", raw, err)
		}
	}
}

// url is the page the tab shows ("" when it cannot tell).
func (b *browser) url() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	u, _ := chromedp.Run(ctx, chromedp.Location())
	return u
}

// setPrefs sets the language and elderly-mode cookies as the switches do.
func (b *browser) setPrefs(lang string, care bool) {
	b.t.Helper()
	b.lang, b.care = lang, care
	careV := "0"
	if care {
		careV = "1"
	}
	b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, c := range [][2]string{{"hcx_lang", lang}, {"hcx_care", careV}} {
			if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: c[0], Value: c[1], URL: b.base + "/", Path: "/"}); err != nil {
				return err
			}
		}
		return nil
	}))
}

// load opens path on the node and waits for the page to be complete.
func (b *browser) load(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
	b.waitPath(strings.SplitN(path, "?", 2)[0])
}

// waitPath waits until the tab shows a complete page whose path is path
// (after a form's redirect or a script's navigation), and not the page a
// click left; a path with a query must match with its query.
func (b *browser) waitPath(path string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__hcxStale || document.readyState !== "complete" ? "" : location.pathname + (`+strconv.Quote(path)+`.includes("?") ? location.search : "")`))
		cancel()
		if err == nil && s == path {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("waited 30 s for %s; the tab shows %q (%s): %.400q", path, last, b.url(), b.text())
}

// text is the visible text of the page's body.
func (b *browser) text() string {
	var s string
	b.eval(`document.body.innerText`, &s)
	return s
}

// click clicks the element sel selects (a CSS selector). It marks the
// page first, so that a waitPath after it waits for the next page rather
// than take this one.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.eval(`window.__hcxStale = true`, nil)
	b.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// submit submits the form whose action is action with its submit button
// and waits for the page at path.
func (b *browser) submit(action, path string) {
	b.t.Helper()
	b.click("form[action='" + action + "'] button[type=submit]")
	b.waitPath(path)
}

// fill types v into the input sel selects.
func (b *browser) fill(sel, v string) {
	b.t.Helper()
	b.do(chromedp.SendKeys(chromedp.CSS(sel), v, chromedp.NodeVisible))
}

// noMissingTranslations fails when the page shows a key that has no
// translation (package web renders one as ⟦key⟧) or a stray template
// artefact.
func (b *browser) noMissingTranslations() {
	b.t.Helper()
	var html string
	b.eval(`document.documentElement.outerHTML`, &html)
	for _, mark := range []string{"⟦", "<no value>", "%!"} {
		if i := strings.Index(html, mark); i >= 0 {
			b.t.Errorf("%s in %s: %q shows %q", b.url(), b.lang, mark, html[max(0, i-40):min(len(html), i+80)])
		}
	}
	var lang string
	b.eval(`document.documentElement.lang`, &lang)
	if lang != b.lang {
		b.t.Errorf("%s: <html lang=%q>, want %q", b.url(), lang, b.lang)
	}
}

// a11yJS checks labels and contrast in the page and returns the problems.
const a11yJS = `(() => {
  const problems = [];
  const visible = el => { const r = el.getBoundingClientRect(); const cs = getComputedStyle(el); return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none"; };
  const describe = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.name ? "[name=" + el.name + "]" : "") + " " + JSON.stringify((el.innerText || el.value || "").slice(0, 30));
  // Labels: every form control says what it is.
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const labelled = (el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]')) || el.closest("label") ||
      (el.getAttribute("aria-label") || "").trim() || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push("no label: " + describe(el));
  }
  // Contrast: every visible text against its effective background, >= 4.5:1.
  const parse = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const over = (top, under) => ({r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a), b: top.b * top.a + under.b * (1 - top.a), a: 1});
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let bg = {r: 255, g: 255, b: 255, a: 1};
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim() !== "");
    if (!own || !visible(el)) continue;
    const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < 4.5) problems.push("contrast " + ratio.toFixed(2) + ":1: " + describe(el));
  }
  return problems;
})()`

// focusablesJS lists the page's interactive elements in DOM order.
const focusablesJS = `[...document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")].filter(el => {
  if (el.disabled || el.type === "hidden" || el.getAttribute("tabindex") === "-1") return false;
  const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && cs.visibility !== "hidden";
})`

// checkA11y checks the page's basic accessibility: every input, select and
// textarea has a label (label[for], a wrapping label, aria-label or
// aria-labelledby); visible text has a contrast of at least 4.5:1 against
// its effective background; in elderly mode every target is at least 48 px
// high; and Tab visits every interactive element in DOM order, each
// showing a visible focus style.
func (b *browser) checkA11y() {
	b.t.Helper()
	var problems []string
	b.eval(a11yJS, &problems)
	for _, p := range problems {
		b.t.Errorf("%s (%s, care %v): %s", b.url(), b.lang, b.care, p)
	}
	if b.care {
		// Elderly mode: every target at least 48 px high (a checkbox
		// counts with its label, which is the target people press).
		var small []string
		b.eval(`(`+focusablesJS+`).filter(el => {
  const target = el.type === "checkbox" && el.closest("label") ? el.closest("label") : el;
  return target.getBoundingClientRect().height < 47.5;
}).map(el => el.tagName.toLowerCase() + " " + JSON.stringify((el.innerText || el.value || el.getAttribute("href") || "").slice(0, 30)) + " " + el.getBoundingClientRect().height.toFixed(0) + "px")`, &small)
		for _, e := range small {
			b.t.Errorf("%s (%s, elderly mode): target under 48 px: %s", b.url(), b.lang, e)
		}
	}
	var n int
	b.eval(`(window.__hcxFocus = `+focusablesJS+`).length`, &n)
	if n == 0 {
		b.t.Errorf("%s: nothing to focus", b.url())
		return
	}
	// Tab from the top of the page, whatever has the focus (an autofocus
	// field moves the starting point of Tab even once blurred): from an
	// unlisted, empty stop at the top of the body.
	b.eval(`(() => { const s = document.createElement("span"); s.tabIndex = -1; document.body.prepend(s); s.focus(); window.scrollTo(0, 0); return true; })()`, nil)
	for i := 0; i < n; i++ {
		b.do(chromedp.KeyEvent("\t"))
		var got struct {
			Index   int    `json:"index"`
			Visible bool   `json:"visible"`
			What    string `json:"what"`
		}
		b.eval(`(() => {
  const el = document.activeElement, cs = getComputedStyle(el);
  const outline = cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) >= 2;
  const ring = cs.boxShadow && cs.boxShadow !== "none";
  return {index: window.__hcxFocus.indexOf(el), visible: outline || !!ring, what: el.tagName.toLowerCase() + " " + JSON.stringify((el.innerText || el.value || el.getAttribute("href") || "").slice(0, 30))};
})()`, &got)
		if got.Index != i {
			b.t.Errorf("%s (%s): Tab %d focuses %s (element %d), want element %d in DOM order", b.url(), b.lang, i+1, got.What, got.Index, i)
			return
		}
		if !got.Visible {
			b.t.Errorf("%s (%s): %s shows no visible focus", b.url(), b.lang, got.What)
		}
	}
}

// screenshot writes docs/screenshots/<name>-<lang>[-care].png of the whole
// page, only under -update-screenshots.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	if !*updateScreenshots {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := name + "-" + b.lang
	if b.care {
		file += "-care"
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// eachLook runs check on the page at path in every language, in normal and
// elderly mode, with the accessibility and translation checks, taking the
// screenshots of zh and en.
func (b *browser) eachLook(name, path string, check func(lang string, care bool)) {
	b.t.Helper()
	for _, lang := range []string{"zh", "en", "ja", "ko"} {
		for _, care := range []bool{false, true} {
			b.setPrefs(lang, care)
			b.load(path)
			b.noMissingTranslations()
			if lang == "zh" || lang == "en" {
				b.screenshot(name) // before the Tab walk leaves a focus ring
			}
			b.checkA11y()
			if check != nil {
				check(lang, care)
			}
		}
	}
}

// enrol logs the browser in as a resident with an enrolment code (from
// f.enrolmentCode) on the login page; it ends on the passkeys page.
func (b *browser) enrol(code string) {
	b.t.Helper()
	b.load("/app/login")
	b.fill("#code", code)
	b.submit("/app/login/enrol", "/app/resident/passkeys")
}

// idpLogin fills the dev identity provider's form the browser shows and
// waits for the page next (a path). The login ends at the node's public
// URL, so the browser goes on there: later loads use that origin.
func (b *browser) idpLogin(user, password, next string) {
	b.t.Helper()
	b.waitPath("/login")
	b.fill(`input[name=username]`, user)
	b.fill(`input[name=password]`, password)
	b.eval(`window.__hcxStale = true`, nil)
	b.do(chromedp.Submit(chromedp.CSS(`input[name=password]`)))
	b.waitPath(next)
	var origin string
	b.eval(`location.origin`, &origin)
	b.base = origin
	b.setPrefs(b.lang, b.care) // the choices, on the new origin
}

// staffLogin logs a dev identity provider user (an operator, the auditor)
// in and waits for the page next, such as /app/operator.
func (b *browser) staffLogin(f *federation, user, next string) {
	b.t.Helper()
	u := f.devUser(b.t, user)
	b.eval(`window.__hcxStale = true`, nil)
	b.do(chromedp.Navigate(b.node + "/v1/auth/oidc/login?next=" + next))
	b.idpLogin(u.Name, u.Password, next)
}

// devUser is the dev identity provider's user name.
func (f *federation) devUser(t testing.TB, name string) devidp.User {
	t.Helper()
	for _, u := range f.IdP.Users() {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no dev identity provider user %q", name)
	return devidp.User{}
}

// enrolmentCode has province p's operator issue an enrolment code for reg
// (registering the person if new), as at the counter.
func (f *federation) enrolmentCode(t testing.TB, p hcx.ProvinceCode, reg map[string]string) (code string, sub hcx.Subject) {
	t.Helper()
	var e struct {
		Code    string      `json:"code"`
		Subject hcx.Subject `json:"subject"`
	}
	if st := callAs(t, f.client(), f.asOperator(t, p), "POST", f.NodeURLs[p]+"/v1/enrolments", reg, &e); st != 201 {
		t.Fatalf("enrolment code at %s: status %d", p, st)
	}
	return e.Code, e.Subject
}
