package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

const goodRules = `province: "110000"
zone: Asia/Shanghai
rules:
  - name: positive-lab-result
    colour: red
    reasons: [lab.positive]
    when: labs.positive_count > 0
`

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		// Every one of these must appear in the error message.
		want []string
	}{
		{"refuse/malformed-yaml", "province: \"110000\"\nrules:\n  - name: a\n    colour: [red\n", []string{"bad.yaml:3:1:", "did not find expected"}},
		{"refuse/tab-indented-yaml", "province: \"110000\"\nrules:\n\t- name: a\n", []string{"bad.yaml:3:1:"}},
		{"refuse/cel-syntax-error", `province: "110000"
rules:
  - name: broken-syntax
    colour: red
    reasons: [lab.positive]
    when: labs.positive_count > && true
`, []string{"bad.yaml:6:33:", `rule "broken-syntax"`, "when:", "Syntax error"}},
		{"refuse/cel-undeclared-variable", `province: "110000"
rules:
  - name: typo
    colour: red
    reasons: [lab.positive]
    when: labs.postive_count > 0
`, []string{"bad.yaml:6:", `rule "typo"`, "undeclared reference", "labs.postive_count"}},
		{"refuse/cel-not-a-bool", `province: "110000"
rules:
  - name: counts
    colour: red
    reasons: [lab.positive]
    when: labs.positive_count
`, []string{"bad.yaml:6:11:", `rule "counts"`, "gives int", "true or false"}},
		{"refuse/since-not-a-timestamp", `province: "110000"
rules:
  - name: anchored
    colour: red
    reasons: [lab.positive]
    when: labs.positive_count > 0
    since: labs.positive_count
`, []string{"bad.yaml:7:12:", `rule "anchored"`, "since", "timestamp"}},
		{"refuse/cel-error-in-a-literal-block", `province: "110000"
rules:
  - name: multi-line
    colour: red
    reasons: [lab.positive]
    when: |
      labs.positive_count > 0 &&
        days_since(labs.last) < "14"
`, []string{"bad.yaml:8:31:", `rule "multi-line"`, "no matching overload"}},
		{"refuse/cel-error-in-a-quoted-string", `province: "110000"
rules:
  - name: quoted
    colour: red
    reasons: [lab.positive]
    when: "labs.count > 0 && nope"
`, []string{"bad.yaml:6:30:", `rule "quoted"`, "nope"}},
		{"refuse/unknown-field-in-rule", `province: "110000"
rules:
  - name: spelt-wrong
    color: red
    reasons: [lab.positive]
    when: true
`, []string{"bad.yaml:4:5:", `rule "spelt-wrong"`, `unknown field "color"`}},
		{"refuse/unknown-field-in-release", `province: "110000"
rules:
  - name: released
    colour: red
    reasons: [lab.positive]
    when: true
    release:
      days: 14
      negative_test: 5
`, []string{"bad.yaml:9:7:", `rule "released"`, `unknown field "negative_test"`}},
		{"refuse/unknown-top-level-field", "province: \"110000\"\nprovnce: x\n" + goodRules[19:], []string{"bad.yaml:2:1:", `unknown field "provnce"`}},
		{"refuse/unknown-colour", `province: "110000"
rules:
  - name: blue
    colour: blue
    reasons: [lab.positive]
    when: true
`, []string{"bad.yaml:4:13:", `rule "blue"`, "unknown colour"}},
		{"refuse/bad-province", "province: \"110100\"\nrules:\n  - {name: a, colour: red, reasons: [x], when: 'true'}\n", []string{"bad.yaml:1:11:", "provincial-level"}},
		{"refuse/missing-province", "rules:\n  - {name: a, colour: red, reasons: [x], when: 'true'}\n", []string{"bad.yaml:1:1:", "province", "missing"}},
		{"refuse/unknown-zone", "province: \"110000\"\nzone: Asia/Beijing\nrules:\n  - {name: a, colour: red, reasons: [x], when: 'true'}\n", []string{"bad.yaml:2:7:", "unknown time zone"}},
		{"refuse/duplicate-rule-name", `province: "110000"
rules:
  - {name: a, colour: red, reasons: [x], when: 'true'}
  - {name: a, colour: yellow, reasons: [x], when: 'true'}
`, []string{"bad.yaml:4:5:", `rule "a"`, "line 3"}},
		{"refuse/bad-reason-code", "province: \"110000\"\nrules:\n  - {name: a, colour: red, reasons: [Lab Positive], when: 'true'}\n", []string{"bad.yaml:3:", `rule "a"`, "reason code"}},
		{"refuse/missing-when", "province: \"110000\"\nrules:\n  - {name: a, colour: red, reasons: [x]}\n", []string{"bad.yaml:3:5:", `rule "a"`, "when", "missing"}},
		{"refuse/no-rules", "province: \"110000\"\n", []string{"bad.yaml:1:1:", "rules"}},
		{"refuse/empty-file", "", []string{"bad.yaml", "empty"}},
		{"refuse/vaccinated-not-bool", "province: \"110000\"\nvaccinated: vax.doses\nrules:\n  - {name: a, colour: red, reasons: [x], when: 'true'}\n", []string{"bad.yaml:2:13:", "vaccinated"}},
		{"refuse/bad-test-kind", `province: "110000"
rules:
  - name: a
    colour: red
    reasons: [x]
    when: "true"
    release: {negative_tests: 2, test_kinds: [saliva]}
`, []string{"bad.yaml:7:", `rule "a"`, "saliva"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse("bad.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("loaded %d rules, want an error", len(rs.Rules()))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			var le *LoadError
			if !errors.As(err, &le) || hcx.ClassOf(err) != hcx.EInvalid {
				t.Errorf("error is %T of class %s, want *LoadError of class invalid", err, hcx.ClassOf(err))
			}
		})
	}
}

