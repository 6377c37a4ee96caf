package web

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestRulesFormKeepsTheFilesLineEnds: a browser submits a textarea with CR
// LF line ends; the candidate checked and published is the file as typed,
// with LF, or its diff against the file in force would change every line
// (a defect the browser test found).
func TestRulesFormKeepsTheFilesLineEnds(t *testing.T) {
	form := url.Values{"candidate": {"province: \"440000\"\r\nrules:\r\n  - name: x\r\n"}}
	r := httptest.NewRequest("POST", "/app/operator/rules/check", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	got, ok := parseRulesForm(httptest.NewRecorder(), r)
	if !ok || got != "province: \"440000\"\nrules:\n  - name: x\n" {
		t.Errorf("candidate %q (ok %v), want LF line ends", got, ok)
	}
}

// TestParseDiffKindsEachLine: the diff's lines are coloured by kind.
func TestParseDiffKindsEachLine(t *testing.T) {
	d := "--- in force/440000.yaml\n+++ candidate\n@@ -1,2 +1,2 @@\n rules:\n-    colour: red\n+    colour: yellow\n"
	want := []diffLine{{"head", "--- in force/440000.yaml"}, {"head", "+++ candidate"}, {"hunk", "@@ -1,2 +1,2 @@"}, {"", " rules:"}, {"del", "-    colour: red"}, {"add", "+    colour: yellow"}}
	got := parseDiff(d)
	if len(got) != len(want) {
		t.Fatalf("parseDiff: %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := parseDiff(""); len(got) != 0 {
		t.Errorf("an empty diff: %q", got)
	}
}
