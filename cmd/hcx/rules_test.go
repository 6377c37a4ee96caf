package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// yamlHeader sends a candidate rule file as YAML.
var yamlHeader = http.Header{"Content-Type": {"application/yaml"}}

// textHeader sends one as text: what does not parse as YAML is still text.
var textHeader = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}

// An operator reads the rules in force, checks a candidate (its problems and
// its diff), sees what it would decide for a resident, and publishes it:
// the file on disk is the new one (the old one beside it as .prev) when the
// answer comes, the resident's colour follows the new rules and the hub
// holds attestations under the new policy version.
func TestRulesOverTheAPI(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd, sc hcx.ProvinceCode = "440000", "510000"
	url := f.NodeURLs[gd]
	hc := f.client()
	op := f.asOperator(t, gd)
	waitReady(t, url)
	path := filepath.Join(f.Dir, "rules", string(gd)+".yaml")
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// The rules in force: for the province's operator and the auditor.
	var inForce node.RulesInForce
	if st := callAs(t, hc, op, "GET", url+"/v1/rules", nil, &inForce); st != http.StatusOK {
		t.Fatalf("GET /v1/rules: status %d", st)
	}
	if inForce.Version != f.Nodes[gd].PolicyVersion() || inForce.Province != gd || inForce.File != "440000.yaml" ||
		inForce.Source != string(onDisk) || inForce.Zone != "Asia/Shanghai" || inForce.LoadedAt.IsZero() || inForce.Vaccinated != "vax.complete" {
		t.Errorf("rules in force: %+v", inForce)
	}
	var lab *node.RuleSummary
	for i := range inForce.Rules {
		if inForce.Rules[i].Name == "positive-lab-result" {
			lab = &inForce.Rules[i]
		}
	}
	if lab == nil || lab.Colour != hcx.Red || lab.When != "labs.positive_count > 0" || lab.Since != "labs.last_positive" ||
		lab.Release.Days != 14 || lab.Release.NegativeTests != 5 || len(lab.Reasons) != 1 || lab.Reasons[0].Code != "lab.positive" || lab.Reasons[0].ZH == "" || lab.Line == 0 {
		t.Errorf("rule positive-lab-result: %+v", lab)
	}
	var audView node.RulesInForce
	if st := callAs(t, hc, f.asPerson(t, "auditor"), "GET", url+"/v1/rules", nil, &audView); st != http.StatusOK || audView.Version != inForce.Version {
		t.Errorf("the auditor reads the rules: status %d version %q", st, audView.Version)
	}

	// A resident with a positive result is red under the rules in force.
	sub, resident := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": "440106199003070028", "name": "张三"})
	if st := callAs(t, hc, op, "POST", url+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive", "id": "R-16"}, nil); st != http.StatusOK {
		t.Fatalf("positive result: status %d", st)
	}
	if c := residentColour(t, f, resident, gd, sub); c != hcx.Red {
		t.Fatalf("after a positive result: %s, want red", c)
	}

	// The candidate: a positive result is yellow for 7 days.
	candidate := strings.Replace(string(onDisk), "    reasons: [lab.positive]\n    when: labs.positive_count > 0\n    since: labs.last_positive\n    release:\n      days: 14",
		"    reasons: [lab.positive]\n    when: labs.positive_count > 0\n    since: labs.last_positive\n    release:\n      days: 7", 1)
	candidate = strings.Replace(candidate, "  - name: positive-lab-result\n    colour: red", "  - name: positive-lab-result\n    colour: yellow", 1)
	if candidate == string(onDisk) || strings.Count(candidate, "colour: yellow") != strings.Count(string(onDisk), "colour: yellow")+1 {
		t.Fatal("the sample rules changed: the candidate does not apply")
	}

	var check node.RulesCheck
	a := send(t, hc, op, "POST", url+"/v1/rules/check", candidate, yamlHeader)
	if a.status != http.StatusOK {
		t.Fatalf("check: %d %s", a.status, a.body)
	}
	if err := json.Unmarshal(a.body, &check); err != nil {
		t.Fatal(err)
	}
	if !check.OK || check.Same || check.Version == "" || check.Version == inForce.Version || check.Province != gd || check.InForce != inForce.Version || len(check.Problems) != 0 {
		t.Errorf("check of the candidate: %+v", check)
	}
	for _, l := range []string{"--- in force/440000.yaml\n+++ candidate\n", "\n-    colour: red\n+    colour: yellow\n", "\n-      days: 14\n+      days: 7\n"} {
		if !strings.Contains(check.Diff, l) {
			t.Errorf("the diff lacks %q:\n%s", l, check.Diff)
		}
	}
	// The same rules again: same, no diff. text/plain is taken too.
	a = send(t, hc, op, "POST", url+"/v1/rules/check", string(onDisk), textHeader)
	var again node.RulesCheck
	if json.Unmarshal(a.body, &again); a.status != http.StatusOK || !again.OK || !again.Same || again.Diff != "" || again.Version != inForce.Version {
		t.Errorf("check of the rules in force: %d %+v", a.status, again)
	}

	// Rules that do not load are the check's answer, with where and why.
	for _, tc := range []struct {
		name, src           string
		line                int
		rule, field, inText string
	}{
		{"bad YAML", "province: \"440000\"\nrules: [\n", 0, "", "", ""},
		{"a condition that does not compile", strings.Replace(candidate, "when: labs.positive_count > 0", "when: labs.positive_count >", 1), 0, "positive-lab-result", "when", ""},
		{"an unknown colour", strings.Replace(candidate, "colour: yellow", "colour: purple", 1), 0, "positive-lab-result", "colour", "purple"},
		{"another province's rules", strings.Replace(string(onDisk), `province: "440000"`, `province: "510000"`, 1), 0, "", "province", "510000"},
	} {
		a := send(t, hc, op, "POST", url+"/v1/rules/check", tc.src, textHeader)
		var c node.RulesCheck
		if err := json.Unmarshal(a.body, &c); a.status != http.StatusOK || err != nil || c.OK || len(c.Problems) == 0 {
			t.Errorf("check of %s: %d %s", tc.name, a.status, a.body)
			continue
		}
		p := c.Problems[0]
		if (tc.line != 0 && p.Line != tc.line) || p.Rule != tc.rule || p.Field != tc.field || !strings.Contains(p.Message, tc.inText) {
			t.Errorf("check of %s: problem %+v", tc.name, p)
		}
		if tc.field != "province" && p.Line == 0 {
			t.Errorf("check of %s: the problem has no line: %+v", tc.name, p)
		}
	}

	// What the candidate would do to the resident, before publishing.
	var ex node.RulesExplanation
	if st := callAs(t, hc, op, "POST", url+"/v1/rules/explain", map[string]string{"subject": string(sub)}, &ex); st != http.StatusOK {
		t.Fatalf("explain under the rules in force: status %d", st)
	}
	if ex.Candidate || ex.Policy != inForce.Version || ex.Decision.Colour != hcx.Red || ex.Decision.Rule != "positive-lab-result" ||
		ex.Current.Colour != hcx.Red || ex.Current.Policy != inForce.Version || len(ex.Trace) != len(inForce.Rules) || ex.Decision.Since == nil {
		t.Errorf("explanation under the rules in force: %+v", ex)
	}
	decides := 0
	for _, tr := range ex.Trace {
		if tr.Decides {
			decides++
			if tr.Rule != "positive-lab-result" || !tr.Holds || tr.Why != "holds: decides the colour" {
				t.Errorf("the deciding rule's trace: %+v", tr)
			}
		} else if !tr.Holds && !strings.HasPrefix(tr.Why, "does not hold") {
			t.Errorf("trace of a rule that does not hold: %+v", tr)
		}
	}
	if decides != 1 || len(ex.Decision.Release) == 0 || ex.Decision.Release[0].Texts[0] == "" || ex.Decision.Release[0].Texts[2] == "" {
		t.Errorf("explanation: %d deciding rules, release %+v", decides, ex.Decision.Release)
	}
	seen := false
	for _, v := range ex.Values {
		seen = seen || (v.Name == "labs.positive_count" && v.Text == "1")
	}
	if !seen {
		t.Errorf("the values the rules saw lack labs.positive_count = 1: %+v", ex.Values)
	}
	ex = node.RulesExplanation{}
	at := time.Now().Add(time.Hour).Format(time.RFC3339)
	if st := callAs(t, hc, op, "POST", url+"/v1/rules/explain", map[string]string{"subject": string(sub), "rules": candidate, "at": at}, &ex); st != http.StatusOK {
		t.Fatalf("explain under the candidate: status %d", st)
	}
	if !ex.Candidate || ex.Policy != check.Version || ex.Decision.Colour != hcx.Yellow || ex.Decision.Rule != "positive-lab-result" ||
		ex.Current.Colour != hcx.Red || ex.At.UTC().Format(time.RFC3339) != mustUTC(t, at) {
		t.Errorf("explanation under the candidate: %+v", ex)
	}
	var trail node.AuditPage
	if st := callAs(t, hc, op, "GET", url+"/v1/audit?limit=1000", nil, &trail); st != http.StatusOK {
		t.Fatalf("audit trail: status %d", st)
	}
	explained := 0
	for _, e := range trail.Entries {
		if e.Action == node.ActionRulesExplain && e.Subject == sub && e.Why == "end-to-end test" {
			explained++
		}
	}
	if explained != 2 {
		t.Errorf("the trail records %d explanations of the resident, want 2", explained)
	}

	// Every refusal names what is wrong.
	big := strings.Repeat("#", node.MaxCandidateRules+1)
	opNoReason := caller{name: "operator without a reason", sign: func(tb testing.TB, req *http.Request, body []byte) {
		op.sign(tb, req, body)
		req.Header.Del("X-HCX-Reason")
	}}
	for _, tc := range []struct {
		name         string
		who          caller
		method, path string
		body         string
		hdr          http.Header
		status       int
		code, field  string
	}{
		{"an empty check", op, "POST", "/v1/rules/check", "", yamlHeader, 400, "invalid_body", "body"},
		{"a check over 64 KiB", op, "POST", "/v1/rules/check", big, yamlHeader, 413, "too_large", ""},
		{"a check sent as JSON", op, "POST", "/v1/rules/check", `{"rules":"x"}`, nil, 400, "unsupported_media_type", "Content-Type"},
		{"an explanation without a subject", op, "POST", "/v1/rules/explain", `{}`, nil, 400, "invalid_subject", "subject"},
		{"an explanation of a malformed subject", op, "POST", "/v1/rules/explain", `{"subject":"x"}`, nil, 400, "invalid_subject", "subject"},
		{"an explanation of an unknown resident", op, "POST", "/v1/rules/explain", `{"subject":"` + strings.Repeat("a", 26) + `"}`, nil, 404, "unknown_resident", ""},
		{"an explanation at a bad time", op, "POST", "/v1/rules/explain", `{"subject":"` + string(sub) + `","at":"tomorrow"}`, nil, 400, "invalid_at", "at"},
		{"an explanation two years ahead", op, "POST", "/v1/rules/explain", `{"subject":"` + string(sub) + `","at":"` + time.Now().AddDate(2, 0, 0).Format(time.RFC3339) + `"}`, nil, 400, "invalid_at", "at"},
		{"an explanation under rules that do not load", op, "POST", "/v1/rules/explain", `{"subject":"` + string(sub) + `","rules":"province: \"440000\"\n"}`, nil, 422, "invalid_rules", "rules"},
		{"an explanation with empty rules", op, "POST", "/v1/rules/explain", `{"subject":"` + string(sub) + `","rules":""}`, nil, 400, "invalid_rules", "rules"},
		{"an explanation with an unknown member", op, "POST", "/v1/rules/explain", `{"subject":"` + string(sub) + `","why":"x"}`, nil, 400, "bad_json", "why"},
		{"an explanation without a reason", opNoReason, "POST", "/v1/rules/explain", `{"subject":"` + string(sub) + `"}`, nil, 400, "reason_required", "X-HCX-Reason"},
		{"a publish without a base version", op, "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": candidate}), nil, 400, "invalid_base_version", "base_version"},
		{"a publish without a source", op, "PUT", "/v1/rules", `{"base_version":"` + inForce.Version + `"}`, nil, 400, "invalid_source", "source"},
		{"a publish against stale rules", op, "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": candidate, "base_version": strings.Repeat("0", 32)}), nil, 409, node.CodeRulesChanged, "base_version"},
		{"a publish of rules that do not load", op, "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": "rules: []\n", "base_version": inForce.Version}), nil, 422, "invalid_rules", "source"},
		{"a publish of another province's rules", op, "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": strings.Replace(candidate, `province: "440000"`, `province: "510000"`, 1), "base_version": inForce.Version}), nil, 422, "invalid_rules", "source"},
		{"a publish over 64 KiB", op, "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": big, "base_version": inForce.Version}), nil, 413, "too_large", "source"},
		{"a publish without a reason", opNoReason, "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": candidate, "base_version": inForce.Version}), nil, 400, "reason_required", "X-HCX-Reason"},
		{"a publish by Sichuan's operator", f.asOperator(t, sc), "PUT", "/v1/rules", jsonOf(t, map[string]string{"source": candidate, "base_version": inForce.Version}), nil, 403, "other_province", ""},
	} {
		a := send(t, hc, tc.who, tc.method, url+tc.path, tc.body, tc.hdr)
		if a.status != tc.status || a.code != tc.code || a.field != tc.field {
			t.Errorf("%s: %d %s field %q, want %d %s field %q: %s", tc.name, a.status, a.code, a.field, tc.status, tc.code, tc.field, a.body)
		}
	}
	if f.Nodes[gd].PolicyVersion() != inForce.Version {
		t.Fatal("a refused publish changed the rules in force")
	}
	if now, _ := os.ReadFile(path); string(now) != string(onDisk) {
		t.Fatal("a refused publish changed the rule file")
	}

	// Two operators publish against the same check at once: exactly one
	// wins, the other is told to check again.
	other := strings.Replace(candidate, "      days: 7", "      days: 10", 1)
	sources := []string{candidate, other}
	answers := make([]answer, 2)
	var wg sync.WaitGroup
	published := time.Now()
	for i := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = send(t, hc, op, "PUT", url+"/v1/rules", jsonOf(t, map[string]string{"source": sources[i], "base_version": inForce.Version}), nil)
		}()
	}
	wg.Wait()
	won := -1
	for i, a := range answers {
		switch {
		case a.status == http.StatusOK && won < 0:
			won = i
		case a.status == http.StatusConflict && a.code == node.CodeRulesChanged:
		default:
			t.Errorf("publish %d: %d %s", i, a.status, a.body)
		}
	}
	if won < 0 {
		t.Fatalf("neither publish won: %+v", answers)
	}
	var pub node.RulesPublished
	if err := json.Unmarshal(answers[won].body, &pub); err != nil || pub.Was != inForce.Version || pub.Version == inForce.Version || pub.Unchanged {
		t.Fatalf("the winning publish: %s", answers[won].body)
	}
	// Acknowledged means on disk: the new file, the old one as .prev.
	if now, _ := os.ReadFile(path); string(now) != sources[won] {
		t.Errorf("the rule file after the publish is not the published one")
	}
	if prev, _ := os.ReadFile(path + ".prev"); string(prev) != string(onDisk) {
		t.Errorf("%s.prev is not the rule file before the publish", filepath.Base(path))
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left beside the rules: %v", leftovers)
	}
	if v := f.Nodes[gd].PolicyVersion(); v != pub.Version {
		t.Errorf("the node decides with %s, the publish answered %s", v, pub.Version)
	}
	var after node.RulesInForce
	if st := callAs(t, hc, op, "GET", url+"/v1/rules", nil, &after); st != http.StatusOK || after.Version != pub.Version || after.Source != sources[won] || !after.LoadedAt.After(inForce.LoadedAt) {
		t.Errorf("rules in force after the publish: status %d %+v", st, after)
	}
	// Publishing what is in force again changes nothing.
	a = send(t, hc, op, "PUT", url+"/v1/rules", jsonOf(t, map[string]string{"source": sources[won], "base_version": pub.Version}), nil)
	if !strings.Contains(string(a.body), `"unchanged":true`) || a.status != http.StatusOK {
		t.Errorf("publishing the rules in force again: %d %s", a.status, a.body)
	}

	// The resident is decided again under the new rules: yellow, and the
	// hub holds the attestation under the new policy version.
	deadline := time.Now().Add(15 * time.Second)
	for residentColour(t, f, resident, gd, sub) != hcx.Yellow {
		if time.Now().After(deadline) {
			t.Fatal("the resident is not yellow under the new rules")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("publish to the resident decided again: %v", time.Since(published))
	auditorM := f.asMachine("auditor-cert", f.PKI.Auditor)
	for {
		var logged exchange.SubjectAnswer
		st := callAs(t, hc, auditorM, "GET", f.HubURLs[0]+"/v1/subjects/"+string(sub), nil, &logged)
		if n := len(logged.Attestations); st == http.StatusOK && n > 0 && logged.Attestations[n-1].PolicyV == pub.Version && logged.Attestations[n-1].Colour == hcx.Yellow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub holds no yellow attestation under %s: status %d %+v", pub.Version, st, logged)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("publish to the hub's attestation under the new policy: %v", time.Since(published))
	trail = node.AuditPage{}
	callAs(t, hc, op, "GET", url+"/v1/audit?limit=1000", nil, &trail)
	reloads := 0
	for _, e := range trail.Entries {
		if e.Action == node.ActionRulesReload && e.Note == "policy "+inForce.Version+" -> "+pub.Version && e.Why == "end-to-end test" && e.Role == "operator" {
			reloads++
		}
	}
	if reloads != 1 {
		t.Errorf("the trail records %d publishes by the operator, want 1", reloads)
	}
	// The same question as before the publish now has the candidate's
	// answer under the rules in force.
	ex = node.RulesExplanation{}
	if st := callAs(t, hc, op, "POST", url+"/v1/rules/explain", map[string]string{"subject": string(sub)}, &ex); st != http.StatusOK || ex.Policy != pub.Version || ex.Decision.Colour != hcx.Yellow || ex.Current.Colour != hcx.Yellow {
		t.Errorf("explanation after the publish: status %d %+v", st, ex)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustUTC(t *testing.T, s string) string {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return at.UTC().Format(time.RFC3339)
}
