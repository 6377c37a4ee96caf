package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// testCtx carries the principal that tests calling the node directly act
// as: Guangdong's lab feed.
var testCtx = auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleFeed, Actor: "cert:test-feed", Province: "440000", Method: auth.MethodRequestToken})

// benchNode opens a real province node for Guangdong on a temp dir, with
// certificates made here.
func benchNode(tb testing.TB, dir string) *node.Node {
	tb.Helper()
	n, _ := benchNodeAndRoot(tb, dir)
	return n
}

// benchNodeAndRoot is benchNode, and the national root its trust store is
// anchored in, to issue machine certificates from.
func benchNodeAndRoot(tb testing.TB, dir string) (*node.Node, *certs.Signer) {
	tb.Helper()
	n, root, _ := benchNodeRootSigner(tb, dir)
	return n, root
}

// benchNodeRootSigner is benchNodeAndRoot, and the province signer it gives
// the node (to sign codes the node has not issued).
func benchNodeRootSigner(tb testing.TB, dir string) (*node.Node, *certs.Signer, *certs.Signer) {
	tb.Helper()
	now := time.Now()
	root, err := certs.NewRoot("bench root", now, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "province-440000",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	n, err := node.New(node.Config{
		Province: "440000", Dir: dir, Signer: signer, RootDER: root.Cert.Raw,
		SubjectKey: certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)},
		FieldKeys:  map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1,
		RulesPath: "../configs/rules/440000.yaml",
		Hub:       exchange.NewHubClient([]string{"http://127.0.0.1:1"}, nil),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n, root, signer
}

// benchIDNumber is the i-th valid mainland ID number of people born in
// Guangzhou's Tianhe district.
func benchIDNumber(i int) string {
	birth := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i/900)
	first17 := fmt.Sprintf("440106%s%03d", birth.Format("20060102"), 100+i%900)
	return first17 + string(hcx.CNIDCheckDigit(first17))
}

func registerResidents(tb testing.TB, n *node.Node, count int) []hcx.Subject {
	tb.Helper()
	subs := make([]hcx.Subject, count)
	for i := range subs {
		r, err := n.Register(testCtx, node.RegisterRequest{DocType: hcx.DocCNID, DocNumber: benchIDNumber(i), Name: "张三"})
		if err != nil {
			tb.Fatal(err)
		}
		subs[i] = r.Subject
	}
	return subs
}

// rawSyncedTxnRate is how many single-key synced badger transactions one
// goroutine commits per second on dir's disk, with the node's store options:
// the baseline every figure below is a ratio against.
func rawSyncedTxnRate(b *testing.B, dir string, count int) float64 {
	db, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).
		WithMemTableSize(16 << 20).WithValueLogFileSize(64 << 20).WithNumCompactors(2))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := bytes.Repeat([]byte("v"), 100)
	start := time.Now()
	for i := range count {
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(fmt.Appendf(nil, "k/%020d", i), val) }); err != nil {
			b.Fatal(err)
		}
	}
	return float64(count) / time.Since(start).Seconds()
}

