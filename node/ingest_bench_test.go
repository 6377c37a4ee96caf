package node

import (
	"context"
	"testing"
	"time"

	"github.com/hcxfed/hcx"

	"github.com/hcxfed/hcx/policy"
)

// BenchmarkIngestByHistoryLength ingests lab results, one at a time, for a
// resident with no earlier events and for one with 1,500, alternately, and
// reports the mean latency of each and their ratio (1 when the cost of an
// event does not grow with the resident's past).
func BenchmarkIngestByHistoryLength(b *testing.B) {
	pki := newTestPKI(b, "440000")
	now := time.Now().UTC().Truncate(time.Second)
	n := openTestNode(b, pki, "440000", b.TempDir(), func() time.Time { return now })
	defer n.Close()
	long := registerN(b, n, 1)[0]
	ctx := context.Background()
	ingestLongHistory(b, n, long, now)
	// Each round ingests one result for a newly registered resident (no
	// earlier events) and one for the long-standing one, on the same store
	// and disk; only the two ingests are timed.
	var tFresh, tLong time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		r, err := n.Register(ctx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(1 + i), Name: "张三"})
		if err != nil {
			b.Fatal(err)
		}
		fresh := r.Subject
		b.StartTimer()
		ev := func() Event {
			return Event{Lab: &policy.LabResult{Kind: "pcr", At: now.Add(-time.Duration(i) * time.Second)}}
		}
		start := time.Now()
		if _, err := n.Ingest(ctx, fresh, ev()); err != nil {
			b.Fatal(err)
		}
		tFresh += time.Since(start)
		start = time.Now()
		if _, err := n.Ingest(ctx, long, ev()); err != nil {
			b.Fatal(err)
		}
		tLong += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(tFresh.Microseconds())/float64(b.N), "µs/event-fresh")
	b.ReportMetric(float64(tLong.Microseconds())/float64(b.N), "µs/event-1500-prior")
	b.ReportMetric(float64(tLong)/float64(tFresh), "ratio")
}
