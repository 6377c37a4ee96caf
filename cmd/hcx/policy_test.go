package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runPolicyForTest(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runPolicy(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestPolicyCheckLoadsTheFourProvincesAndRefusesABadFile(t *testing.T) {
	rules, _ := filepath.Glob("../../configs/rules/*.yaml")
	if len(rules) != 4 {
		t.Fatalf("found %d sample rule files, want 4", len(rules))
	}
	out, err := runPolicyForTest(t, append([]string{"check"}, rules...)...)
	if err != nil {
		t.Fatalf("hcx policy check: %v\n%s", err, out)
	}
	for _, want := range []string{"110000 北京市", "310000 上海市", "440000 广东省", "510000 四川省", "version", "Asia/Shanghai", "release"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, ": OK, "); n != 4 {
		t.Errorf("%d files reported OK, want 4", n)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	src, err := os.ReadFile(rules[0])
	if err != nil {
		t.Fatal(err)
	}
	// Break the first condition: an undeclared variable must be refused at
	// load, naming the file, the rule and the position.
	broken := strings.Replace(string(src), "when: ", "when: no_such_fact > 0 || ", 1)
	if broken == string(src) {
		t.Fatal("sample rules have no 'when: ' to break")
	}
	if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runPolicyForTest(t, "check", rules[1], bad)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 rule files refused") {
		t.Fatalf("err = %v, want 1 of 2 refused\n%s", err, out)
	}
	for _, want := range []string{bad + ": REFUSED", "undeclared reference to 'no_such_fact'", `rule "`} {
		if !strings.Contains(out, want) {
			t.Errorf("refusal lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(regexp.QuoteMeta(bad) + `:\d+:\d+: rule "[a-z-]+": when:`).MatchString(out) {
		t.Errorf("refusal does not give file:line:column and the rule's name:\n%s", out)
	}
	if _, err := runPolicyForTest(t, "check"); err == nil || !strings.Contains(err.Error(), "name at least one rule file") {
		t.Errorf("check without files: err = %v", err)
	}
}

func TestPolicyExplainShowsColourRuleAndReleaseConditions(t *testing.T) {
	facts := "../../policy/testdata/facts/positive-then-negatives.yaml"
	out, err := runPolicyForTest(t, "explain", "--rules", "../../configs/rules/440000.yaml", "--facts", facts, "--at", "2024-03-20T12:00:00+08:00")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Colour   红码 red",
		"Rule     positive-lab-result",
		"lab.positive",
		"stay isolated until 2024-03-29 10:00 CST",
		"2024-03-29 10:00 CST まで隔離", // and in Japanese and Korean (issue 10)
		"2024-03-29 10:00 CST까지 격리",
		"2 more negative PCR tests",
		"medium-risk-travel   holds, but released",
		"labs.positive_count      1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	// A month later the 14 days are over but only 3 of the 5 negative tests
	// are in: still red, and only the tests are left to do.
	out, err = runPolicyForTest(t, "explain", "--rules", "../../configs/rules/440000.yaml", "--facts", facts, "--at", "2024-04-20T12:00:00+08:00")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Colour   红码 red") || strings.Contains(out, "stay isolated") || !strings.Contains(out, "2 more negative PCR tests") {
		t.Errorf("a month later, want red with only the 2 tests left to do:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "--rules", "../../configs/rules/440000.yaml"}, "give --rules FILE and --facts FILE"},
		{[]string{"explain", "--rules", "../../configs/rules/440000.yaml", "--facts", facts, "--at", "yesterday"}, "want RFC 3339"},
		{[]string{"explain", "--rules", "../../configs/rules/440000.yaml", "--facts", "nope.yaml"}, "read facts"},
		{[]string{"frobnicate"}, "want check or explain"},
	} {
		if _, err := runPolicyForTest(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hcx policy %s: err = %v, want one saying %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// Issue 10 item 8: texts shown to people come in zh, en, ja and ko; check
// warns about a text without all four (a reason's are in hcx.go, a note's
// in the rule file) and stays quiet when all are there.
func TestPolicyCheckWarnsAboutTextsWithoutFourLanguages(t *testing.T) {
	src, err := os.ReadFile("../../configs/rules/510000.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runPolicyForTest(t, "check", "../../configs/rules/510000.yaml")
	if err != nil || strings.Contains(out, "warning:") {
		t.Fatalf("the sample rules: err %v, output:\n%s", err, out)
	}
	var kept []string
	for _, line := range strings.Split(string(src), "\n") {
		if t := strings.TrimSpace(line); !strings.HasPrefix(t, "ja:") && !strings.HasPrefix(t, "ko:") {
			kept = append(kept, line)
		}
	}
	two := filepath.Join(t.TempDir(), "510000.yaml")
	if err := os.WriteFile(two, []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runPolicyForTest(t, "check", two)
	if err != nil {
		t.Fatalf("a note in zh and en only is a warning, not a refusal: %v\n%s", err, out)
	}
	if !strings.Contains(out, "warning: texts shown to people are given in zh, en, ja and ko") || !strings.Contains(out, "the release note of rule post-positive-watch lacks ja, ko") {
		t.Errorf("no warning about the note:\n%s", out)
	}
}
