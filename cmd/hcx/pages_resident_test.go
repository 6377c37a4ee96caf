package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/exchange"
)

// TestPagesResident walks a resident's pages in Chromium against a real
// node: the code veiled until a venue code is scanned (typed, then as a
// photo), then shown with the venue and the time of entry and renewed;
// a dependant's red code with its reasons, release conditions and what to
// do next; the daily check-in and a declaration; the check history; an
// appeal and its status. Every page passes the accessibility and
// translation checks in four languages, normal and elderly.
func TestPagesResident(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	url := f.NodeURLs[gd]
	hc := f.client()
	reg := map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619880808222"), "name": "陈美玲"}
	sub, me := f.asResident(t, gd, reg)
	child := f.dependantOf(t, gd, sub, me, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010620170707333"), "name": "陈小宝"})
	if st := callAs(t, hc, f.asOperator(t, gd), "POST", url+"/v1/residents/"+string(child)+"/labs", map[string]string{"result": "positive", "id": "lab-1"}, nil); st != http.StatusOK && st != http.StatusCreated && st != http.StatusAccepted {
		t.Fatalf("a positive lab for the child: %d", st)
	}
	// Two doses (the vaccination mark) and today's stays in two cities
	// (the cities of the last 14 days), as the bureaus' feeds send them.
	feed := f.asFeed(gd)
	waitKnown(t, f, feed, url+"/readyz")
	for dose := 1; dose <= 2; dose++ {
		body := map[string]any{"dose": dose, "product": "CoronaVac", "at": f.Now().Add(time.Duration(dose-3) * 30 * 24 * time.Hour).UTC().Format(time.RFC3339), "id": "vax-" + string(rune('0'+dose))}
		if st := callAs(t, hc, feed, "POST", url+"/v1/residents/"+string(sub)+"/vaccinations", body, nil); st/100 != 2 {
			t.Fatalf("dose %d: %d", dose, st)
		}
	}
	today := f.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
	if st := callAs(t, hc, feed, "POST", url+"/v1/residents/"+string(sub)+"/itinerary", `{"days":[{"date":"`+today+`","divs":["440106","510104"]}]}`, nil); st/100 != 2 {
		t.Fatalf("itinerary: %d", st)
	}
	// One check of the resident's code by a checkpoint, for the history.
	gate := f.asCheckpoint(gd)
	waitKnown(t, f, gate, url+"/readyz")
	var code struct {
		QR string `json:"code"`
	}
	if st := callAs(t, hc, me, "GET", url+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
		t.Fatalf("code: %d", st)
	}
	if st := callAs(t, hc, gate, "POST", url+"/v1/verify", map[string]string{"code": code.QR}, nil); st != http.StatusOK {
		t.Fatalf("verify: %d", st)
	}
	venue, err := exchange.IssueVenueCode(f.PKI.Provinces["510000"], &exchange.VenueClaims{Iss: "510000", VID: "cd-001", Div: "510104", Name: "太古里", Cat: "mall", IssuedAt: time.Now().Add(-time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}

	// The browser's own session: a second enrolment code for the same
	// person, as the counter hands out to a resident on a new phone.
	again, again2 := f.enrolmentCode(t, gd, reg)
	if again2 != sub {
		t.Fatalf("a second code for the same person names %s, want %s", again2, sub)
	}
	b := startBrowser(t, url)
	b.setPrefs("en", false)
	b.enrol(again)

	// Veiled: no QR until a venue is scanned.
	b.load("/app/resident")
	var qrs int
	b.eval(`document.querySelectorAll("img.qr").length`, &qrs)
	if txt := b.text(); qrs != 0 || !strings.Contains(txt, "Scan the venue code first") || !strings.Contains(txt, "Green") {
		t.Fatalf("the veiled code page: %d QR images, %q", qrs, txt)
	}
	b.fill("#venue_code", venue)
	b.submit("/app/resident/scan", "/app/resident/scan")
	txt := b.text()
	if !strings.Contains(txt, "太古里") || !strings.Contains(txt, "Entered at") || strings.Contains(txt, "Scan the venue code first") ||
		!strings.Contains(txt, "Vaccinated") || !strings.Contains(txt, "广州") || !strings.Contains(txt, "成都") {
		t.Fatalf("after scanning: %q", txt)
	}
	var qr struct {
		W   int    `json:"w"`
		Src string `json:"src"`
	}
	b.eval(`(() => { const i = document.querySelector("img.qr"); return {w: i.naturalWidth, src: i.src.slice(0, 22)}; })()`, &qr)
	if qr.W < 100 || qr.Src != "data:image/png;base64," {
		t.Fatalf("the unveiled QR: %+v", qr)
	}
	b.screenshot("resident-scanned")
	// Back to the page: the code is fetched again at once (and every 30 s).
	var refreshed bool
	b.eval(`new Promise(r => { document.dispatchEvent(new Event("visibilitychange")); const t0 = Date.now();
	  (function w() { const i = document.querySelector("img.qr"); if (i.dataset.refreshed && i.src.startsWith("blob:") && i.naturalWidth > 100) r(true); else if (Date.now() - t0 > 10000) r(false); else setTimeout(w, 50); })(); })`, &refreshed)
	if !refreshed {
		t.Error("the QR image was not fetched again")
	}

	// A photo of the venue code, decoded on the server.
	png, err := api.CodeImage(venue, "png")
	if err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(t.TempDir(), "venue.png")
	if err := os.WriteFile(photo, png, 0o600); err != nil {
		t.Fatal(err)
	}
	b.load("/app/resident")
	b.do(chromedp.SetUploadFiles(chromedp.CSS("#photo"), []string{photo}))
	b.submit("/app/resident/scan", "/app/resident/scan")
	if txt := b.text(); !strings.Contains(txt, "太古里") {
		t.Fatalf("after scanning a photo: %q", txt)
	}
	// The switches after a scan (a POST's page) return to the code page.
	b.click(`button[name=lang][value=ja]`)
	b.waitPath("/app/resident")
	b.setPrefs("en", false)
	// Not a venue code: the node's own message, in the page's language,
	// next to the field.
	b.load("/app/resident")
	b.fill("#venue_code", "https://example.com/menu")
	b.submit("/app/resident/scan", "/app/resident/scan")
	var fieldErr string
	b.eval(`(document.getElementById("venue_code-error") || {}).textContent || ""`, &fieldErr)
	if fieldErr == "" || strings.ContainsAny(fieldErr, "场码") {
		t.Errorf("not a venue code: the field's error is %q", fieldErr)
	}

	// The dependant: red, why, how it turns green, what to do.
	b.load("/app/resident")
	b.click(`nav.people a[href*="sub=` + string(child) + `"]`)
	b.waitPath("/app/resident")
	txt = b.text()
	if !strings.Contains(txt, "Acting for") || !strings.Contains(txt, "Red") || !strings.Contains(txt, "Why your code is not green") || !strings.Contains(txt, "What to do next") {
		t.Fatalf("the dependant's code page: %q", txt)
	}
	var reasons int
	b.eval(`document.querySelectorAll(".attention ul.list")[0].children.length`, &reasons)
	if reasons == 0 {
		t.Error("the red code lists no reason")
	}

	// The dependant's daily check-in, then the resident's declaration.
	b.load("/app/resident/declare?sub=" + string(child))
	b.fill("#checkin-temp", "36.5")
	b.submit("/app/resident/checkin", "/app/resident/declare?sub="+string(child)+"&done=checked_in")
	if txt := b.text(); !strings.Contains(txt, "Checked in for today.") || !strings.Contains(txt, "check-in · 36.5 °C") {
		t.Fatalf("after the check-in: %q", txt)
	}
	var forms int
	b.eval(`document.querySelectorAll("form[action='/app/resident/checkin']").length`, &forms)
	if forms != 0 {
		t.Error("the check-in form is still offered after today's check-in")
	}
	// The switches on a dependant's page stay with the dependant.
	b.click(`button[name=care]`)
	b.waitPath("/app/resident/declare?sub=" + string(child))
	if txt := b.text(); !strings.Contains(txt, "Acting for") || strings.Contains(txt, "Checked in for today.") {
		t.Errorf("after the care switch on the dependant's page: %q", txt)
	}
	b.setPrefs("en", false)
	b.load("/app/resident/declare")
	b.fill("#declare-temp", "hot")
	b.submit("/app/resident/declare", "/app/resident/declare")
	b.eval(`(document.getElementById("temp-error") || {}).textContent || ""`, &fieldErr)
	if fieldErr != "Give a temperature in °C, such as 36.6." {
		t.Errorf("a temperature that is no number: %q", fieldErr)
	}
	b.click(`form[action='/app/resident/declare'] input[value=cough]`)
	b.submit("/app/resident/declare", "/app/resident/declare?sub="+string(sub)+"&done=declared")
	if txt := b.text(); !strings.Contains(txt, "Declaration made.") || !strings.Contains(txt, "declaration · Cough") {
		t.Fatalf("after the declaration: %q", txt)
	}

	// The check history shows the checkpoint's check.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.load("/app/resident/checks")
		var rows int
		b.eval(`document.querySelectorAll("table.table tbody tr").length`, &rows)
		if rows >= 1 {
			if txt := b.text(); !strings.Contains(txt, "广东") {
				t.Errorf("the check history does not name the checkpoint's province: %q", txt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the check history shows no check: %q", b.text())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A cursor that is no cursor is refused, naming the parameter.
	b.load("/app/resident/checks?after=zz")
	if txt := b.text(); !strings.Contains(txt, "after: a cursor from the previous page") {
		t.Errorf("a bad cursor: %q", txt)
	}

	// An appeal against the dependant's colour, and its status.
	b.load("/app/resident/appeals?sub=" + string(child))
	b.fill("#appeal-text", "The sample was mixed up with another child's.")
	b.submit("/app/resident/appeals", "/app/resident/appeals?sub="+string(child)+"&done=appeal_filed")
	if txt := b.text(); !strings.Contains(txt, "filed, waiting for review") || !strings.Contains(txt, "mixed up") {
		t.Fatalf("after the appeal: %q", txt)
	}

	// Every page, every language, normal and elderly.
	b.eachLook("resident", "/app/resident", nil)
	b.eachLook("resident-red", "/app/resident?show=1&sub="+string(child), nil)
	b.eachLook("declare", "/app/resident/declare?sub="+string(child), nil)
	b.eachLook("checks", "/app/resident/checks", nil)
	b.eachLook("appeals", "/app/resident/appeals?sub="+string(child), nil)
	b.eachLook("passkeys", "/app/resident/passkeys", nil)
}
