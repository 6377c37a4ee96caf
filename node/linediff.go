package node

import (
	"fmt"
	"strings"
)

// A line diff for operators who publish rules over the API (rules.go): what
// a candidate rule file changes against the file in force, as a unified
// diff (the format of diff -u and git diff) that people read and patch(1)
// applies.
//
// Lines are compared by Myers' O((N+M)D) algorithm after the common prefix
// and suffix are cut off, so an edit of a few lines in a file of any size
// costs little. Its memory grows with D², so D is bounded (maxDiffEdits):
// two files further apart than that are shown as the whole differing middle
// removed and the new one added, which is still a correct diff, only not the
// shortest one.

// maxDiffEdits bounds the edit distance Myers' algorithm searches: at most
// about maxDiffEdits² 8-byte entries of trace (8 MB) and (N+M)·maxDiffEdits
// steps. Real rule files are a few hundred lines.
const maxDiffEdits = 1000

// diffContext is how many unchanged lines surround each change, as diff -u.
const diffContext = 3

// splitLines cuts b into lines, each with its "\n" (the last one without,
// if b does not end in one).
func splitLines(b []byte) []string {
	var out []string
	s := string(b)
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// Edit kinds of a line diff.
const (
	editSame = ' '
	editDel  = '-'
	editAdd  = '+'
)

// lineEdit is one line of the edit script: kept, deleted from a or added
// from b, with its index in a (kept, deleted) or b (added).
type lineEdit struct {
	kind byte
	a, b int // index in a and in b of the line (the one it follows, for the side it is not on)
}

// lineEdits is an edit script that turns a into b: the shortest one when
// the two differ in at most maxD lines (Myers), otherwise one that deletes
// the differing middle of a and adds that of b.
func lineEdits(a, b []string, maxD int) []lineEdit {
	// Compare small integers, not strings: equal lines get equal ids.
	ids := map[string]int32{}
	intern := func(ls []string) []int32 {
		out := make([]int32, len(ls))
		for i, l := range ls {
			id, ok := ids[l]
			if !ok {
				id = int32(len(ids))
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	x, y := intern(a), intern(b)
	pre := 0
	for pre < len(x) && pre < len(y) && x[pre] == y[pre] {
		pre++
	}
	suf := 0
	for suf < len(x)-pre && suf < len(y)-pre && x[len(x)-1-suf] == y[len(y)-1-suf] {
		suf++
	}
	var out []lineEdit
	for i := 0; i < pre; i++ {
		out = append(out, lineEdit{editSame, i, i})
	}
	mid, ok := myers(x[pre:len(x)-suf], y[pre:len(y)-suf], maxD)
	if !ok {
		mid = mid[:0]
		for i := 0; i < len(x)-pre-suf; i++ {
			mid = append(mid, lineEdit{editDel, i, 0})
		}
		for j := 0; j < len(y)-pre-suf; j++ {
			mid = append(mid, lineEdit{editAdd, len(x) - pre - suf, j})
		}
	}
	for _, e := range mid {
		out = append(out, lineEdit{e.kind, e.a + pre, e.b + pre})
	}
	for i := 0; i < suf; i++ {
		out = append(out, lineEdit{editSame, len(x) - suf + i, len(y) - suf + i})
	}
	return out
}

// myers is Myers' greedy shortest edit script of a into b, or false when it
// is longer than maxD. It keeps, for every d, the furthest x reached on
// each diagonal k in [-d-1, d+1] before step d, and walks them back.
func myers(a, b []int32, maxD int) ([]lineEdit, bool) {
	n, m := len(a), len(b)
	max := n + m
	if max == 0 {
		return nil, true
	}
	off := max + 1
	v := make([]int, 2*max+3)
	var trace [][]int
	done := -1
	for d := 0; d <= max && d <= maxD; d++ {
		lo, hi := off-d-1, off+d+1
		trace = append(trace, append([]int(nil), v[lo:hi+1]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: an insertion
			} else {
				x = v[off+k-1] + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				done = d
				break
			}
		}
		if done >= 0 {
			break
		}
	}
	if done < 0 {
		return nil, false
	}
	var rev []lineEdit
	x, y := n, m
	for d := done; d >= 0; d-- {
		snap := trace[d] // snap[i] is v[k] for k = i-d-1
		at := func(k int) int { return snap[k+d+1] }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py {
			x, y = x-1, y-1
			rev = append(rev, lineEdit{editSame, x, y})
		}
		if d > 0 {
			if x == px {
				rev = append(rev, lineEdit{editAdd, px, py})
			} else {
				rev = append(rev, lineEdit{editDel, px, py})
			}
		}
		x, y = px, py
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, true
}

// unifiedDiff is the unified diff that turns a (named aName) into b (bName),
// "" when they are the same.
func unifiedDiff(aName, bName string, a, b []byte) string {
	return unifiedDiffMax(aName, bName, a, b, maxDiffEdits)
}

func unifiedDiffMax(aName, bName string, a, b []byte, maxD int) string {
	al, bl := splitLines(a), splitLines(b)
	edits := lineEdits(al, bl, maxD)
	var changes []int
	for i, e := range edits {
		if e.kind != editSame {
			changes = append(changes, i)
		}
	}
	if len(changes) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", aName, bName)
	line := func(prefix byte, s string) {
		sb.WriteByte(prefix)
		sb.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			sb.WriteString("\n\\ No newline at end of file\n")
		}
	}
	for c := 0; c < len(changes); {
		// A hunk runs from diffContext lines before its first change to
		// diffContext lines after its last; changes closer than twice
		// that share one.
		first, last := changes[c], changes[c]
		for c++; c < len(changes) && changes[c]-last <= 2*diffContext; c++ {
			last = changes[c]
		}
		from, to := first-diffContext, last+diffContext+1
		if from < 0 {
			from = 0
		}
		if to > len(edits) {
			to = len(edits)
		}
		// Where the hunk starts in a and in b, and how many lines of each.
		aStart, bStart := edits[from].a, edits[from].b
		var aN, bN int
		for _, e := range edits[from:to] {
			if e.kind != editAdd {
				aN++
			}
			if e.kind != editDel {
				bN++
			}
		}
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", hunkRange(aStart, aN), hunkRange(bStart, bN))
		for _, e := range edits[from:to] {
			switch e.kind {
			case editSame:
				line(' ', al[e.a])
			case editDel:
				line('-', al[e.a])
			case editAdd:
				line('+', bl[e.b])
			}
		}
	}
	return sb.String()
}

// hunkRange is a hunk's "start,count" as diff -u writes it: 1-based, the
// count left out when 1, and an empty range starting at the line before.
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