// BenchmarkLabResultsThroughHTTP posts positive lab results for many
// residents through the node's real HTTP API from concurrent clients, as a
// Guangdong lab feed: each request carries a fresh SM2 request token
// (auth.SigningTransport) from a feed certificate in the node's trust store,
// checked by auth.RequestTokens over n.TrustStore with a replay cache, as
// cmd/hcx serves it. It reports acknowledged results per second, and that
// rate as a ratio of raw synced badger transactions per second on the same
// disk in the same run. Because the route cannot be served anonymously, the
// token's share is measured beside the run: sign-µs/req and verify-µs/req
// are one client signing and one node verifying a token for the same route
// and body, serially, right after the run; token-cpu-share is what
// (sign+verify) × acks/s takes of the machine's cores.
func BenchmarkLabResultsThroughHTTP(b *testing.B) {
	const residents, clients = 2000, 256
	n, root := benchNodeAndRoot(b, b.TempDir())
	defer n.Close()
	subs := registerResidents(b, n, residents)
	now := time.Now()
	feed, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleFeed, Province: "440000", Name: "lab-gz-1",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	// /metrics is for operators and auditors: the national auditor reads
	// the commit counters.
	auditor, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleAuditor, Name: "auditor-1",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []*certs.Signer{feed, auditor} {
		if _, err := n.TrustStore().Add(s.Cert.Raw); err != nil {
			b.Fatal(err)
		}
	}
	tokens := &auth.RequestTokens{Trust: n.TrustStore, Replay: auth.NewReplayCache(0)}
	srv := httptest.NewServer(api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: auth.Chain{tokens}}))
	defer srv.Close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &auth.SigningTransport{Signer: feed,
		Base: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}}
	metrics := &http.Client{Timeout: 10 * time.Second, Transport: &auth.SigningTransport{Signer: auditor}}
	// The raw rate is measured before and after the run, and averaged: the
	// disk is shared and its rate drifts.
	rawBefore := rawSyncedTxnRate(b, b.TempDir(), 300)
	// Registrations are commits too: count only the run's.
	commitsBefore := metricValue(b, metrics, srv.URL, "hcx_node_commits_total")

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				res, err := client.Post(srv.URL+"/v1/residents/"+string(subs[i%residents])+"/labs", "application/json",
					bytes.NewReader([]byte(`{"result":"positive"}`)))
				if err != nil {
					b.Error(err)
					return
				}
				body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Errorf("lab result %d: status %d %s", i, res.StatusCode, body)
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
	if events, commits := metricValue(b, metrics, srv.URL, "hcx_node_events_total"), metricValue(b, metrics, srv.URL, "hcx_node_commits_total")-commitsBefore; commits > 0 {
		b.ReportMetric(events/commits, "events/commit")
	}
	sign, verify := tokenCost(b, feed, n.TrustStore, srv.URL+"/v1/residents/"+string(subs[0])+"/labs", []byte(`{"result":"positive"}`), 500)
	b.ReportMetric(rate, "acks/s")
	b.ReportMetric(raw, "raw-synced-txn/s")
	b.ReportMetric(rate/raw, "ratio")
	b.ReportMetric(float64(sign.Nanoseconds())/1e3, "sign-µs/req")
	b.ReportMetric(float64(verify.Nanoseconds())/1e3, "verify-µs/req")
	b.ReportMetric((sign+verify).Seconds()*rate/float64(runtime.GOMAXPROCS(0)), "token-cpu-share")
}

// tokenCost is the mean time, over count requests to url with body, of the
// feed signing a request token (auth.SignRequest) and of the node's
// authenticator (auth.RequestTokens with its own replay cache) checking it,
// one at a time.
func tokenCost(b *testing.B, feed *certs.Signer, trust func() *certs.TrustStore, url string, body []byte, count int) (sign, verify time.Duration) {
	b.Helper()
	tokens := &auth.RequestTokens{Trust: trust, Replay: auth.NewReplayCache(0)}
	for range count {
		r := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		t0 := time.Now()
		if err := auth.SignRequest(r, body, feed, time.Now()); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		p, err := tokens.Authenticate(r)
		t2 := time.Now()
		if err != nil || p == nil || p.Role != auth.RoleFeed {
			b.Fatalf("the node made %v of the feed's token (err %v), want a feed", p, err)
		}
		sign += t1.Sub(t0)
		verify += t2.Sub(t1)
	}
	return sign / time.Duration(count), verify / time.Duration(count)
}

// metricValue reads one of the node's counters from its /metrics route as
// client; 0 if the node does not have it.
func metricValue(b *testing.B, client *http.Client, url, name string) float64 {
	res, err := client.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		b.Fatalf("GET /metrics: %d %s", res.StatusCode, body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+"{") {
			var v float64
			fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v)
			return v
		}
	}
	return 0
}

// benchMachine serves n over HTTP with request-token authentication, and
// a client signing as a new machine certificate of the node's province
// (role: a checkpoint device, a feed), keeping up to idle connections (0:
// the default transport).
func benchMachine(tb testing.TB, n *node.Node, root *certs.Signer, role certs.Role, name string, idle int) (*httptest.Server, *http.Client) {
	tb.Helper()
	now := time.Now()
	machine, err := certs.Issue(root, certs.IssueRequest{Role: role, Province: "440000", Name: name,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := n.TrustStore().Add(machine.Cert.Raw); err != nil {
		tb.Fatal(err)
	}
	tokens := &auth.RequestTokens{Trust: n.TrustStore, Replay: auth.NewReplayCache(0)}
	srv := httptest.NewServer(api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: auth.Chain{tokens}}))
	tb.Cleanup(srv.Close)
	t := &auth.SigningTransport{Signer: machine}
	if idle > 0 {
		t.Base = &http.Transport{MaxIdleConnsPerHost: idle}
	}
	return srv, &http.Client{Timeout: time.Minute, Transport: t}
}
