package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// BenchmarkVerifyThroughHTTP: a checkpoint device posts one code per request
// to /v1/verify (request-token signed, HTTP keep-alive, 4 requests in
// flight); codes/s against raw parallel SM2 verify of the same key in the
// same run, then the p99 latency at half the measured rate (requests sent on
// a fixed schedule for 3 s, open loop). Issue 12: ratio ≥ 0.5, p99 < 10 ms.
//
//	go test ./api -run '^$' -bench VerifyThroughHTTP -benchtime 5000x -count 3
func BenchmarkVerifyThroughHTTP(b *testing.B) {
	const residents, clients = 500, 8
	n, root, prov := benchNodeRootSigner(b, b.TempDir())
	defer n.Close()
	if _, err := n.TrustStore().Add(prov.Cert.Raw); err != nil {
		b.Fatal(err)
	}
	subs := registerResidents(b, n, residents)
	bodies := make([][]byte, residents)
	for i, s := range subs {
		c, err := n.IssueCode(testCtx, s, true)
		if err != nil {
			b.Fatal(err)
		}
		bodies[i], _ = json.Marshal(map[string]string{"code": c.QR})
	}
	var code struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(bodies[0], &code)
	srv, client := benchMachine(b, n, root, certs.RoleCheckpoint, "gate-1", 64)
	var next atomic.Int64
	verify := func() bool {
		i := next.Add(1)
		res, err := client.Post(srv.URL+"/v1/verify", "application/json", bytes.NewReader(bodies[i%residents]))
		if err != nil {
			b.Error(err)
			return false
		}
		var v struct {
			Valid bool `json:"valid"`
		}
		err = json.NewDecoder(res.Body).Decode(&v)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || !v.Valid {
			b.Errorf("verify: status %d, %v", res.StatusCode, err)
			return false
		}
		return true
	}
	for range 50 { // warm the connections
		verify()
	}
	rawBefore := rawVerifyRate(b, n.TrustStore(), code.Code)

	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for done.Add(1) <= int64(b.N) {
				if !verify() {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	raw := (rawBefore + rawVerifyRate(b, n.TrustStore(), code.Code)) / 2

	// Half load, open loop: one request every 2/rate seconds whether or not
	// the previous ones have answered; latency from the scheduled time.
	interval := time.Duration(float64(time.Second) * 2 / rate)
	var mu sync.Mutex
	var lat []time.Duration
	sched := time.Now()
	for t := sched; t.Before(sched.Add(3 * time.Second)); t = t.Add(interval) {
		time.Sleep(time.Until(t))
		wg.Go(func() {
			if verify() {
				d := time.Since(t)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no answers at half load")
	}
	p99 := lat[len(lat)*99/100]
	b.ReportMetric(rate, "codes/s")
	b.ReportMetric(raw, "raw-sm2-verify/s")
	b.ReportMetric(rate/raw, "ratio")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms@half")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms@half")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "cores")
}