func TestLoadErrorsReportEveryProblem(t *testing.T) {
	src := `province: "110000"
rules:
  - {name: a, colour: red, reasons: [x], when: 'nope > 0'}
  - {name: b, colour: red, reasons: [x], when: 'labs.count'}
`
	_, err := Parse("two.yaml", []byte(src))
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 2 {
		t.Fatalf("err = %v, want two problems", err)
	}
	if le.Problems[0].Rule != "a" || le.Problems[1].Rule != "b" || le.Problems[0].Line != 3 || le.Problems[1].Line != 4 {
		t.Errorf("problems = %+v", le.Problems)
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "440000.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(goodRules, "labs.positive_count > 0", "labs.positive_count > 0 &&", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path+":7:") || !strings.Contains(err.Error(), `rule "positive-lab-result"`) {
		t.Errorf("err = %v", err)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestSampleRulesLoad(t *testing.T) {
	for _, p := range provinces {
		rs := rules(t, p)
		if rs.Province() != p {
			t.Errorf("%s: province = %s", p, rs.Province())
		}
		if rs.Location().String() != "Asia/Shanghai" {
			t.Errorf("%s: zone = %v", p, rs.Location())
		}
		if len(rs.Rules()) < 5 {
			t.Errorf("%s: only %d rules", p, len(rs.Rules()))
		}
		for _, r := range rs.Rules() {
			for _, rc := range r.Reasons {
				if zh, en := rc.Text(); zh == en {
					t.Errorf("%s: rule %q: reason %q has no text in hcx.reasonText", p, r.Name, rc)
				}
			}
		}
	}
	// The four files really differ.
	seen := map[string]hcx.ProvinceCode{}
	for _, p := range provinces {
		c := string(rules(t, p).Canonical())
		c = strings.Replace(c, string(p), "", 1)
		if q, dup := seen[c]; dup {
			t.Errorf("%s and %s have the same rules", p, q)
		}
		seen[c] = p
	}
}

func TestCanonicalIgnoresLayout(t *testing.T) {
	a := goodRules
	b := `# Beijing, reformatted, with comments and descriptions.
zone: "Asia/Shanghai"   # the default
province: '110000'
rules:
- name: positive-lab-result
  description: anything that does not decide is not in the version
  reasons:
    - lab.positive
  colour: red
  when: >
    labs.positive_count   >   0
`
	hash := func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	ra, err := Parse("a.yaml", []byte(a), WithHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Parse("b.yaml", []byte(b), WithHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ra.Canonical(), rb.Canonical()) {
		t.Errorf("canonical forms differ:\n%s\n%s", ra.Canonical(), rb.Canonical())
	}
	if ra.Version() == "" || ra.Version() != rb.Version() || len(ra.Version()) != 32 {
		t.Errorf("versions %q and %q", ra.Version(), rb.Version())
	}
	if !bytes.Equal(rb.Source(), []byte(b)) {
		t.Error("Source() is not the file as read")
	}
	c := strings.Replace(a, "> 0", "> 1", 1)
	rc, err := Parse("c.yaml", []byte(c), WithHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	if rc.Version() == ra.Version() {
		t.Error("a different condition has the same version")
	}
	d, err := ra.Decide(&Facts{Labs: []LabResult{pos(ago(day))}}, t0)
	if err != nil || d.Policy != ra.Version() {
		t.Errorf("decision policy = %q, want %q (err %v)", d.Policy, ra.Version(), err)
	}
}

func TestLiveReloadKeepsOldRulesOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "110000.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(goodRules)
	l, err := NewLive(path)
	if err != nil {
		t.Fatal(err)
	}
	first := l.Rules()

	write(strings.Replace(goodRules, "labs.positive_count > 0", "labs.positive_count", 1))
	rs, changed, err := l.Reload()
	if err == nil || changed || rs != first || l.Rules() != first {
		t.Fatalf("bad reload: changed=%v err=%v; the old rules must stay", changed, err)
	}
	if !strings.Contains(err.Error(), "keeping the rules in force") || !strings.Contains(err.Error(), `rule "positive-lab-result"`) {
		t.Errorf("err = %v", err)
	}

	write("# a comment changes nothing\n" + goodRules)
	if _, changed, err := l.Reload(); err != nil || changed {
		t.Errorf("comment-only reload: changed=%v err=%v", changed, err)
	}

	write(strings.Replace(goodRules, "colour: red", "colour: yellow", 1))
	rs, changed, err = l.Reload()
	if err != nil || !changed || l.Rules() != rs {
		t.Fatalf("good reload: changed=%v err=%v", changed, err)
	}
	if d, _ := l.Rules().Decide(&Facts{Labs: []LabResult{pos(ago(day))}}, t0); d.Colour != hcx.Yellow {
		t.Errorf("after reload: %s", d.Colour)
	}
}

func TestRuntimeErrorNamesTheRule(t *testing.T) {
	src := `province: "110000"
rules:
  - name: first-symptom
    colour: yellow
    reasons: [declaration.symptoms]
    when: declarations.last_symptoms[0] == "cough"
`
	rs, err := Parse("rt.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rs.Decide(&Facts{}, t0)
	if err == nil || !strings.Contains(err.Error(), `rule "first-symptom"`) {
		t.Errorf("err = %v", err)
	}
	d, err := rs.Decide(&Facts{Declarations: []Declaration{{At: ago(hour), Symptoms: []string{"cough"}}}}, t0)
	if err != nil || d.Colour != hcx.Yellow {
		t.Errorf("d = %+v, err = %v", d, err)
	}
}

func TestListsAreReadable(t *testing.T) {
	src := `province: "510000"
rules:
  - name: two-positive-antigens
    colour: yellow
    reasons: [lab.positive]
    when: labs.all.filter(l, l.positive && l.kind == "antigen").size() >= 2
  - name: visited-chengdu-high-risk
    colour: yellow
    reasons: [travel.risk-area]
    when: travel.all.exists(s, s.div.startsWith("5101") && s.risk == "high" && days_since(s.at) < 7)
  - name: hot
    colour: yellow
    reasons: [declaration.fever]
    when: declarations.all.exists(d, d.temp_c > 39.0 && "cough" in d.symptoms)
`
	rs, err := Parse("lists.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	antigen := func(at time.Time) LabResult { return LabResult{At: at, Positive: true, Kind: "antigen"} }
	cases := []struct {
		name string
		f    Facts
		rule string
	}{
		{"yellow/two-positive-antigens", Facts{Labs: []LabResult{antigen(ago(day)), antigen(ago(2 * day)), neg(ago(hour))}}, "two-positive-antigens"},
		{"green/one-positive-antigen", Facts{Labs: []LabResult{antigen(ago(day))}}, "default"},
		{"yellow/chengdu-high-risk", Facts{Travel: []TravelRecord{{Div: "510104", At: ago(day)}}, RiskAreas: inRisk("510100", "high")}, "visited-chengdu-high-risk"},
		{"green/chengdu-medium-risk", Facts{Travel: []TravelRecord{{Div: "510104", At: ago(day)}}, RiskAreas: inRisk("510100", "medium")}, "default"},
		{"yellow/hot-with-cough", Facts{Declarations: []Declaration{{At: ago(day), TempC: 39.5, Symptoms: []string{"cough"}}}}, "hot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := rs.Decide(&tc.f, t0)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rule != tc.rule {
				t.Errorf("rule = %q, want %q", d.Rule, tc.rule)
			}
		})
	}
}

func TestParseFacts(t *testing.T) {
	yamlFacts := `
labs:
  - {at: 2024-03-18T04:00:00Z, positive: true, kind: pcr}
travel:
  - {div: 440106, at: "2024-03-10T02:00:00Z"}
risk_areas:
  - {div: "440100", level: high, from: 2024-03-01T00:00:00Z, issuer: 440000}
current: yellow
current_since: 2024-03-10T03:00:00Z
`
	f, err := ParseFacts("f.yaml", []byte(yamlFacts))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Labs) != 1 || !f.Labs[0].Positive || f.Travel[0].Div != "440106" || f.RiskAreas[0].Issuer != "440000" || f.Current != hcx.Yellow {
		t.Errorf("facts = %+v", f)
	}
	jsonFacts := `{"labs":[{"at":"2024-03-18T04:00:00Z","positive":true,"kind":"pcr"}]}`
	if f, err := ParseFacts("f.json", []byte(jsonFacts)); err != nil || len(f.Labs) != 1 {
		t.Errorf("json: %+v %v", f, err)
	}
	if _, err := ParseFacts("f.json", []byte(`{"lab":[]}`)); err == nil || !strings.Contains(err.Error(), "lab") {
		t.Errorf("unknown field: err = %v", err)
	}
}
