package node

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// applyUnified applies a unified diff to a, checking every context and
// deleted line against a, the way patch(1) does without fuzz.
func applyUnified(t *testing.T, a []byte, diff string) []byte {
	t.Helper()
	if diff == "" {
		return a
	}
	al := splitLines(a)
	lines := strings.SplitAfter(diff, "\n")
	if !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		t.Fatalf("no file header:\n%s", diff)
	}
	var out []string
	pos := 0 // next line of a not yet copied
	i := 2
	num := func(s string) (int, int) {
		start, count, ok := strings.Cut(s[1:], ",")
		st, err := strconv.Atoi(start)
		if err != nil {
			t.Fatalf("hunk range %q", s)
		}
		n := 1
		if ok {
			if n, err = strconv.Atoi(count); err != nil {
				t.Fatalf("hunk range %q", s)
			}
		}
		return st, n
	}
	for i < len(lines) && lines[i] != "" {
		h := strings.Fields(lines[i])
		if len(h) != 4 || h[0] != "@@" || h[3] != "@@" {
			t.Fatalf("line %d: want a hunk header, got %q", i+1, lines[i])
		}
		aStart, aN := num(h[1])
		_, bN := num(h[2])
		from := aStart - 1
		if aN == 0 {
			from = aStart
		}
		if from < pos {
			t.Fatalf("hunk %q overlaps the one before", lines[i])
		}
		out = append(out, al[pos:from]...)
		pos = from
		i++
		var gotA, gotB int
		for i < len(lines) && lines[i] != "" && !strings.HasPrefix(lines[i], "@@") {
			l := lines[i]
			i++
			body := l[1:]
			if i < len(lines) && strings.HasPrefix(lines[i], `\ No newline`) {
				body = strings.TrimSuffix(body, "\n")
				i++
			}
			switch l[0] {
			case ' ', '-':
				if pos >= len(al) || al[pos] != body {
					t.Fatalf("hunk line %q does not match line %d of a", l, pos+1)
				}
				pos++
				gotA++
				if l[0] == ' ' {
					out = append(out, body)
					gotB++
				}
			case '+':
				out = append(out, body)
				gotB++
			default:
				t.Fatalf("bad hunk line %q", l)
			}
		}
		if gotA != aN || gotB != bN {
			t.Fatalf("hunk %v counts %d,%d lines, header says %d,%d", h, gotA, gotB, aN, bN)
		}
	}
	out = append(out, al[pos:]...)
	return []byte(strings.Join(out, ""))
}

// lcs is the length of the longest common subsequence of a and b's lines:
// a shortest edit script changes len(a)+len(b)-2·lcs lines.
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case a[i] == b[j]:
				cur[j+1] = prev[j] + 1
			case prev[j+1] > cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func randomText(r *rand.Rand, lines int) []byte {
	var b strings.Builder
	for i := 0; i < lines; i++ {
		b.WriteString(string(rune('a' + r.Intn(4))))
		if i < lines-1 || r.Intn(3) > 0 {
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

func TestUnifiedDiffAppliesAndIsShortest(t *testing.T) {
	r := rand.New(rand.NewSource(16))
	for n := 0; n < 3000; n++ {
		a := randomText(r, r.Intn(14))
		b := randomText(r, r.Intn(14))
		if n%3 == 0 {
			// An edit of a: most of the file the same.
			b = append(append([]byte(nil), a...), randomText(r, r.Intn(3))...)
		}
		d := unifiedDiff("a", "b", a, b)
		if got := applyUnified(t, a, d); string(got) != string(b) {
			t.Fatalf("diff of %q to %q does not give b:\n%s\napplied: %q", a, b, d, got)
		}
		if (d == "") != (string(a) == string(b)) {
			t.Fatalf("diff of %q to %q is %q", a, b, d)
		}
		changed := 0
		for _, l := range strings.Split(d+"\n\n", "\n")[2:] {
			if strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+") {
				changed++
			}
		}
		al, bl := splitLines(a), splitLines(b)
		if want := len(al) + len(bl) - 2*lcs(al, bl); changed != want {
			t.Fatalf("diff of %q to %q changes %d lines, the shortest %d:\n%s", a, b, changed, want, d)
		}
	}
}

func TestUnifiedDiffBeyondTheEditBoundIsStillCorrect(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for n := 0; n < 500; n++ {
		a, b := randomText(r, r.Intn(30)), randomText(r, r.Intn(30))
		d := unifiedDiffMax("a", "b", a, b, 2)
		if got := applyUnified(t, a, d); string(got) != string(b) {
			t.Fatalf("bounded diff of %q to %q does not give b:\n%s", a, b, d)
		}
	}
}

func TestUnifiedDiffFormat(t *testing.T) {
	a := "province: \"440000\"\nrules:\n  - name: x\n    colour: red\n    when: labs.positive_count > 0\n    release:\n      days: 14\n      negative_tests: 5\n    note: a\n    end: b\n"
	b := strings.Replace(a, "days: 14", "days: 7", 1) + "# tail"
	want := "--- in force\n+++ candidate\n" +
		"@@ -4,7 +4,8 @@\n" +
		"     colour: red\n     when: labs.positive_count > 0\n     release:\n" +
		"-      days: 14\n+      days: 7\n" +
		"       negative_tests: 5\n     note: a\n     end: b\n" +
		"+# tail\n\\ No newline at end of file\n"
	if got := unifiedDiff("in force", "candidate", []byte(a), []byte(b)); got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
	// patch(1), where it is installed, applies it too.
	if _, err := exec.LookPath("patch"); err == nil {
		dir := t.TempDir()
		f := filepath.Join(dir, "rules.yaml")
		if err := os.WriteFile(f, []byte(a), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("patch", "--quiet", f)
		cmd.Stdin = strings.NewReader(want)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("patch: %v: %s", err, out)
		}
		if got, _ := os.ReadFile(f); string(got) != b {
			t.Errorf("patch(1) made %q, want %q", got, b)
		}
	}
}

// A large file with a small edit is cheap: the common ends are cut first.
func TestUnifiedDiffOfALargeFile(t *testing.T) {
	var sb strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&sb, "line %d\n", i)
	}
	a := sb.String()
	b := strings.Replace(a, "line 10000\n", "line ten thousand\n", 1)
	d := unifiedDiff("a", "b", []byte(a), []byte(b))
	if got := applyUnified(t, []byte(a), d); string(got) != b {
		t.Fatal("diff of the large file does not give b")
	}
	if strings.Count(d, "\n") != 2+1+7+1 {
		t.Errorf("diff of one changed line:\n%s", d)
	}
}

// BenchmarkUnifiedDiffWorstCase: a 64 KiB candidate with nothing in common
// with a 256 KiB file in force, every line different (the bound's worst).
func BenchmarkUnifiedDiffWorstCase(b *testing.B) {
	var x, y strings.Builder
	for i := 0; x.Len() < 256<<10; i++ {
		fmt.Fprintf(&x, "a%d\n", i)
	}
	for i := 0; y.Len() < 64<<10; i++ {
		fmt.Fprintf(&y, "b%d\n", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		unifiedDiff("a", "b", []byte(x.String()), []byte(y.String()))
	}
}
