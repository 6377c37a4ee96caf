package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// BenchmarkExposureMatch stores HCX_BENCH_SCANS scans (default 1,000,000)
// in the venue index of a Shanghai node, written directly with a badger
// WriteBatch, over 10,000 venues of Sichuan spread across 60 days; among
// them, HCX_BENCH_EXPOSED (default 1,000) registered residents scanned one
// venue inside a one-day window. One iteration matches that venue-window
// end to end: a matching job, as the follower stores it, run to its end —
// the chunked range read of the venue index, the residents' histories
// rewritten with the exposure (or without it: iterations alternate marking
// and withdrawal, so each changes every history) and every resident decided
// again under Shanghai's rules, in synced commits. In the same run, "raw"
// is a plain badger prefix iteration over the same key range: the floor of
// the read. Run (make bench-scans runs it at 10 M):
//
//	go test ./node -run '^$' -bench ExposureMatch -benchtime 20x
func BenchmarkExposureMatch(b *testing.B) {
	total := benchEnv(b, "HCX_BENCH_SCANS", 1_000_000)
	exposed := benchEnv(b, "HCX_BENCH_EXPOSED", 1_000)
	const venues = 10_000
	pki := newTestPKI(b, "310000", "510000")
	clock := newClock(time.Now())
	n := openTestNode(b, pki, "310000", b.TempDir(), clock.now)
	defer n.Close()
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(b, 1)}}); err != nil {
		b.Fatal(err)
	}
	residents := registerBulk(b, n, exposed)
	now := clock.now()
	span := 60*24*time.Hour - time.Hour
	target := "venue-04242"
	from := now.Add(-3 * 24 * time.Hour).Truncate(time.Second)
	to := from.Add(24 * time.Hour)

	loadStart := time.Now()
	wb := n.db.NewWriteBatch()
	put := func(key string, at time.Time) {
		if err := wb.SetEntry(badger.NewEntry([]byte(key), nil).WithTTL(time.Until(at.Add(TrajectoryRetention)))); err != nil {
			b.Fatal(err)
		}
	}
	for i := range total - exposed {
		at := now.Add(-span + time.Duration(int64(span)/int64(total)*int64(i)))
		put(scanVenueKey("510000", fmt.Sprintf("venue-%05d", (i*7919)%venues), at, subjectOf(i)), at)
	}
	for i, sub := range residents {
		at := from.Add(time.Duration(int64(24*time.Hour) / int64(exposed) * int64(i)))
		put(scanVenueKey("510000", target, at, sub), at)
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d scans in %v", total, time.Since(loadStart).Round(time.Millisecond))

	x := Exposure{Iss: "510000", Vid: target, Div: "510104", Level: exchange.ExposureHigh, From: from, To: to, At: now.Unix()}
	prefix := scanVenuePrefix(x.Iss, x.Vid)
	lo, hi := []byte(prefix+scanTime(from)), prefix+scanTime(to)
	var raw time.Duration
	inWindow := 0
	changed := 0
	b.ResetTimer()
	var matched time.Duration
	for i := range b.N {
		x.Withdrawn = i%2 == 1
		x.At++
		w := &write{system: "bench"}
		if err := w.setJSON(exposureJobKey(), &exposureJob{Exp: x}); err != nil {
			b.Fatal(err)
		}
		if err := n.write(w); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		c, err := n.RunExposureJobs(testCtx)
		if err != nil {
			b.Fatal(err)
		}
		matched += time.Since(start)
		changed += c

		start = time.Now()
		count := 0
		err = n.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			defer it.Close()
			for it.Seek(lo); it.Valid() && string(it.Item().Key()) < hi; it.Next() {
				count++
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		raw += time.Since(start)
		inWindow = count
	}
	b.StopTimer()
	if changed != b.N*exposed {
		b.Fatalf("changed %d histories in %d matches, want %d each", changed, b.N, exposed)
	}
	r, err := n.Resident(testCtx, residents[0])
	if err != nil {
		b.Fatal(err)
	}
	if (b.N%2 == 1) != (r.Status.Colour == hcx.Yellow) {
		b.Fatalf("after %d matches the first resident is %s", b.N, r.Status.Colour)
	}
	perMatch := matched / time.Duration(b.N)
	perRaw := raw / time.Duration(b.N)
	b.ReportMetric(float64(perMatch.Microseconds())/1000, "ms/match")
	b.ReportMetric(float64(perRaw.Microseconds())/1000, "raw-ms/range")
	b.ReportMetric(float64(inWindow), "scans/window")
	b.ReportMetric(float64(exposed), "residents/window")
	b.ReportMetric(float64(perRaw)/float64(perMatch), "ratio-to-raw")
}
