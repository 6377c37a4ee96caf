package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Issue 12's speed goals, each measured against its raw primitive in the
// same run (docs/benchmarks.md, "Issue 12"):
//
//	go test ./api -run '^$' -bench 'BatchVerifyThroughHTTP|CodeIssuance' -benchtime 20000x -count 3 -timeout 20m

// rawParallel is the rate (ops/s) of op run on every core (GOMAXPROCS
// goroutines, as b.RunParallel runs it) for one second: the raw
// primitive's ceiling on this machine. (testing.Benchmark cannot run inside
// a benchmark: it waits for the running one's lock.)
func rawParallel(op func()) float64 {
	var ops atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(time.Second)
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := 0; ; i++ {
				op()
				if i%16 == 15 {
					ops.Add(16)
					if time.Now().After(stop) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	return float64(ops.Load()) / time.Since(start).Seconds()
}

// rawVerifyRate is raw parallel SM2 verification of a code's own
// signature with the province key (gmsm through certs.VerifySM2: no JWS,
// no trust store).
func rawVerifyRate(b *testing.B, ts *certs.TrustStore, code string) float64 {
	tok := strings.TrimPrefix(code, exchange.CodePrefix)
	v, err := ts.VerifyJWS(tok)
	if err != nil {
		b.Fatal(err)
	}
	dot := strings.LastIndexByte(tok, '.')
	input := []byte(tok[:dot])
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := v.Entry.PublicKey()
	return rawParallel(func() {
		if !certs.VerifySM2(pub, input, sig) {
			b.Error("raw verify failed")
		}
	})
}

// BenchmarkBatchVerifyThroughHTTP: a checkpoint device posts batches of
// 1,000 offline codes of 500 residents (request-token signed, over HTTP
// keep-alive, two batches in flight); codes/s against raw parallel SM2
// verify of the same key.
func BenchmarkBatchVerifyThroughHTTP(b *testing.B) {
	const residents, per, clients = 500, 1000, 2
	n, root, prov := benchNodeRootSigner(b, b.TempDir())
	defer n.Close()
	// The node's own key, as a trust list from the hub would carry it.
	if _, err := n.TrustStore().Add(prov.Cert.Raw); err != nil {
		b.Fatal(err)
	}
	subs := registerResidents(b, n, residents)
	codes := make([]string, residents)
	for i, s := range subs {
		c, err := n.IssueCode(testCtx, s, true)
		if err != nil {
			b.Fatal(err)
		}
		codes[i] = c.QR
	}
	srv, client := benchMachine(b, n, root, certs.RoleCheckpoint, "gate-1", clients)
	bodies := make([][]byte, residents)
	for i := range bodies { // each body starts at another resident
		batch := make([]string, per)
		for j := range batch {
			batch[j] = codes[(i+j)%residents]
		}
		bodies[i], _ = json.Marshal(map[string]any{"codes": batch})
	}
	rawBefore := rawVerifyRate(b, n.TrustStore(), codes[0])

	batches := (b.N + per - 1) / per
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(batches) {
					return
				}
				res, err := client.Post(srv.URL+"/v1/verify/batch", "application/json", bytes.NewReader(bodies[i%residents]))
				if err != nil {
					b.Error(err)
					return
				}
				var a struct {
					Results []struct {
						Valid bool `json:"valid"`
					} `json:"results"`
				}
				err = json.NewDecoder(res.Body).Decode(&a)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || len(a.Results) != per || !a.Results[per-1].Valid {
					b.Errorf("batch %d: status %d, %d results, %v", i, res.StatusCode, len(a.Results), err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(batches*per) / elapsed.Seconds()
	raw := (rawBefore + rawVerifyRate(b, n.TrustStore(), codes[0])) / 2
	b.ReportMetric(rate, "codes/s")
	b.ReportMetric(raw, "raw-sm2-verify/s")
	b.ReportMetric(rate/raw, "ratio")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "cores")
}

// BenchmarkCodeIssuance: the node issues dynamic codes for 500 residents
// on every core (IssueCode: the resident's record, claims, JWS, the cities
// visited); tokens/s against raw parallel SM2 sign with the same key.
func BenchmarkCodeIssuance(b *testing.B) {
	const residents = 500
	n, root := benchNodeAndRoot(b, b.TempDir())
	defer n.Close()
	subs := registerResidents(b, n, residents)
	msg := bytes.Repeat([]byte("x"), 380) // about a code's signing input
	// A province key like the node's (benchNodeAndRoot keeps its own):
	// one SM2 key signs as fast as another.
	now := time.Now()
	signer, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "province-440000-raw",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	rawSign := func() float64 {
		return rawParallel(func() {
			if _, err := signer.Sign(msg); err != nil {
				b.Error(err)
			}
		})
	}
	rawBefore := rawSign()
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s := subs[next.Add(1)%residents]
			c, err := n.IssueCode(testCtx, s, false)
			if err != nil || c.Colour != hcx.Green {
				b.Errorf("issue: %v", err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	raw := (rawBefore + rawSign()) / 2
	b.ReportMetric(rate, "tokens/s")
	b.ReportMetric(raw, "raw-sm2-sign/s")
	b.ReportMetric(rate/raw, "ratio")
}
