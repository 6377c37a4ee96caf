package node

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// ingestAll ingests evs(sub) for every resident, from workers goroutines.
func ingestAll(t *testing.T, n *Node, subs []hcx.Subject, workers int, evs func(hcx.Subject) []Event) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan hcx.Subject)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sub := range next {
				for _, ev := range evs(sub) {
					if _, err := n.Ingest(testCtx, sub, ev); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for _, sub := range subs {
		next <- sub
	}
	close(next)
	wg.Wait()
}

// The bulk re-decision and ingests about the same residents share one write
// path (the residents' locks, the committer): run together, every resident
// gets exactly one attestation for its release, with the next n, whichever
// of the two decided it, and the outbox holds them in commit order.
func TestRedecisionAndIngestsOfTheSameResidentsKeepOneSequence(t *testing.T) {
	now := time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC)
	n, rules, good := openNodeWithOwnRules(t, func() time.Time { return now })
	defer n.Close()
	n.cfg.RedecideChunk = 8 // many chunks, so they interleave with the ingests
	subs := registerN(t, n, 120)
	// Red under 14 days' isolation, released under 10: a positive 11 days
	// ago and five negatives since.
	ingestAll(t, n, subs, 8, func(hcx.Subject) []Event {
		evs := []Event{{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: now.Add(-11 * day)}}}
		for d := 10; d >= 6; d-- {
			evs = append(evs, Event{Lab: &policy.LabResult{Kind: "pcr", At: now.Add(-time.Duration(d) * day)}})
		}
		return evs
	})
	for _, sub := range subs {
		if st := status(t, n, sub); st.Colour != hcx.Red {
			t.Fatalf("%s before the rule change: %s, want red", sub, st.Colour)
		}
	}
	if err := os.WriteFile(rules, bytes.Replace(good, []byte("days: 14"), []byte("days: 10"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadRules(); err != nil {
		t.Fatal(err)
	}
	neu := n.PolicyVersion()
	var p RedecideProgress
	var perr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		p, perr = n.Redecide(context.Background())
	}()
	ingestAll(t, n, subs, 8, func(hcx.Subject) []Event {
		return []Event{{Lab: &policy.LabResult{Kind: "pcr", At: now.Add(-time.Hour)}}}
	})
	<-done
	if perr != nil || p.Incomplete || p.Done != uint64(len(subs)) {
		t.Fatalf("re-decision: %+v, %v; want all %d residents", p, perr, len(subs))
	}
	_, atts := outboxOf(t, n)
	per := map[hcx.Subject][]hcx.Attestation{}
	for _, a := range atts {
		per[a.Subject] = append(per[a.Subject], a)
	}
	for _, sub := range subs {
		got := per[sub]
		if len(got) != 2 || got[0].Colour != hcx.Red || got[0].N != 1 || got[1].Colour != hcx.Green || got[1].N != 2 || got[1].PolicyV != neu {
			t.Errorf("%s: outbox %+v, want red n=1 then green n=2 under %s", sub, got, neu)
		}
		if st := status(t, n, sub); st.Colour != hcx.Green || st.Policy != neu {
			t.Errorf("%s after: %s under %s, want green under %s", sub, st.Colour, st.Policy, neu)
		}
	}
}
