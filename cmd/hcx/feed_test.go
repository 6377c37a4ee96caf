package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFeedPushSendsChunksRetriesAndNamesFileLines pushes a file of 2,500
// registrations and lab results in chunks of 1,000 lines through a proxy
// that refuses the first request with 503: the chunk is retried, the
// refused lines are printed with the file's line numbers, and the file
// pushed again counts every record once.
func TestFeedPushSendsChunksRetriesAndNamesFileLines(t *testing.T) {
	f := startTestFederation(t, 1)
	waitReady(t, f.NodeURLs["440000"])
	target, _ := url.Parse(f.NodeURLs["440000"])
	proxy := httputil.NewSingleHostReverseProxy(target)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"code":"busy"}}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()

	op := f.asOperator(t, "440000")
	var regs, labs strings.Builder
	at := f.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	for i := range 2500 {
		doc := hcxID(fmt.Sprintf("4401061990%02d%02d%03d", 1+i/28%12, 1+i%28, 100+i/336))
		fmt.Fprintf(&regs, `{"doc_type":"CN-ID","doc_number":"%s","name":"张三"}`+"\n", doc)
		switch i {
		case 1200:
			labs.WriteString("not json\n")
		case 2400:
			fmt.Fprintf(&labs, `{"id":"L-%d","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"unclear"}`+"\n", i, doc, at)
		default:
			fmt.Fprintf(&labs, `{"id":"L-%d","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"negative"}`+"\n", i, doc, at)
		}
	}
	// Residents first, straight to the node as the operator.
	if st, res, code := postFeed(t, f, op, "residents", []byte(regs.String())); st != 200 || res.Accepted != 2500 {
		t.Fatalf("registration: %d %s %+v", st, code, res)
	}
	push := func() (string, error) {
		var out bytes.Buffer
		o := &feedPush{kind: "labs", ctype: "application/x-ndjson", url: srv.URL, signer: f.PKI.Feeds["440000"], lines: 1000,
			client: f.client(), out: &out, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: f.Now}
		sum, err := o.push(context.Background(), strings.NewReader(labs.String()))
		fmt.Fprintf(&out, "%d %d %d %d", sum.Lines, sum.Accepted, sum.Duplicates, sum.Failed)
		return out.String(), err
	}
	out, err := push()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "line 1201: line:") || !strings.Contains(out, "line 2401: result:") || !strings.HasSuffix(out, "2500 2498 0 2") {
		t.Errorf("push output:\n%s", out)
	}
	if calls.Load() != 4 {
		t.Errorf("%d requests, want 3 chunks and one retry", calls.Load())
	}
	out, err = push()
	if err != nil || !strings.HasSuffix(out, "2500 0 2498 2") {
		t.Errorf("file pushed again: %v\n%s", err, out)
	}
	if err := run(context.Background(), []string{"feed", "push", "--kind", "labs", "--url", srv.URL, "x"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--cert") {
		t.Errorf("push without credentials: %v", err)
	}
}
