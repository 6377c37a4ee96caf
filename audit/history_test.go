package audit

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHistoryKeepsDistinctFindingsNewestFirstAcrossARestart: a finding seen
// in two passes is one sighting counted twice; another index is another
// finding; the last pass keeps its error; the bound lets the oldest go and
// counts them; and the history survives closing and reopening the store.
func TestHistoryKeepsDistinctFindingsNewestFirstAcrossARestart(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	v := openVerifier(t, dir, p)
	h, err := v.History()
	if err != nil || len(h.Findings) != 0 || h.Passes != 0 {
		t.Fatalf("a new store's history: %+v, %v", h, err)
	}
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	leaf := func(i uint64, detail string) Finding {
		return Finding{Kind: KindLeaf, Member: "http://hub-1", Index: idx(i), Detail: detail, Notes: []string{"a note"}}
	}
	if !h.Record(t0, time.Second, &Report{Size: 10, Findings: []Finding{leaf(3, "first wording")}}, nil) {
		t.Error("a new finding did not report a change")
	}
	if h.Record(t0.Add(time.Minute), 2*time.Second, &Report{Start: 10, Size: 12, Findings: []Finding{leaf(3, "second wording")}}, nil) {
		t.Error("the same finding again reported a change")
	}
	if !h.Record(t0.Add(2*time.Minute), time.Second, &Report{Start: 12, Size: 12, Findings: []Finding{leaf(4, "x")}}, errors.New("member gone")) {
		t.Error("a finding at another index did not report a change")
	}
	if len(h.Findings) != 2 {
		t.Fatalf("findings %+v, want 2", h.Findings)
	}
	newest, old := h.Findings[0], h.Findings[1]
	if *newest.Index != 4 || *old.Index != 3 {
		t.Errorf("order %d, %d: want the newest sighting (index 4) first", *newest.Index, *old.Index)
	}
	if old.Times != 2 || !old.First.Equal(t0) || !old.Seen.Equal(t0.Add(time.Minute)) || old.Detail != "second wording" || old.Notes != nil {
		t.Errorf("the finding seen twice: %+v", old)
	}
	if h.Passes != 3 || h.Last.Error != "member gone" || h.Last.Start != 12 || h.Last.Findings != 1 || h.Last.Seconds != 1 {
		t.Errorf("last pass %+v after %d passes", h.Last, h.Passes)
	}
	if err := v.SaveHistory(h); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v = openVerifier(t, dir, p)
	got, err := v.History()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Findings) != 2 || got.Findings[1].Times != 2 || got.Passes != 3 || got.Last.Error != "member gone" {
		t.Errorf("after reopening: %+v", got)
	}

	t.Run("bounded", func(t *testing.T) {
		var fs []Finding
		for i := range MaxHistory + 5 {
			fs = append(fs, leaf(uint64(100+i), strings.Repeat("d", maxDetail+10)))
		}
		got.Record(t0.Add(time.Hour), time.Second, &Report{Findings: fs}, nil)
		if len(got.Findings) != MaxHistory || got.Dropped != 7 {
			t.Fatalf("%d findings, %d dropped; want %d and 7 (the two older ones and 5 of this pass)", len(got.Findings), got.Dropped, MaxHistory)
		}
		if d := got.Findings[0].Detail; len(d) > maxDetail+len("…") {
			t.Errorf("a detail of %d bytes kept", len(d))
		}
		for _, s := range got.Findings {
			if !s.Seen.Equal(t0.Add(time.Hour)) {
				t.Fatalf("an older finding kept over a newer one: %s", fmt.Sprint(s.Finding))
			}
		}
	})
}
