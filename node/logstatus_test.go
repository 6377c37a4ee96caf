package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/node"
)

// LogStatus, what the auditor's page shows: short of the cosignatures it
// requires, the node says so and holds no witnessed checkpoint; with them,
// the witnessed checkpoint lists each cosignature, verified, by witness
// name and time.
func TestLogStatusShowsWitnessesAndReadiness(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 10, hcx.Red))
	l := newLiar(t, f, hub.URLs()[0], nil)
	serveWitnessed(l, newCosigners(t, f, hub.URLs()[0], f.provs["440000"]))
	n, _ := runNodeWith(t, f, t.TempDir(), func(c *node.Config) { c.Cosignatures = 2 }, l.URL)
	waitFor(t, "the node to apply entries", func() bool { return n.Applied() >= 2 && n.LogStatus().Checkpoint != nil })
	st := n.LogStatus()
	if st.Ready != node.CodeUnwitnessed || !strings.Contains(st.ReadyMessage, "no checkpoint with 2 witness cosignatures") || st.Witnessed != nil || st.Cosignatures != 2 || st.Fork != nil {
		t.Errorf("one witness of two: %+v", st)
	}
	if st.Size != n.Applied() || st.Checkpoint.Size == 0 || st.Checkpoint.Time.IsZero() || len(st.Checkpoint.Root) != 64 {
		t.Errorf("the checkpoint: size %d applied %d, %+v", st.Size, n.Applied(), st.Checkpoint)
	}

	serveWitnessed(l, newCosigners(t, f, hub.URLs()[0], f.provs["440000"], f.provs["510000"]))
	waitFor(t, "the node to be ready", func() bool { return n.Ready() == nil && n.LogStatus().Witnessed != nil })
	st = n.LogStatus()
	if st.Ready != "ready" || st.ReadyMessage != "" {
		t.Errorf("ready: %q %q", st.Ready, st.ReadyMessage)
	}
	w := st.Witnessed
	verified := map[string]bool{}
	for _, c := range w.Cosignatures {
		if c.Verified && time.Since(c.Time) < time.Hour {
			verified[c.Witness] = true
		}
	}
	if len(verified) != 2 || !strings.Contains(w.Note, "\n\n") || w.Size == 0 {
		t.Errorf("the witnessed checkpoint: %+v, want two verified cosignatures", w)
	}
}

// A fork is in LogStatus with the member, size and reason.
func TestLogStatusNamesAFork(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 20, hcx.Red), f.batch(t, 2, 20, 20, hcx.Red), f.batch(t, 3, 40, 20, hcx.Red))
	checkpointOf(t, hub.URLs()[0], 4)
	forged := f.batch(t, 2, 20, 20, hcx.Green)
	l := newLiar(t, f, hub.URLs()[0], func(i uint64, e string) string {
		if i == 2 {
			return forged
		}
		return e
	})
	n, _ := runNode(t, f, t.TempDir(), l.URL)
	waitFor(t, "the node to report the fork", func() bool { return n.LogStatus().Fork != nil })
	st := n.LogStatus()
	if st.Ready != node.CodeLogFork || st.Fork.Member != l.URL || st.Fork.Size != 4 || st.Fork.Reason == "" || st.Size != 0 {
		t.Errorf("a fork: %+v %+v", st, st.Fork)
	}
}
