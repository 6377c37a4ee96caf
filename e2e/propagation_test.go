package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// Propagation across containers (issue 14 item 4): the time from an event
// acknowledged at province A to the changed answer at province B, idle and
// under background colour changes at increasing rates.

const (
	probeFrom      = hcx.ProvinceCode("440000") // A: where probes are written
	probeAt        = hcx.ProvinceCode("310000") // B: where they are verified (not behind the proxy)
	levelDuration  = 8 * time.Second
	probeEvery     = 500 * time.Millisecond
	probesPerLevel = int(levelDuration / probeEvery)
	probeLimit     = 20 * time.Second // a probe not seen at B by then counts as never
	pollEvery      = 20 * time.Millisecond
	bgTick         = 100 * time.Millisecond
	bgInFlight     = 8 // feed requests in flight per writing province
)

// propagationLevels are the background colour-change rates (per second,
// over both writing provinces); the run stops after the first level that
// breaks.
var propagationLevels = []int{0, 100, 500, 1000, 2000, 5000, 10000}

type probeResult struct {
	total, hub time.Duration // ack at A → red at B; ack at A → red in the hub's view
	ok         bool          // acknowledged and seen red at B within probeLimit
}

// probe writes a positive result for r at A and polls, every pollEvery,
// B's answer to r's code and the hub's view of r until both say red.
func probe(f *fed, r *person, code string) probeResult {
	hub := f.hub("province-310000")
	at := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	line := fmt.Sprintf(`{"id":"probe-%s","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"positive","kind":"pcr"}`+"\n", r.sub, r.doc, at)
	// The write is retried (same record id) while the node sheds load or
	// does not answer: propagation counts from the acknowledgement.
	for deadline := time.Now().Add(writeRetry); ; time.Sleep(100 * time.Millisecond) {
		st, _ := f.signed(r.home, "/v1/feeds/labs", "application/x-ndjson", []byte(line), "feed-"+string(r.home))
		if st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return probeResult{}
		}
	}
	acked := time.Now()
	var res probeResult
	for time.Since(acked) < probeLimit {
		if res.hub == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			ans, err := hub.Subject(ctx, r.sub)
			cancel()
			if err == nil {
				for _, a := range ans.Attestations {
					if a.Iss == r.home && a.Colour == hcx.Red {
						res.hub = time.Since(acked)
					}
				}
			}
		}
		if c, _ := f.verify(probeAt, code); c == hcx.Red {
			res.total, res.ok = time.Since(acked), true
			if res.hub == 0 {
				res.hub = res.total
			}
			return res
		}
		time.Sleep(pollEvery)
	}
	return res
}

// background writes positive results for registered residents at rate
// lines/s, split over the writing provinces, open loop: every bgTick a
// request of rate/10/len(writers) lines per province, at most bgInFlight
// in flight (a tick that finds them all busy is counted late, not queued).
func background(f *fed, docs map[hcx.ProvinceCode][]string, rate int, d time.Duration) (acked, late, failed int64, why map[string]int) {
	why = map[string]int{}
	if rate == 0 {
		time.Sleep(d)
		return 0, 0, 0, why
	}
	var a, lt, fl atomic.Int64
	var whyMu sync.Mutex
	var wg sync.WaitGroup
	per := max(1, rate*int(bgTick/time.Millisecond)/1000/len(writers))
	for _, p := range writers {
		p, sem, next := p, make(chan struct{}, bgInFlight), 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(bgTick)
			defer t.Stop()
			for end := time.Now().Add(d); time.Now().Before(end); <-t.C {
				if next+per > len(docs[p]) {
					lt.Add(int64(per))
					continue
				}
				batch := docs[p][next : next+per]
				next += per
				select {
				case sem <- struct{}{}:
				default:
					lt.Add(int64(per))
					continue
				}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					at := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
					var body bytes.Buffer
					for _, doc := range batch {
						fmt.Fprintf(&body, `{"id":"bg-%s","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"positive","kind":"pcr"}`+"\n", doc, doc, at)
					}
					st, b := f.signed(p, "/v1/feeds/labs", "application/x-ndjson", body.Bytes(), "feed-"+string(p))
					var res struct{ Accepted int }
					if st == http.StatusOK && json.Unmarshal(b, &res) == nil {
						a.Add(int64(res.Accepted))
						fl.Add(int64(len(batch) - res.Accepted))
					} else {
						fl.Add(int64(len(batch)))
						whyMu.Lock()
						why[errorCode(fmt.Sprintf("%d %s", st, b))] += len(batch)
						whyMu.Unlock()
					}
				}()
			}
		}()
	}
	wg.Wait()
	return a.Load(), lt.Load(), fl.Load(), why
}

