package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/node"
)

// fileDeviceEnrolment makes a device's key and files its enrolment at the
// node with hcx device keygen and enrol, as an installer does, and returns
// the enrolment's id.
func fileDeviceEnrolment(ctx context.Context, t *testing.T, nodeURL, dir, name string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := runDevice(ctx, []string{"keygen", "--out", dir, "--name", name}, &out, &errOut); err != nil {
		t.Fatalf("hcx device keygen: %v\n%s", err, errOut.String())
	}
	out.Reset()
	if err := runDevice(ctx, []string{"enrol", "--node", nodeURL, "--csr", filepath.Join(dir, name+".csr"), "--name", name}, &out, &errOut); err != nil {
		t.Fatalf("hcx device enrol: %v", err)
	}
	m := regexp.MustCompile(`Enrolment (\S+) filed \(pending\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("hcx device enrol said: %s", out.String())
	}
	return m[1]
}

// TestPagesOperator: an operator logs in through the dev identity
// provider in Chromium and uses every operator page in four languages,
// normal and elderly, with the accessibility checks; decides an appeal a
// resident filed; uploads a feed with one bad line, sees that line's
// error while the good lines land; designates a risk area (a wrong
// division is refused next to its field); places an order and reads it
// back; approves a device's enrolment, whose certificate the device then
// fetches; checks a candidate rule file (a wrong one shows its problem),
// reads its diff, explains a resident under it and publishes it. Then the
// auditor logs in and sees the node's checkpoint and the
// witnessed checkpoint's cosignatures (the nodes witness the hub and each
// requires one cosignature).
func TestPagesOperator(t *testing.T) {
	addrs := freeAddrs(t, len(devProvinces))
	nodeAddrs := map[hcx.ProvinceCode]string{}
	for i, p := range devProvinces {
		nodeAddrs[p] = addrs[i]
	}
	f := startTestFederationWith(t, federationConfig{Dir: t.TempDir(), HubMembers: 1, NodeAddrs: nodeAddrs, Cosignatures: 1})
	const gd hcx.ProvinceCode = "440000"
	nodeURL := f.NodeURLs[gd]
	op := f.asOperator(t, gd)

	// A resident files an appeal against their colour.
	doc := cnID("44010619850505123")
	sub, res := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": doc, "name": "陈小红"})
	var filed node.Appeal
	if st := callAs(t, f.client(), res, "POST", nodeURL+"/v1/residents/"+string(sub)+"/appeals", map[string]string{"kind": "colour", "text": "我没有去过风险地区，请核实。"}, &filed); st != http.StatusCreated {
		t.Fatalf("file an appeal: status %d", st)
	}

	// A gate's scanner asks for a certificate.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	devDir := t.TempDir()
	enrolment := fileDeviceEnrolment(ctx, t, nodeURL, devDir, "gate-9")

	b := startBrowser(t, nodeURL)
	b.base = strings.TrimSuffix(nodeURL, "/") // the address the identity provider returns to
	b.setPrefs("en", false)
	b.staffLogin(f, devidp.OperatorName(gd), "/app/operator")
	if txt := b.text(); !strings.Contains(txt, "Appeals") || !strings.Contains(txt, "1 open") {
		t.Fatalf("the operator's landing page: %q", txt)
	}

	for _, pg := range []struct{ name, path string }{
		{"operator", "/app/operator"},
		{"operator-appeals", "/app/operator/appeals"},
		{"operator-feeds", "/app/operator/feeds"},
		{"operator-orders", "/app/operator/orders"},
		{"operator-risk-areas", "/app/operator/risk-areas"},
		{"operator-devices", "/app/operator/devices"},
		{"operator-audit", "/app/operator/audit"},
	} {
		t.Run("look "+pg.name, func(t *testing.T) { b.t = t; b.eachLook(pg.name, pg.path, nil) })
	}
	b.t = t

	t.Run("appeal", func(t *testing.T) {
		b.t = t
		// The opened appeal in every look; the decision in English.
		for _, lang := range []string{"zh", "ja", "ko", "en"} {
			for _, care := range []bool{true, false} {
				b.setPrefs(lang, care)
				b.load("/app/operator/appeals")
				b.fill(`form[action$="/open"] input[name=reason]`, "12345 hotline call")
				b.click(`form[action$="/open"] button[type=submit]`)
				b.waitPath("/app/operator/appeals/" + filed.ID + "/open")
				b.noMissingTranslations()
				if lang == "zh" || lang == "en" {
					b.screenshot("operator-appeal")
				}
				b.checkA11y()
			}
		}
		if txt := b.text(); !strings.Contains(txt, "我没有去过风险地区") || !strings.Contains(txt, "Automatic pre-check") {
			t.Fatalf("the opened appeal: %q", txt)
		}
		b.fill(`#decision_reason`, "The itinerary record was wrong.")
		b.click(`button[name=decision][value=accept]`)
		b.waitPath("/app/operator/appeals?done=appeal_decided")
		if txt := b.text(); !strings.Contains(txt, "The appeal is decided") || !strings.Contains(txt, "No open appeals") {
			t.Errorf("after the decision: %q", txt)
		}
		var mine node.Appeal
		if st := callAs(t, f.client(), res, "GET", nodeURL+"/v1/residents/"+string(sub)+"/appeals/"+filed.ID, nil, &mine); st != http.StatusOK || mine.Status != node.AppealAccepted || mine.Reason != "The itinerary record was wrong." {
			t.Errorf("the resident's appeal after the page's decision: status %d %+v", st, mine)
		}
	})

	t.Run("feed", func(t *testing.T) {
		b.t = t
		at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		lines := fmt.Sprintf(`{"id":"PG-1","doc_type":"CN-ID","doc_number":%q,"at":%q,"result":"negative","kind":"pcr"}
{"id":"PG-2","doc_type":"CN-ID","doc_number":%q,"at":%q,"result":"unclear","kind":"pcr"}
{"id":"PG-3","doc_type":"CN-ID","doc_number":%q,"at":%q,"result":"negative","kind":"antigen"}
`, doc, at, doc, at, doc, at)
		file := filepath.Join(t.TempDir(), "results.ndjson")
		if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
			t.Fatal(err)
		}
		b.setPrefs("en", false)
		b.load("/app/operator/feeds")
		b.do(chromedp.SetUploadFiles(`#file`, []string{file}))
		b.fill(`#reason`, "district lab batch 7")
		// A page that navigated would lose this mark: the upload goes
		// through the script (XMLHttpRequest, with its progress).
		b.eval(`window.__hcxSamePage = true`, nil)
		b.do(chromedp.Click(`form[data-feed-upload] button[type=submit]`, chromedp.NodeVisible), chromedp.WaitVisible(`#feed-result`))
		var same bool
		b.eval(`window.__hcxSamePage === true`, &same)
		if !same {
			t.Error("the upload navigated away: the progress script did not run")
		}
		txt := b.text()
		if !strings.Contains(txt, "3 lines: 2 accepted, 0 duplicates (sent before), 1 refused.") {
			t.Errorf("the feed's summary: %q", txt)
		}
		var row []string
		b.eval(`[...document.querySelectorAll(".op-line-error td")].map(td => td.innerText.trim())`, &row)
		if len(row) != 3 || row[0] != "2" || row[1] != "result" || !strings.Contains(row[2], "unclear") {
			t.Errorf("the refused line's row: %q, want line 2, field result", row)
		}
		b.noMissingTranslations()
		b.checkA11y()
		// The good lines landed: the same file again counts them as
		// duplicates.
		if st, again, _ := postFeed(t, f, op, "labs", []byte(lines)); st != http.StatusOK || again.Duplicates != 2 || again.Accepted != 0 || again.Failed != 1 {
			t.Errorf("the same feed again through the API: status %d %+v, want 2 duplicates", st, again)
		}
	})

	t.Run("risk area", func(t *testing.T) {
		b.t = t
		b.setPrefs("en", false)
		b.load("/app/operator/risk-areas")
		b.fill(`#div`, "449999")
		b.fill(`#reason`, "CDC bulletin 42")
		b.click(`form[action="/app/operator/risk-areas"] button[type=submit]`)
		b.waitPath("/app/operator/risk-areas")
		var invalid string
		b.eval(`document.getElementById("div").getAttribute("aria-invalid") || ""`, &invalid)
		if invalid != "true" || !strings.Contains(b.text(), "449999") {
			t.Errorf("a division that does not exist: aria-invalid %q, page %q", invalid, b.text())
		}
		// Without a reason (past the browser's own check) the API refuses
		// the audited call; the page says so next to the reason field.
		b.load("/app/operator/risk-areas")
		b.fill(`#div`, "440106")
		b.eval(`document.getElementById("reason").removeAttribute("required")`, nil)
		b.click(`form[action="/app/operator/risk-areas"] button[type=submit]`)
		b.waitPath("/app/operator/risk-areas")
		b.eval(`document.getElementById("reason").getAttribute("aria-invalid") || ""`, &invalid)
		if txt := b.text(); invalid != "true" || !strings.Contains(txt, "Say why: the audit trail records it.") {
			t.Errorf("no reason: aria-invalid %q, page %q", invalid, txt)
		}
		b.load("/app/operator/risk-areas")
		b.fill(`#div`, "440106")
		b.fill(`#reason`, "CDC bulletin 42")
		b.click(`form[action="/app/operator/risk-areas"] button[type=submit]`)
		b.waitPath("/app/operator/risk-areas?done=risk_area_designated")
		if txt := b.text(); !strings.Contains(txt, "440106") || !strings.Contains(txt, "High risk") {
			t.Errorf("after designating: %q", txt)
		}
		var list struct {
			Areas []node.RiskArea `json:"areas"`
		}
		if st := callAs(t, f.client(), anonymous, "GET", nodeURL+"/v1/risk-areas?iss=440000&in_force=true", nil, &list); st != http.StatusOK || len(list.Areas) != 1 || list.Areas[0].Div != "440106" || list.Areas[0].Level != "high" {
			t.Errorf("risk areas in force after the page: %d %+v", st, list)
		}
		// End it.
		b.fill(`#end-0`, "CDC bulletin 43: lifted")
		b.click(`form[action="/app/operator/risk-areas/end"] button[type=submit]`)
		b.waitPath("/app/operator/risk-areas?done=risk_area_ended")
		if txt := b.text(); !strings.Contains(txt, "The risk area is ended") || !strings.Contains(txt, "No risk area is in force") {
			t.Errorf("after ending: %q", txt)
		}
		if st := callAs(t, f.client(), anonymous, "GET", nodeURL+"/v1/risk-areas?iss=440000&in_force=true", nil, &list); st != http.StatusOK || len(list.Areas) != 0 {
			t.Errorf("risk areas in force after ending on the page: %d %+v", st, list)
		}
	})

	t.Run("order", func(t *testing.T) {
		b.t = t
		b.setPrefs("en", false)
		b.load("/app/operator/orders")
		b.fill(`#sub`, string(sub))
		b.do(chromedp.SetValue(`#colour`, "yellow"))
		b.fill(`#reason`, "contact tracing team 3")
		b.click(`form[action="/app/operator/orders"] button[type=submit]`)
		b.waitPath("/app/operator/orders?done=order_placed")
		b.fill(`#find-sub`, string(sub))
		b.fill(`#find-reason`, "check the order took effect")
		b.click(`form[method=get] button[type=submit]`)
		b.waitPath("/app/operator/orders")
		if txt := b.text(); !strings.Contains(txt, "This resident's orders") || !strings.Contains(txt, "in force") || !strings.Contains(txt, "Yellow") {
			t.Errorf("the resident's orders: %q", txt)
		}
	})

	t.Run("device", func(t *testing.T) {
		b.t = t
		b.setPrefs("en", false)
		b.load("/app/operator/devices")
		if txt := b.text(); !strings.Contains(txt, "gate-9") || !strings.Contains(txt, "Checkpoint scanner") {
			t.Fatalf("the devices waiting: %q", txt)
		}
		b.fill(`form[action="/app/operator/devices/`+enrolment+`/approve"] input[name=reason]`, "gate 9 installed, key compared")
		b.click(`form[action="/app/operator/devices/` + enrolment + `/approve"] button.primary`)
		b.waitPath("/app/operator/devices?done=device_approved")
		if txt := b.text(); !strings.Contains(txt, "The device is approved") || !strings.Contains(txt, "No device is waiting") {
			t.Errorf("after approving: %q", txt)
		}
		var out, errOut bytes.Buffer
		if err := runDevice(ctx, []string{"fetch", "--node", nodeURL, "--id", enrolment, "--out", filepath.Join(devDir, "gate-9.crt")}, &out, &errOut); err != nil {
			t.Errorf("hcx device fetch after the page's approval: %v", err)
		}
	})

	t.Run("rules", func(t *testing.T) {
		b.t = t
		b.eachLook("operator-rules", "/app/operator/rules", nil)
		var inForce struct {
			Version string `json:"version"`
			Source  string `json:"source"`
		}
		if st := callAs(t, f.client(), op, "GET", nodeURL+"/v1/rules", nil, &inForce); st != http.StatusOK {
			t.Fatalf("GET /v1/rules: %d", st)
		}
		// A positive result makes the code yellow instead of red.
		candidate := strings.Replace(inForce.Source, "  - name: positive-lab-result\n    colour: red", "  - name: positive-lab-result\n    colour: yellow", 1)
		if candidate == inForce.Source {
			t.Fatal("the sample rules changed: the candidate does not apply")
		}
		check := func(src string) {
			b.do(chromedp.SetValue(`#candidate`, src))
			b.click(`form[action="/app/operator/rules/check"] button[type=submit]`)
			b.waitPath("/app/operator/rules/check")
		}
		b.setPrefs("en", false)
		b.load("/app/operator/rules")
		check(strings.Replace(candidate, "colour: yellow", "colour: purple", 1))
		var problem []string
		b.eval(`[...document.querySelectorAll("#rules-check .op-line-error td")].map(td => td.innerText.trim())`, &problem)
		if txt := b.text(); !strings.Contains(txt, "The candidate does not load") || len(problem) != 4 || problem[2] != "colour" || !strings.Contains(problem[3], "purple") {
			t.Errorf("a candidate with a wrong colour: problem %q, page %q", problem, txt)
		}
		check(candidate)
		var added []string
		b.eval(`[...document.querySelectorAll(".op-diff-add")].map(s => s.innerText)`, &added)
		if txt := b.text(); !strings.Contains(txt, "The candidate loads") || !slices.Contains(added, "+    colour: yellow") {
			t.Errorf("the check of the candidate: added lines %q, page %q", added, txt)
		}
		// The check's answer and the explanation in every look; English
		// last, where the page's texts are checked.
		for _, lang := range []string{"zh", "ja", "ko", "en"} {
			for _, care := range []bool{true, false} {
				b.setPrefs(lang, care)
				b.load("/app/operator/rules")
				check(candidate)
				b.noMissingTranslations()
				if lang == "zh" || lang == "en" {
					b.screenshot("operator-rules-check")
				}
				b.checkA11y()
				// What the candidate would do to the resident, before
				// publishing.
				b.fill(`#explain-sub`, string(sub))
				b.click(`#use-candidate`)
				b.fill(`#explain-reason`, "rules review 2026-11")
				b.click(`form[action="/app/operator/rules/explain"] button[type=submit]`)
				b.waitPath("/app/operator/rules/explain")
				b.noMissingTranslations()
				if lang == "zh" || lang == "en" {
					b.screenshot("operator-rules-explain")
				}
				b.checkA11y()
			}
		}
		var trace int
		b.eval(`document.querySelectorAll(".op-trace tbody tr").length`, &trace)
		if txt := b.text(); !strings.Contains(txt, "Decision under the candidate") || trace == 0 {
			t.Errorf("the explanation under the candidate: %d trace rows, page %q", trace, txt)
		}
		// Check again (the textarea keeps the candidate), then publish.
		b.click(`form[action="/app/operator/rules/check"] button[type=submit]`)
		b.waitPath("/app/operator/rules/check")
		b.fill(`#publish-reason`, "CDC notice 12: positives are yellow")
		b.click(`form[action="/app/operator/rules/publish"] button[type=submit]`)
		b.waitPath("/app/operator/rules?done=rules_published")
		if txt := b.text(); !strings.Contains(txt, "The rules are published") {
			t.Errorf("after publishing: %q", txt)
		}
		var now struct {
			Version string `json:"version"`
			Source  string `json:"source"`
		}
		if st := callAs(t, f.client(), op, "GET", nodeURL+"/v1/rules", nil, &now); st != http.StatusOK || now.Version == inForce.Version || now.Source != candidate {
			t.Errorf("the rules in force after the page's publish: %d, version %s (was %s), source is the candidate: %v", st, now.Version, inForce.Version, now.Source == candidate)
		}
	})

	t.Run("auditor", func(t *testing.T) {
		b.t = t
		b.click(`form[action="/app/logout"] button`)
		b.waitPath("/app/?done=logged_out")
		// The hub's checkpoints are cosigned by the nodes as witnesses;
		// wait for this node to hold one.
		aud := f.asPerson(t, devidp.AuditorName)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var st struct {
				Witnessed *node.CheckpointView `json:"witnessed"`
			}
			if callAs(t, f.client(), aud, "GET", nodeURL+"/v1/log/status", nil, &st) == http.StatusOK && st.Witnessed != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the node held no witnessed checkpoint within 30 s")
			}
			time.Sleep(200 * time.Millisecond)
		}
		b.setPrefs("en", false)
		b.staffLogin(f, devidp.AuditorName, "/app/auditor")
		b.eachLook("auditor", "/app/auditor", func(lang string, care bool) {
			var cosigs [][]string
			b.eval(`[...document.querySelectorAll(".op-cosigs tbody tr")].map(tr => [...tr.cells].map(td => td.innerText.trim()))`, &cosigs)
			if len(cosigs) == 0 {
				t.Errorf("auditor page (%s): no cosignature rows", lang)
			}
			if lang == "en" && !care {
				txt := b.text()
				if !strings.Contains(txt, "Ready: the node follows a consistent log.") || !strings.Contains(txt, "No fork seen.") || !strings.Contains(txt, "Entries applied") {
					t.Errorf("auditor page: %q", txt)
				}
				if len(cosigs) > 0 && (len(cosigs[0]) != 3 || cosigs[0][2] != "Yes") {
					t.Errorf("a cosignature row: %q, want a verified one", cosigs[0])
				}
			}
		})
		b.eachLook("auditor-audit", "/app/auditor/audit", func(lang string, care bool) {
			var n int
			b.eval(`document.querySelectorAll(".op-table tbody tr").length`, &n)
			if n == 0 {
				t.Errorf("the auditor's trail page (%s) lists no entry", lang)
			}
		})
	})
}
