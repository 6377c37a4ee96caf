package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/node"
)

// BenchmarkFeedThroughHTTP posts lab results as bulk feeds through the
// node's real HTTP API: four clients, each request 1,000 NDJSON lines
// naming the person by document, signed with a fresh SM2 request token over
// the whole body (auth.SigningTransport) and checked by auth.RequestTokens.
// It reports acknowledged lines per second (durable, decided, attested) and
// the ratio to raw single-key synced badger transactions per second on the
// same disk in the same run (issue 9's baseline for single results):
//
//	go test ./api -run '^$' -bench FeedThroughHTTP -benchtime 100000x
func BenchmarkFeedThroughHTTP(b *testing.B) {
	const residents, clients, lines = 20_000, 4, 1000
	n, root := benchNodeAndRoot(b, b.TempDir())
	defer n.Close()
	docs := make([]string, residents)
	reqs := make([]node.RegisterRequest, 0, node.MaxBatch)
	for i := range docs {
		docs[i] = benchIDNumber(i)
		reqs = append(reqs, node.RegisterRequest{DocType: hcx.DocCNID, DocNumber: docs[i], Name: "张三"})
		if len(reqs) == node.MaxBatch || i == residents-1 {
			if _, err := n.RegisterBatch(testCtx, reqs); err != nil {
				b.Fatal(err)
			}
			reqs = reqs[:0]
		}
	}
	now := time.Now()
	srv, client := benchMachine(b, n, root, certs.RoleFeed, "lab-gz-1", 0)
	rawBefore := rawSyncedTxnRate(b, b.TempDir(), 300)
	at := now.Add(-time.Hour).UTC().Format(time.RFC3339)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body bytes.Buffer
			for {
				first := int(next.Add(lines)) - lines
				if first >= b.N {
					return
				}
				body.Reset()
				for i := first; i < min(first+lines, b.N); i++ {
					result := "negative"
					if i%101 == 0 {
						result = "positive"
					}
					fmt.Fprintf(&body, `{"id":"H-%d","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"%s"}`+"\n", i, docs[(i*7919)%residents], at, result)
				}
				res, err := client.Post(srv.URL+"/v1/feeds/labs", "application/x-ndjson", bytes.NewReader(body.Bytes()))
				if err != nil {
					b.Error(err)
					return
				}
				rb, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var fr api.FeedResult
				if res.StatusCode != http.StatusOK || json.Unmarshal(rb, &fr) != nil || fr.Accepted != min(lines, b.N-first) {
					b.Errorf("feed request at line %d: %d %.300s", first, res.StatusCode, rb)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	raw := (rawBefore + rawSyncedTxnRate(b, b.TempDir(), 300)) / 2
	b.ReportMetric(rate, "lines/s")
	b.ReportMetric(raw, "raw-synced-txn/s")
	b.ReportMetric(rate/raw, "ratio")
}
