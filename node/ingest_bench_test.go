package node

import (
	"sync"
	"sync/atomic"
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
	ctx := testCtx
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
		timed := func(sub hcx.Subject) time.Duration {
			start := time.Now()
			if _, err := n.Ingest(ctx, sub, ev()); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		// Alternate which goes first: a sync right after another one costs
		// differently.
		if i%2 == 0 {
			tFresh += timed(fresh)
			tLong += timed(long)
		} else {
			tLong += timed(long)
			tFresh += timed(fresh)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(tFresh.Microseconds())/float64(b.N), "µs/event-fresh")
	b.ReportMetric(float64(tLong.Microseconds())/float64(b.N), "µs/event-1500-prior")
	b.ReportMetric(float64(tLong)/float64(tFresh), "ratio")
}

// BenchmarkIngestParallel ingests lab results for 2,000 residents from 256
// goroutines straight into the node (no HTTP), and reports events per second
// and per synced commit: the node's own ceiling.
func BenchmarkIngestParallel(b *testing.B) {
	pki := newTestPKI(b, "440000")
	n := openTestNode(b, pki, "440000", b.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(b, n, 2000)
	commits0 := n.metrics.commits.Load()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if _, err := n.Ingest(testCtx, subs[i%2000], Event{Lab: &policy.LabResult{Positive: true}}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(n.metrics.commits.Load()-commits0), "events/commit")
}
