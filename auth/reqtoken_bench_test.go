package auth

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// BenchmarkRequestToken measures what a request token costs per request:
// the client signing it plus the server verifying it (header, trust list,
// SM2 signature, claims, body hash, replay cache), against a bare call of
// the same small handler, in the same run. It reports bare-µs/op,
// signed-µs/op and the ratio.
func BenchmarkRequestToken(b *testing.B) {
	p := newMachinePKI(b)
	a := &RequestTokens{Trust: func() *certs.TrustStore { return p.ts }, Replay: NewReplayCache(0)}
	body := []byte(`{"subject":"AAAAAAAAAAAAAAAAAAAAAA","result":"negative","at":"2026-11-24T08:00:00Z"}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	newReq := func() *http.Request {
		r := httptest.NewRequest("POST", "http://node.example/v1/feeds/labs", bytes.NewReader(body))
		return r
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		handler.ServeHTTP(httptest.NewRecorder(), newReq())
	}
	bare := time.Since(start)
	start = time.Now()
	for i := 0; i < b.N; i++ {
		r := newReq()
		if err := SignRequest(r, body, p.feedGD, time.Now()); err != nil {
			b.Fatal(err)
		}
		if pr, err := a.Authenticate(r); err != nil || pr == nil {
			b.Fatal(err)
		}
		handler.ServeHTTP(httptest.NewRecorder(), r)
	}
	signed := time.Since(start)
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(bare.Microseconds())/n, "bare-µs/op")
	b.ReportMetric(float64(signed.Microseconds())/n, "signed-µs/op")
	b.ReportMetric(float64(signed)/float64(bare), "ratio")
}
