package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/qrimg"
)

// The checkpoint's and the venue manager's pages (issue 16 items 2 and 3)
// in Chromium against a real dev federation.

// residentCode is a resident of p with their current code: its QR text
// and the node's PNG of it.
type residentCode struct {
	sub  hcx.Subject
	text string
	png  []byte
}

// codeOf fetches sub's code as PNG from the node, as the resident's phone
// does (the text rides in X-HCX-Code).
func codeOf(t *testing.T, f *federation, p hcx.ProvinceCode, sub hcx.Subject, who caller) residentCode {
	t.Helper()
	req, _ := http.NewRequest("GET", f.NodeURLs[p]+"/v1/residents/"+string(sub)+"/code?format=png", nil)
	who.sign(t, req, nil)
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	img, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-HCX-Code") == "" {
		t.Fatalf("code of %s: %d %s", sub, resp.StatusCode, img)
	}
	return residentCode{sub: sub, text: resp.Header.Get("X-HCX-Code"), png: img}
}

// writeY4M writes a Y4M video (YUV4MPEG2, 4:2:0) of a few frames of the
// PNG picture set in the middle of a white 640×480 frame: Chromium's fake
// camera (--use-file-for-fake-video-capture) plays it in a loop.
func writeY4M(t *testing.T, path string, pngBytes []byte) {
	t.Helper()
	src, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatal(err)
	}
	const w, h = 640, 480
	b := src.Bounds()
	side := min(b.Dx(), b.Dy())
	scale := float64(440) / float64(side) // nearest neighbour keeps the modules sharp
	out := int(float64(side) * scale)
	x0, y0 := (w-out)/2, (h-out)/2
	luma := bytes.Repeat([]byte{235}, w*h) // white in video range
	for y := 0; y < out; y++ {
		for x := 0; x < out; x++ {
			r, g, bl, _ := src.At(b.Min.X+int(float64(x)/scale), b.Min.Y+int(float64(y)/scale)).RGBA()
			grey := (299*r + 587*g + 114*bl) / 1000 >> 8
			luma[(y0+y)*w+x0+x] = byte(16 + grey*219/255)
		}
	}
	chroma := bytes.Repeat([]byte{128}, w*h/4)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "YUV4MPEG2 W%d H%d F10:1 Ip A1:1 C420jpeg\n", w, h)
	for range 10 {
		bw.WriteString("FRAME\n")
		bw.Write(luma)
		bw.Write(chroma)
		bw.Write(chroma)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitResult waits until the checkpoint page's result shows state (green,
// yellow, red, refused) and returns its text.
func (b *browser) waitResult(state string) string {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		b.eval(`(document.getElementById("cp-result") || {dataset: {}}).dataset.state || ""`, &got)
		if got == state {
			var text string
			b.eval(`document.getElementById("cp-result").innerText`, &text)
			return text
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("waited 30 s for a %s result; the page's result is %q: %.300q", state, got, b.text())
	return ""
}

// clearResult empties the page's result, so that the next wait sees the
// next answer.
func (b *browser) clearResult() {
	b.eval(`(() => { const r = document.getElementById("cp-result"); r.innerHTML = ""; r.dataset.state = "none"; return true; })()`, nil)
}

// TestPagesCheckpoint: an operator issues a checkpoint code; the staff log
// in with it in Chromium (a wrong code is refused next to the field); a
// code typed into the scanner field shows its colour, masked name, ID tail
// and reasons, and the field clears and keeps the focus; a code in an
// uploaded photo and a code seen by the (fake) camera show their colour; a
// school roll shows a table with counts per colour; the pages pass the
// translation and accessibility checks in every language; a revoked code's
// session is sent back to log in.
func TestPagesCheckpoint(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	node := f.NodeURLs[gd]
	waitReady(t, node) // the trust list is in: the feed's certificate and the codes verify
	greenID := cnID("44010619900101881")
	greenSub, green := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": greenID, "name": "陈小红"})
	redSub, red := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619850202992"), "name": "刘大伟"})
	if st := callAs(t, f.client(), f.asFeed(gd), "POST", node+"/v1/residents/"+string(redSub)+"/labs", map[string]string{"result": "positive", "id": "S-CP-1"}, nil); st != http.StatusOK {
		t.Fatalf("lab result: %d", st)
	}
	gc, rc := codeOf(t, f, gd, greenSub, green), codeOf(t, f, gd, redSub, red)

	var issued struct {
		ID   string `json:"id"`
		Code string `json:"code"`
	}
	if st := callAs(t, f.client(), f.asOperator(t, gd), "POST", node+"/v1/checkpoint-codes", map[string]string{"name": "Gate 3", "unit": "Baiyun primary school"}, &issued); st != http.StatusCreated {
		t.Fatalf("issue a checkpoint code: %d", st)
	}

	dir := t.TempDir()
	video, photo := filepath.Join(dir, "camera.y4m"), filepath.Join(dir, "photo.png")
	writeY4M(t, video, gc.png)
	if err := os.WriteFile(photo, rc.png, 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBrowser(t, node,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-video-capture", video))

	t.Run("login", func(t *testing.T) {
		b.t = t
		b.setPrefs("en", false)
		// Nobody logged in: the checkpoint page asks for a checkpoint code.
		b.do(chromedp.Navigate(b.base + "/app/checkpoint"))
		b.waitPath("/app/checkpoint/login")
		if txt := b.text(); !strings.Contains(txt, "Log in with a checkpoint code first.") {
			t.Errorf("the login page says %q", txt)
		}
		b.fill("#code", "00000-00000-00000-00000")
		b.click("form[action='/app/checkpoint/login'] button[type=submit]")
		b.waitPath("/app/checkpoint/login")
		if txt := b.text(); !strings.Contains(txt, "This checkpoint code is not known here.") {
			t.Fatalf("an unknown code: the page says %q", txt)
		}
		var invalid string
		b.eval(`document.getElementById("code").getAttribute("aria-invalid") || ""`, &invalid)
		if invalid != "true" {
			t.Errorf("an unknown code: the field is not marked invalid")
		}
		b.fill("#code", strings.ToLower(issued.Code))
		b.click("form[action='/app/checkpoint/login'] button[type=submit]")
		b.waitPath("/app/checkpoint?done=checkpoint_in")
		if txt := b.text(); !strings.Contains(txt, "Checkpoint session started.") {
			t.Fatalf("after the checkpoint code: %q", txt)
		}
	})

	t.Run("scanner", func(t *testing.T) {
		b.t = t
		var focused string
		b.eval(`document.activeElement.id`, &focused)
		if focused != "scan" {
			t.Errorf("the scanner field has no focus on load (%q has)", focused)
		}
		// A handheld scanner types the code and Enter.
		b.do(chromedp.SendKeys(chromedp.CSS("#scan"), gc.text+"\r"))
		txt := b.waitResult("green")
		if !strings.Contains(txt, "Green") || !strings.Contains(txt, "陈*") || !strings.Contains(txt, "ID ending "+greenID[14:]) {
			t.Errorf("the green result: %q", txt)
		}
		var after struct {
			Value   string `json:"value"`
			Focused bool   `json:"focused"`
		}
		b.eval(`({value: document.getElementById("scan").value, focused: document.activeElement.id === "scan"})`, &after)
		if after.Value != "" || !after.Focused {
			t.Errorf("after an answer the scanner field is %+v, want empty and focused", after)
		}
		b.screenshot("checkpoint-result")
		b.do(chromedp.SendKeys(chromedp.CSS("#scan"), rc.text+"\r"))
		if txt := b.waitResult("red"); !strings.Contains(txt, "Red") || !strings.Contains(txt, "positive lab result") || !strings.Contains(txt, "刘*") {
			t.Errorf("the red result: %q", txt)
		}
		// Not a code: refused, in words.
		b.do(chromedp.SendKeys(chromedp.CSS("#scan"), "HELLO\r"))
		if txt := b.waitResult("refused"); !strings.Contains(txt, "Not valid") {
			t.Errorf("a non-code: %q", txt)
		}
	})

	t.Run("photo", func(t *testing.T) {
		b.t = t
		b.clearResult()
		b.do(chromedp.SetUploadFiles(chromedp.CSS("#photo"), []string{photo}))
		if txt := b.waitResult("red"); !strings.Contains(txt, "刘*") {
			t.Errorf("the photo's result: %q", txt)
		}
	})

	t.Run("camera", func(t *testing.T) {
		b.t = t
		b.clearResult()
		b.click("#cp-camera-start")
		if txt := b.waitResult("green"); !strings.Contains(txt, "陈*") {
			t.Errorf("the camera's result: %q", txt)
		}
		var stopped bool
		b.eval(`document.getElementById("cp-video").hidden && !document.getElementById("cp-camera-start").hidden`, &stopped)
		if !stopped {
			t.Error("the camera goes on after it found a code")
		}
	})

	t.Run("roll", func(t *testing.T) {
		b.t = t
		roll := filepath.Join(dir, "roll.csv")
		csv := "class,number,code\n3-1,01," + gc.text + "\n3-1,02," + rc.text + "\n3-1,03,not-a-code\n"
		if err := os.WriteFile(roll, []byte(csv), 0o644); err != nil {
			t.Fatal(err)
		}
		b.do(chromedp.SetUploadFiles(chromedp.CSS("#roll"), []string{roll}))
		b.click("#cp-roll-form button[type=submit]")
		b.waitPath("/app/checkpoint/roll")
		var rows []string
		b.eval(`[...document.querySelectorAll("#cp-roll tbody tr")].map(r => r.dataset.colour + " " + r.innerText.replace(/\s+/g, " "))`, &rows)
		if len(rows) != 3 || !strings.HasPrefix(rows[0], "green 1 3-1 01 Green") || !strings.Contains(rows[0], "陈*") ||
			!strings.HasPrefix(rows[1], "red 2 3-1 02 Red") || !strings.Contains(rows[1], "positive lab result") || !strings.HasPrefix(rows[2], "refused 3 3-1 03 Not valid") {
			t.Errorf("the roll's rows: %q", rows)
		}
		var counts string
		b.eval(`document.querySelector(".cp-counts").innerText.replace(/\s+/g, " ")`, &counts)
		if counts != "Green: 1 Yellow: 0 Red: 1 Not valid: 1" {
			t.Errorf("the roll's counts: %q", counts)
		}
		b.screenshot("checkpoint-roll")
	})

	t.Run("looks", func(t *testing.T) {
		b.t = t
		b.eachLook("checkpoint", "/app/checkpoint", func(lang string, care bool) {
			var on bool
			b.eval(`!document.getElementById("cp-camera").hidden`, &on)
			if !on {
				t.Errorf("%s: the camera mode is hidden though the browser has a camera", lang)
			}
		})
		b.eachLook("checkpoint-login", "/app/checkpoint/login", nil)
	})

	t.Run("revoked", func(t *testing.T) {
		b.t = t
		if st := callAs(t, f.client(), f.asOperator(t, gd), "DELETE", node+"/v1/checkpoint-codes/"+issued.ID, nil, nil); st != http.StatusOK {
			t.Fatalf("revoke: %d", st)
		}
		b.setPrefs("en", false)
		b.do(chromedp.Navigate(b.base + "/app/checkpoint"))
		b.waitPath("/app/checkpoint/login")
		// The dead session's cookie is gone: kept, it would have every next
		// API call refused (session_invalid), the identity provider's login
		// link too.
		if b.sessionCookie() != "" {
			t.Errorf("the revoked session's cookie is still in the browser")
		}
	})

	// An operator may verify too: logged in at the identity provider
	// from the checkpoint login's link, they check a code on the page.
	t.Run("operator", func(t *testing.T) {
		b.t = t
		var password string
		for _, u := range f.IdP.Users() {
			if u.Name == devidp.OperatorName(gd) {
				password = u.Password
			}
		}
		// The dev node registers its OIDC callback at 127.0.0.1 (the
		// login's state cookie must come back to the same host), so the
		// operator uses that address.
		b.do(chromedp.Navigate(strings.Replace(b.base, "localhost", "127.0.0.1", 1) + "/app/checkpoint/login"))
		b.waitPath("/app/checkpoint/login")
		b.click(`a[href="/v1/auth/oidc/login?next=/app/checkpoint"]`)
		b.fill("input[name=username]", devidp.OperatorName(gd))
		b.fill("input[name=password]", password)
		b.click("form[action='/login'] button[type=submit]")
		b.waitPath("/app/checkpoint")
		b.do(chromedp.SendKeys(chromedp.CSS("#scan"), gc.text+"\r"))
		if txt := b.waitResult("green"); !strings.Contains(txt, "陈*") {
			t.Errorf("the operator's check: %q", txt)
		}
	})
}

// TestCheckpointCodeSession: the checkpoint code's routes through HTTP
// with real credentials. Only an operator of the province issues and
// revokes (bad input names the field); the code starts a session that may
// verify (one code and a batch) and nothing else; it works once; the
// session logs out; a revoked code's session is refused at once.
func TestCheckpointCodeSession(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	node := f.NodeURLs[gd]
	hc := f.client()
	op := f.asOperator(t, gd)
	sub, res := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619900303123"), "name": "黄一"})
	code := codeOf(t, f, gd, sub, res)
	waitReady(t, node)

	for _, who := range []caller{anonymous, res, f.asOperator(t, "510000"), f.asCheckpoint(gd)} {
		if st := callAs(t, hc, who, "POST", node+"/v1/checkpoint-codes", map[string]string{"name": "Gate", "unit": "Unit"}, nil); st != http.StatusUnauthorized && st != http.StatusForbidden {
			t.Errorf("%s issues a checkpoint code: %d, want 401 or 403", who.name, st)
		}
	}
	var bad struct {
		Error struct {
			Field string `json:"field"`
		} `json:"error"`
	}
	if st := callAs(t, hc, op, "POST", node+"/v1/checkpoint-codes", map[string]string{"name": "Gate"}, &bad); st != http.StatusBadRequest || bad.Error.Field != "unit" {
		t.Errorf("no unit: %d naming %q, want 400 naming unit", st, bad.Error.Field)
	}
	var issued struct {
		ID      string    `json:"id"`
		Code    string    `json:"code"`
		Expires time.Time `json:"expires"`
	}
	if st := callAs(t, hc, op, "POST", node+"/v1/checkpoint-codes", map[string]string{"name": "Gate 1", "unit": "Station"}, &issued); st != http.StatusCreated || issued.Code == "" {
		t.Fatalf("issue: %d %+v", st, issued)
	}
	if d := time.Until(issued.Expires); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("the code expires in %v, want a day", d)
	}

	jar, _ := cookiejar.New(nil)
	browser := *hc
	browser.Jar = jar
	staff := caller{name: "checkpoint staff", sign: func(testing.TB, *http.Request, []byte) {}}
	var in struct {
		Role     string `json:"role"`
		Province string `json:"province"`
		Name     string `json:"name"`
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/auth/checkpoint", map[string]string{"code": issued.Code}, &in); st != http.StatusOK || in.Role != "checkpoint" || in.Province != "440000" || in.Name != "Gate 1" {
		t.Fatalf("log in with the code: %d %+v", st, in)
	}
	// The session verifies, one code and a batch.
	var v struct {
		Colour string         `json:"colour"`
		Error  map[string]any `json:"error"`
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/verify", map[string]string{"code": code.text}, &v); st != http.StatusOK || v.Colour != "green" {
		t.Errorf("verify with the session: %d %+v", st, v)
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/verify/batch", map[string][]string{"codes": {code.text}}, nil); st != http.StatusOK {
		t.Errorf("batch with the session: %d", st)
	}
	// Nothing else: a resident's data, the checkpoint codes, /v1/me.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/me"}, {"GET", "/v1/residents/" + string(sub)}, {"POST", "/v1/checkpoint-codes"},
	} {
		if st := callAs(t, &browser, staff, c.method, node+c.path, map[string]string{"name": "x", "unit": "y"}, nil); st != http.StatusForbidden {
			t.Errorf("the checkpoint session: %s %s answers %d, want 403", c.method, c.path, st)
		}
	}
	// Attack: the code used a second time.
	if st := callAs(t, hc, anonymous, "POST", node+"/v1/auth/checkpoint", map[string]string{"code": issued.Code}, nil); st != http.StatusConflict {
		t.Errorf("a second use: %d, want 409", st)
	}
	if st := callAs(t, hc, anonymous, "POST", node+"/v1/auth/checkpoint", map[string]string{"code": "x"}, &bad); st != http.StatusBadRequest || bad.Error.Field != "code" {
		t.Errorf("a malformed code: %d naming %q, want 400 naming code", st, bad.Error.Field)
	}

	// Revoked: the session ends now. Another code's session logs out.
	if st := callAs(t, hc, res, "DELETE", node+"/v1/checkpoint-codes/"+issued.ID, nil, nil); st != http.StatusForbidden {
		t.Errorf("a resident revokes: %d, want 403", st)
	}
	if st := callAs(t, hc, op, "DELETE", node+"/v1/checkpoint-codes/"+issued.ID, nil, nil); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/verify", map[string]string{"code": code.text}, nil); st != http.StatusUnauthorized {
		t.Errorf("verify after the revocation: %d, want 401", st)
	}
	if st := callAs(t, hc, op, "POST", node+"/v1/checkpoint-codes", map[string]string{"name": "Gate 2", "unit": "Station"}, &issued); st != http.StatusCreated {
		t.Fatalf("issue: %d", st)
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/auth/checkpoint", map[string]string{"code": issued.Code}, nil); st != http.StatusOK {
		t.Fatalf("log in with the second code: %d", st)
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/auth/logout", nil, nil); st != http.StatusOK {
		t.Errorf("the checkpoint session logs out: %d", st)
	}
	if st := callAs(t, &browser, staff, "POST", node+"/v1/verify", map[string]string{"code": code.text}, nil); st != http.StatusUnauthorized {
		t.Errorf("verify after logout: %d, want 401", st)
	}
}

// TestPagesVenues: a resident logged in with an enrolment code applies for
// a venue code on the page (a bad credit code is refused next to its
// field), sees it under review; an operator approves it through the API;
// the page shows it approved, its PNG downloads and decodes to the venue's
// code, and the print page prints the code alone; the pages pass the
// translation and accessibility checks in every language.
func TestPagesVenues(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	node := f.NodeURLs[gd]
	b := startBrowser(t, node)
	code, _ := f.enrolmentCode(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619780808123"), "name": "周店长"})
	b.setPrefs("en", false)
	b.load("/app/login")
	b.fill("#code", code)
	b.click("form[action='/app/login/enrol'] button[type=submit]")
	b.waitPath("/app/resident/passkeys")

	// The home page's link goes to the manager's page.
	b.do(chromedp.Navigate(b.base + "/app/venue"))
	b.waitPath("/app/venues")
	if txt := b.text(); !strings.Contains(txt, "No application yet.") {
		t.Fatalf("the venues page: %q", txt)
	}
	uscc := usccOf("9144010600000077")
	apply := func(usccValue string) {
		b.fill("#venue-name", "Tianhe Bakery")
		b.do(chromedp.SetValue(chromedp.CSS("#venue-category"), "restaurant"))
		b.fill("#venue-division", "440106")
		b.fill("#venue-uscc", usccValue)
		b.click("#venue-apply button[type=submit]")
	}
	apply(uscc[:17] + map[bool]string{true: "1", false: "0"}[uscc[17] == '0'])
	b.waitPath("/app/venues")
	var invalid string
	b.eval(`document.getElementById("venue-uscc").getAttribute("aria-invalid") || ""`, &invalid)
	if invalid != "true" {
		t.Fatalf("a wrong credit code is not marked next to its field: %q", b.text())
	}
	var kept string
	b.eval(`document.getElementById("venue-name").value`, &kept)
	if kept != "Tianhe Bakery" {
		t.Errorf("the form shown again lost the name: %q", kept)
	}
	b.eval(`(() => { for (const id of ["venue-name", "venue-division", "venue-uscc"]) document.getElementById(id).value = ""; return true; })()`, nil)
	apply(uscc)
	b.waitPath("/app/venues?done=venue_applied")
	if txt := b.text(); !strings.Contains(txt, "Application sent.") || !strings.Contains(txt, "Tianhe Bakery") || !strings.Contains(txt, "Under review") {
		t.Fatalf("after applying: %q", txt)
	}
	b.eachLook("venues", "/app/venues", nil)

	// An operator approves it through the API.
	var queue struct {
		Venues []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"venues"`
	}
	op := f.asOperator(t, gd)
	if st := callAs(t, f.client(), op, "GET", node+"/v1/venues?state=under_review", nil, &queue); st != http.StatusOK || len(queue.Venues) != 1 || queue.Venues[0].Name != "Tianhe Bakery" {
		t.Fatalf("the review queue: %d %+v", st, queue)
	}
	vid := queue.Venues[0].ID
	var passed struct {
		Code string `json:"code"`
	}
	if st := callAs(t, f.client(), op, "POST", node+"/v1/venues/"+vid+"/review", map[string]string{"decision": "passed", "reason": "licence checked on site"}, &passed); st != http.StatusOK || passed.Code == "" {
		t.Fatalf("approve: %d %+v", st, passed)
	}

	b.setPrefs("en", false)
	b.load("/app/venues")
	if txt := b.text(); !strings.Contains(txt, "Approved") || !strings.Contains(txt, "Review: licence checked on site") {
		t.Fatalf("after the approval: %q", txt)
	}
	// The PNG the page offers downloads (with the browser's session) and
	// is the venue's code.
	var png64 string
	b.eval(`(async () => {
  const a = document.querySelector("a[data-venue-png]");
  const res = await fetch(a.href, {credentials: "same-origin"});
  if (!res.ok || a.getAttribute("download") === null) return "";
  const bytes = new Uint8Array(await res.arrayBuffer());
  let s = ""; for (const x of bytes) s += String.fromCharCode(x);
  return btoa(s);
})()`, &png64)
	raw, err := base64.StdEncoding.DecodeString(png64)
	if err != nil || len(raw) == 0 {
		t.Fatalf("the code's PNG did not download: %v", err)
	}
	if _, _, err := image.Decode(bytes.NewReader(raw)); err != nil {
		t.Fatalf("the download is no image: %v", err)
	}
	text, err := qrimg.DecodeBytes(raw)
	if err != nil || text != passed.Code {
		t.Fatalf("the downloaded code decodes to %q, %v; want the venue's code", text, err)
	}

	// The print page: the code big with the name; printed, nothing else.
	b.load("/app/venues/" + vid + "/print")
	var sheet struct {
		Loaded bool   `json:"loaded"`
		Name   string `json:"name"`
	}
	waitImg := `new Promise(r => { const i = document.querySelector(".venue-sheet-qr"); const done = () => r({loaded: i.naturalWidth > 0, name: document.querySelector(".venue-sheet-name").innerText}); i.complete ? done() : i.addEventListener("load", done); })`
	b.eval(waitImg, &sheet)
	if !sheet.Loaded || sheet.Name != "Tianhe Bakery" {
		t.Errorf("the print page: %+v", sheet)
	}
	b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return err
	}))
	var printed struct {
		Header string  `json:"header"`
		Button string  `json:"button"`
		Width  float64 `json:"width"`
	}
	b.eval(`({header: getComputedStyle(document.querySelector(".top")).display, button: getComputedStyle(document.querySelector("[data-print]").closest(".no-print")).display, width: document.querySelector(".venue-sheet-qr").getBoundingClientRect().width})`, &printed)
	if printed.Header != "none" || printed.Button != "none" || printed.Width < 300 {
		t.Errorf("printed: %+v, want the frame hidden and the code big", printed)
	}
	b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: ""})
		return err
	}))
	b.eachLook("venues-print", "/app/venues/"+vid+"/print", nil)
	// Another resident's venue is not printed for them.
	b.do(chromedp.Navigate(b.base + "/app/venues/0000000000000000/print"))
	b.waitPath("/app/venues/0000000000000000/print")
	if txt := b.text(); strings.Contains(txt, "Tianhe Bakery") {
		t.Errorf("an unknown venue's print page shows %q", txt)
	}
}