// loadavg is the machine's load average (the suite shares the cores with
// whatever else runs).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

// TestComposePropagation measures, level by level, the propagation of
// probe events from A to B while the background changes colours at the
// level's rate, and reports p50/p99 of the whole path and of its first
// leg (A's ack → the hub's view).
func TestComposePropagation(t *testing.T) {
	_, f, _ := startCompose(t)
	run := int(time.Now().UnixNano() % 1000)
	var tbl strings.Builder
	fmt.Fprintln(&tbl, "| background changes/s (target) | achieved | late / failed lines | probes seen at B | p50 A→B | p99 A→B | max A→B | p50 A→hub | p99 A→hub |\n|---|---|---|---|---|---|---|---|---|")
	next := 0
	for _, rate := range propagationLevels {
		enrolStart := time.Now()
		var batch []*person
		for range probesPerLevel {
			batch = append(batch, f.enrol(probeFrom, docNumber(probeFrom, run+1, next)))
			next++
		}
		t.Logf("level %d/s: enrolled %d probe residents at %s in %v", rate, len(batch), probeFrom, time.Since(enrolStart).Round(time.Millisecond))
		docs := map[hcx.ProvinceCode][]string{}
		if rate > 0 {
			regStart := time.Now()
			for _, p := range writers {
				n := rate * int(levelDuration/time.Second) / len(writers) * 11 / 10
				for first := 0; first < n; first += 20000 {
					docs[p] = append(docs[p], f.register(p, run+2+rate%997, first, min(20000, n-first))...)
				}
			}
			t.Logf("level %d/s: registered %d residents in %v", rate, len(docs[writers[0]])+len(docs[writers[1]]), time.Since(regStart).Round(time.Millisecond))
		}
		codes := make([]string, len(batch))
		for i, r := range batch {
			codes[i] = f.code(r)
		}
		var (
			mu      sync.Mutex
			results []probeResult
			wg      sync.WaitGroup
		)
		var acked, late, failed int64
		var why map[string]int
		bgDone := make(chan struct{})
		go func() { acked, late, failed, why = background(f, docs, rate, levelDuration); close(bgDone) }()
		for i, r := range batch {
			wg.Add(1)
			go func(r *person, code string) {
				defer wg.Done()
				res := probe(f, r, code)
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}(r, codes[i])
			if i < len(batch)-1 {
				time.Sleep(probeEvery)
			}
		}
		<-bgDone
		wg.Wait()
		var total, hub []time.Duration
		for _, r := range results {
			if r.ok {
				total = append(total, r.total)
				hub = append(hub, r.hub)
			}
		}
		achieved := float64(acked) / levelDuration.Seconds()
		ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
		fmt.Fprintf(&tbl, "| %d | %.0f/s | %d / %d | %d of %d | %s | %s | %s | %s | %s |\n", rate, achieved, late, failed, len(total), len(results),
			ms(percentile(total, 0.5)), ms(percentile(total, 0.99)), ms(percentile(total, 1)), ms(percentile(hub, 0.5)), ms(percentile(hub, 0.99)))
		t.Logf("level %d/s: load average %s", rate, loadavg())
		t.Logf("level %d/s: achieved %.0f/s, %d late, %d failed %v; %d of %d probes seen at B, p50 %v p99 %v", rate, achieved, late, failed, why, len(total), len(results), percentile(total, 0.5), percentile(total, 0.99))
		if rate > 0 && (achieved < 0.8*float64(rate) || len(total) < len(results) || percentile(total, 0.99) > 5*time.Second) {
			t.Logf("level %d/s breaks (achieved under 80%% of the target, a probe never seen, or p99 over 5 s): stopping", rate)
			break
		}
	}
	t.Logf("propagation %s → %s (checkpoint of %s, probes every %v, %v per level):\n%s", probeFrom, probeAt, probeAt, probeEvery, levelDuration, tbl.String())
}
