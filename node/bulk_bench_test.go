package node

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

func benchEnv(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// registerBulk registers count residents through RegisterBatch, from two
// goroutines in batches of MaxBatch, and returns their subjects.
func registerBulk(b testing.TB, n *Node, count int) []hcx.Subject {
	return registerBulkKeep(b, n, count, true)
}

// registerBulkKeep registers count residents; keep says whether to return
// their subjects (a benchmark of 10 M residents that does not need them
// must not hold 400 MiB of them in its own heap while it measures RSS).
func registerBulkKeep(b testing.TB, n *Node, count int, keep bool) []hcx.Subject {
	var subs []hcx.Subject
	if keep {
		subs = make([]hcx.Subject, count)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reqs := make([]RegisterRequest, 0, MaxBatch)
			for {
				start := int(next.Add(MaxBatch)) - MaxBatch
				if start >= count {
					return
				}
				end := min(start+MaxBatch, count)
				reqs = reqs[:0]
				for i := start; i < end; i++ {
					reqs = append(reqs, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(i), Name: "张三"})
				}
				out, err := n.RegisterBatch(testCtx, reqs)
				if err != nil {
					b.Error(err)
					return
				}
				for i, e := range out {
					if e != nil {
						b.Errorf("registration %d: %v", start+i, e)
						return
					}
					if keep {
						subs[start+i] = n.cfg.SubjectKey.Subject(hcx.DocCNID, reqs[i].DocNumber)
					}
				}
			}
		}()
	}
	wg.Wait()
	return subs
}

