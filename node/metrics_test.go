package node

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/policy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// histogramOf is the series of the histogram name in n's registry whose
// labels include label=value ("" for any), or nil.
func histogramOf(t *testing.T, n *Node, name, label, value string) *dto.Histogram {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if label == "" || (l.GetName() == label && l.GetValue() == value) {
					return m.GetHistogram()
				}
			}
		}
	}
	return nil
}

// counterOf is the value of the counter name in n's registry.
func counterOf(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no single series %s", name)
	return 0
}

// Two nodes in one process each count in their own registry: what one
// observes never shows at the other, and both registries pass the
// Prometheus linter (names, units, help texts).
func TestNodesKeepTheirMetricsApart(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	gd := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer gd.Close()
	sc := openTestNode(t, pki, "510000", t.TempDir(), time.Now)
	defer sc.Close()
	if gd.Metrics() == sc.Metrics() {
		t.Fatal("two nodes share a registry")
	}
	sub := registerN(t, gd, 1)[0]
	if _, err := gd.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: time.Now().Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Verify(testCtx, "HCX1:not-a-code"); err == nil {
		t.Fatal("a forged code verified")
	}
	for _, c := range []struct {
		n            *Node
		name, label  string
		value        string
		observations uint64
	}{
		{gd, "hcx_node_ingest_seconds", "kind", "lab", 1},
		{sc, "hcx_node_ingest_seconds", "kind", "lab", 0},
		{gd, "hcx_node_verify_seconds", "result", "rejected", 0},
		{sc, "hcx_node_verify_seconds", "result", "rejected", 1},
		{sc, "hcx_node_verify_seconds", "result", "ok", 0},
	} {
		h := histogramOf(t, c.n, c.name, c.label, c.value)
		if h == nil {
			t.Errorf("%s: no %s{%s=%q}", c.n.Province(), c.name, c.label, c.value)
			continue
		}
		if h.GetSampleCount() != c.observations {
			t.Errorf("%s: %s{%s=%q} holds %d observations, want %d", c.n.Province(), c.name, c.label, c.value, h.GetSampleCount(), c.observations)
		}
	}
	for _, n := range []*Node{gd, sc} {
		problems, err := testutil.GatherAndLint(n.Metrics())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: lint: %s: %s", n.Province(), p.Metric, p.Text)
		}
		var b strings.Builder
		if err := n.WriteMetrics(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), `hcx_node_registrations_total{province="`+string(n.Province())+`"} `) || strings.Contains(b.String(), string(sub)) {
			t.Errorf("%s: the text exposition lacks its registrations or names a subject:\n%s", n.Province(), b.String())
		}
	}
	for n, want := range map[*Node]float64{gd: 1, sc: 0} {
		if got := counterOf(t, n, "hcx_node_registrations_total"); got != want {
			t.Errorf("%s: registrations = %g, want %g", n.Province(), got, want)
		}
	}
}

// The publish lag runs from the commit of a decision to the hub's
// acknowledgement, both at the node's clock: the outbox keeps when each
// attestation was decided, the pending batch carries it, and an entry
// queued before the node recorded it (no "decided") is published as before
// and not observed.
func TestPublishLagRunsFromTheDecision(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := newTestClock(t0)
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), clock.Now)
	defer n.Close()
	subs := registerN(t, n, 2)
	for _, sub := range subs {
		if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: t0.Add(-time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}
	keys, atts := outboxOf(t, n)
	if len(keys) < 2 {
		t.Fatalf("%d attestations in the outbox, want 2 at least", len(keys))
	}
	// The first entry as an older node wrote it: the attestation alone.
	old, _ := json.Marshal(atts[0])
	if err := n.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keys[0]), old) }); err != nil {
		t.Fatal(err)
	}
	p, err := n.nextBatch()
	if err != nil || p == nil {
		t.Fatalf("next batch: %v %v", p, err)
	}
	if len(p.Decided) != p.Count || p.Count != len(keys) {
		t.Fatalf("the batch carries %d attestations and %d decision times, want %d", p.Count, len(p.Decided), len(keys))
	}
	if p.Decided[0] != 0 {
		t.Errorf("the entry without a decision time reads %d, want 0", p.Decided[0])
	}
	for i, d := range p.Decided[1:] {
		if d != t0.UnixNano() {
			t.Errorf("attestation %d decided at %v, want the node's clock %v", i+1, time.Unix(0, d), t0)
		}
	}
	clock.Set(t0.Add(3 * time.Second))
	n.observePublishLag(p.Decided)
	h := histogramOf(t, n, "hcx_node_publish_lag_seconds", "", "")
	if want := uint64(len(keys) - 1); h.GetSampleCount() != want || h.GetSampleSum() != 3*float64(want) {
		t.Errorf("publish lag: %d observations summing %gs, want %d of 3s", h.GetSampleCount(), h.GetSampleSum(), want)
	}
	_, again := outboxOf(t, n)
	for i := range again {
		if again[i].Subject != atts[i].Subject || again[i].N != atts[i].N {
			t.Errorf("outbox entry %d reads %+v after sealing, want %+v", i, again[i], atts[i])
		}
	}
}