// BenchmarkBulkIngest ingests lab results through IngestBatch, durable,
// re-decided and attested, as four feeds sending batches of 1,000 records
// at once about HCX_BENCH_BULK_RESIDENTS residents (default 20,000), one
// result in 101 positive; each record has its own id and audit entry.
// In the same run, "raw" writes the same number of bytes to a fresh badger
// with the node's options in the same number of synced transactions, one
// after the other: the disk's and badger's ceiling for those bytes. Run:
//
//	go test ./node -run '^$' -bench BulkIngest -benchtime 200000x
func BenchmarkBulkIngest(b *testing.B) {
	residents := benchEnv(b, "HCX_BENCH_BULK_RESIDENTS", 20_000)
	const feeds, batch = 4, 1000
	pki := newTestPKI(b, "440000")
	now := time.Now().UTC().Truncate(time.Second)
	n := openTestNode(b, pki, "440000", b.TempDir(), func() time.Time { return now })
	defer n.Close()
	subs := registerBulk(b, n, residents)
	commits0, bytes0, atts0 := n.metrics.commits.Load(), n.metrics.written.Load(), n.outboxNext
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for range feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]BatchRecord, 0, batch)
			for {
				first := int(next.Add(batch)) - batch
				if first >= b.N {
					return
				}
				recs = recs[:0]
				for i := first; i < min(first+batch, b.N); i++ {
					recs = append(recs, BatchRecord{Sub: subs[(i*7919)%residents], Event: Event{Lab: &policy.LabResult{
						ID: "b-" + strconv.Itoa(i), Positive: i%101 == 0, Kind: "pcr", At: now.Add(-time.Duration(i%3600) * time.Second)}}})
				}
				out, err := n.IngestBatch(testCtx, recs)
				if err != nil {
					b.Error(err)
					return
				}
				for j, e := range out {
					if e != nil {
						b.Errorf("record %d: %v", first+j, e)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	el, used := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	b.ReportMetric(float64(n.outboxNext-atts0), "attestations")
	reportWriteRate(b, n, "event", el, used, commits0, bytes0)
}

// reportWriteRate reports a write benchmark's b.N operations (unit: event,
// scan) that took el and used CPU: per second, per synced commit, bytes and
// CPU each, and — in the same run — badger's raw synced rate for the same
// bytes in the same number of transactions, and the ratio to it. commits0
// and bytes0 are the node's counters when the timed part began.
func reportWriteRate(b *testing.B, n *Node, unit string, el, used time.Duration, commits0, bytes0 uint64) {
	commits, written := n.metrics.commits.Load()-commits0, n.metrics.written.Load()-bytes0
	rate := float64(b.N) / el.Seconds()
	b.ReportMetric(rate, unit+"s/s")
	b.ReportMetric(float64(b.N)/float64(commits), unit+"s/commit")
	b.ReportMetric(float64(written)/float64(b.N), "bytes/"+unit)
	b.ReportMetric(used.Seconds()*1e6/float64(b.N), "cpu-µs/"+unit)
	raw := rawSyncedWrites(b, int(written), int(commits))
	b.ReportMetric(float64(b.N)/raw.Seconds(), "raw-"+unit+"s/s")
	b.ReportMetric(rate/(float64(b.N)/raw.Seconds()), "ratio-to-raw")
}

// rawSyncedWrites writes total bytes to a fresh badger with the node's
// options, in commits synced transactions of 512-byte values one after the
// other, and returns how long it took.
func rawSyncedWrites(b *testing.B, total, commits int) time.Duration {
	db, err := openBadger(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const val = 512
	perTxn := max(1, total/commits/(val+32))
	v := make([]byte, val)
	k := 0
	start := time.Now()
	for range commits {
		txn := db.NewTransaction(true)
		for range perTxn {
			k++
			if err := txn.Set(fmt.Appendf(nil, "raw/%027d", k), v); err != nil {
				b.Fatal(err)
			}
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkRegisterMillion registers HCX_BENCH_RESIDENTS residents (default
// 1,000,000) through RegisterBatch, then reports the rate, the process's
// peak RSS, the store's disk use per resident, the time to reopen the node,
// and both extrapolated to 10 million. Minutes long; not part of make test:
//
//	go test ./node -run '^$' -bench RegisterMillion -benchtime 1x -timeout 60m
func BenchmarkRegisterMillion(b *testing.B) {
	residents := benchEnv(b, "HCX_BENCH_RESIDENTS", 1_000_000)
	pki := newTestPKI(b, "440000")
	dir := b.TempDir()
	n := openTestNode(b, pki, "440000", dir, time.Now)
	start, cpu := time.Now(), cpuTime()
	registerBulkKeep(b, n, residents, false)
	el, used := time.Since(start), cpuTime()-cpu
	rss := peakRSS()
	anon, file := procStatus("RssAnon:"), procStatus("RssFile:")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.GC()
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	if p := os.Getenv("HCX_BENCH_HEAPPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	if err := n.Close(); err != nil {
		b.Fatal(err)
	}
	disk := diskUse(b, dir)
	// Serving: the writer's buffers returned to the system, the store is
	// opened again and takes a feed of lab results about residents across
	// the whole store; the RSS then is what a node holding them needs.
	debug.FreeOSMemory()
	open := time.Now()
	n = openTestNode(b, pki, "440000", dir, time.Now)
	restart := time.Since(open)
	r, err := n.Resident(testCtx, n.cfg.SubjectKey.Subject(hcx.DocCNID, testIDNumber(residents-1)))
	if err != nil || r.Status.Colour != hcx.Green {
		b.Fatalf("last resident after restart: %+v, %v", r, err)
	}
	const served = 100_000
	at := time.Now().Add(-time.Hour)
	recs := make([]BatchRecord, 0, 1000)
	serveStart := time.Now()
	for i := 0; i < served; i++ {
		doc := testIDNumber((i * 7919) % residents)
		recs = append(recs, BatchRecord{Sub: n.cfg.SubjectKey.Subject(hcx.DocCNID, doc), Event: Event{Lab: &policy.LabResult{
			At: at, Kind: "pcr", Positive: i%101 == 0, ID: fmt.Sprintf("serve-%d", i)}}})
		if len(recs) == cap(recs) || i == served-1 {
			out, err := n.IngestBatch(testCtx, recs)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range out {
				if e != nil {
					b.Fatal(e)
				}
			}
			recs = recs[:0]
		}
	}
	serveRate := float64(served) / time.Since(serveStart).Seconds()
	runtime.GC()
	serveAnon, serveFile := procStatus("RssAnon:"), procStatus("RssFile:")
	var serveLive runtime.MemStats
	runtime.ReadMemStats(&serveLive)
	n.Close()
	b.ReportMetric(float64(residents)/el.Seconds(), "residents/s")
	b.ReportMetric(used.Seconds()*1e6/float64(residents), "cpu-µs/resident")
	b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(anon)/(1<<20), "RSS-anon-MiB")
	b.ReportMetric(float64(file)/(1<<20), "RSS-file-MiB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "go-heap-MiB")
	b.ReportMetric(float64(live.HeapInuse)/(1<<20), "go-heap-live-MiB")
	b.ReportMetric(float64(disk)/float64(residents), "disk-bytes/resident")
	b.ReportMetric(float64(disk)*1e7/float64(residents)/1e9, "disk-GB-at-10M")
	b.ReportMetric(restart.Seconds(), "restart-s")
	b.ReportMetric(serveRate, "serve-events/s")
	b.ReportMetric(float64(serveAnon)/(1<<20), "serve-RSS-anon-MiB")
	b.ReportMetric(float64(serveFile)/(1<<20), "serve-RSS-file-MiB")
	b.ReportMetric(float64(serveLive.HeapInuse)/(1<<20), "serve-go-heap-live-MiB")
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS() int64 { return procStatus("VmHWM:") }

// procStatus is a size line of /proc/self/status (such as "RssAnon:"), in
// bytes.
func procStatus(name string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == name {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// diskUse is the bytes the files under dir occupy on disk (allocated
// blocks: badger's preallocated value log counts as far as it is written).
func diskUse(b testing.TB, dir string) int64 {
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !fi.IsDir() {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
