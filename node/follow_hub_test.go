package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// fed is a federation's keys made by the test: a national root, province
// signers, hub signers for hubs clusters, and the trust list naming them all.
type fed struct {
	root  *certs.Signer
	provs map[hcx.ProvinceCode]*certs.Signer
	hubs  [][]*certs.Signer // by cluster, by member
	trust string
}

func newFed(t testing.TB, clusters ...int) *fed {
	t.Helper()
	now := time.Now()
	root, err := certs.NewRoot("follower test root", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fed{root: root, provs: map[hcx.ProvinceCode]*certs.Signer{}}
	tl := &exchange.TrustList{At: now.Unix(), Ver: 1}
	issue := func(role certs.Role, prov hcx.ProvinceCode, name string) *certs.Signer {
		s, err := certs.Issue(root, certs.IssueRequest{Role: role, Province: prov, Name: name, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
		return s
	}
	for _, p := range []hcx.ProvinceCode{"440000", "510000"} {
		f.provs[p] = issue(certs.RoleProvince, p, "province-"+string(p))
	}
	for c, members := range clusters {
		var hs []*certs.Signer
		for i := 0; i < members; i++ {
			hs = append(hs, issue(certs.RoleHub, "", fmt.Sprintf("hub-%d-%d", c, i+1)))
		}
		f.hubs = append(f.hubs, hs)
	}
	if f.trust, err = exchange.SealTrustList(root, tl); err != nil {
		t.Fatal(err)
	}
	return f
}

// batch seals Guangdong's batch seq: n attestations of col for subjects
// first.. (made-up subjects; the follower does not need to know them).
func (f *fed) batch(t testing.TB, seq uint64, first, n int, col hcx.Colour) string {
	t.Helper()
	now := time.Now().Unix()
	b := &exchange.Batch{Iss: "440000", Seq: seq, At: now, SKV: 1}
	for i := 0; i < n; i++ {
		sub := certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)}.Subject(hcx.DocCNID, strconv.Itoa(first+i))
		b.Atts = append(b.Atts, hcx.Attestation{Subject: sub, Colour: col, Reasons: []hcx.Reason{hcx.ReasonLabPositive},
			Eff: now - 10, Exp: now + 3600, PolicyV: "00112233445566778899aabbccddeeff", N: 1})
	}
	s, err := exchange.SealBatch(f.provs["440000"], b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func quietLogger() *slog.Logger {
	if os.Getenv("HCX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startHub starts cluster c of f with members members, checkpoints every
// 100 ms, and submits the trust list and entries to it.
func startHub(t testing.TB, f *fed, c, members int, entries ...string) *consensus.Cluster {
	t.Helper()
	return startHubWith(t, f, c, members, func(*consensus.Config) {}, entries...)
}

// startHubWith is startHub with each member's configuration changed by
// tune.
func startHubWith(t testing.TB, f *fed, c, members int, tune func(*consensus.Config), entries ...string) *consensus.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub, err := consensus.StartCluster(ctx, consensus.ClusterConfig{
		N: members, Dir: t.TempDir(), RootDER: f.root.Cert.Raw, Signers: f.hubs[c],
		Logger: quietLogger(), Handler: api.HubHandlerFunc(quietLogger(), api.HubOptions{}), InsecurePlaintext: true,
		Tune: func(cfg *consensus.Config) {
			cfg.CheckpointEvery = 100 * time.Millisecond
			tune(cfg)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	submit(t, f, hub.URLs()[0], append([]string{f.trust}, entries...)...)
	return hub
}

// submit posts entries to member as the national root, which the hub
// trusts before the first trust list and lets write (it acts as a hub
// member).
func submit(t testing.TB, f *fed, member string, entries ...string) {
	t.Helper()
	cl := exchange.NewHubClient([]string{member}, nil).SignWith(f.root, nil)
	for i, e := range entries {
		if _, err := cl.Submit(context.Background(), e); err != nil {
			t.Fatalf("submit entry %d: %v", i, err)
		}
	}
}

// checkpointOf waits until member serves a checkpoint of at least size
// leaves and returns it.
func checkpointOf(t testing.TB, member string, size uint64) *exchange.Checkpoint {
	t.Helper()
	cl := exchange.NewHubClient([]string{member}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		note, err := cl.Checkpoint(context.Background())
		if err == nil {
			cp, err := exchange.ParseCheckpoint(note)
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size >= size {
				return cp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no checkpoint of %d leaves (last error %v)", member, size, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runNode opens Sichuan's node on dir, following the given hub members, and
// runs it until the test ends or stop is called.
func runNode(t testing.TB, f *fed, dir string, members ...string) (n *node.Node, stop func()) {
	t.Helper()
	return runNodeAt(t, f, dir, nil, members...)
}

// runNodeAt is runNode with the node's clock now (nil: the wall clock).
func runNodeAt(t testing.TB, f *fed, dir string, now func() time.Time, members ...string) (n *node.Node, stop func()) {
	t.Helper()
	return runNodeWith(t, f, dir, func(c *node.Config) { c.Now = now }, members...)
}

// runNodeWith is runNode with the node's configuration changed by tune.
func runNodeWith(t testing.TB, f *fed, dir string, tune func(*node.Config), members ...string) (n *node.Node, stop func()) {
	t.Helper()
	cfg := node.Config{
		Province: "510000", Dir: dir, Signer: f.provs["510000"], RootDER: f.root.Cert.Raw,
		SubjectKey: certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)},
		FieldKeys:  map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1,
		RulesPath: "../configs/rules/510000.yaml",
		Hub:       exchange.NewHubClient(members, &http.Client{Timeout: 10 * time.Second}).SignWith(f.provs["510000"], nil),
		Logger:    quietLogger(),
		// These tests count the log's leaves: the node logs no trail
		// heads of its own unless tune says so (audithead_test.go).
		AuditHeadEvery: -1,
	}
	if tune != nil {
		tune(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			n.Close()
		}
	}
	t.Cleanup(stop)
	return n, stop
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metricsOf(n *node.Node) string {
	var b strings.Builder
	n.WriteMetrics(&b)
	return b.String()
}

// liar is a hub member as a lying proxy shows it: it forwards to target
// and passes the entries it serves through rewrite.
type liar struct {
	*httptest.Server
	target  atomic.Pointer[url.URL]
	rewrite func(index uint64, entry string) string
	// pageMax, when set, cuts every page to that many entries (an honest
	// member may serve fewer than asked for); note, when set, rewrites the
	// checkpoint.
	pageMax int
	note    func([]byte) []byte
	// witnessed, when set, answers GET /v1/checkpoint/witnessed in the
	// member's stead (nil note: 404).
	witnessed atomic.Pointer[func() []byte]
}

// The liar is a man in the middle with Sichuan's key: it signs what it
// forwards afresh, for the member it forwards to.
func newLiar(t testing.TB, f *fed, target string, rewrite func(uint64, string) string) *liar {
	t.Helper()
	l := &liar{rewrite: rewrite}
	l.retarget(t, target)
	rp := &httputil.ReverseProxy{
		ErrorLog: log.New(io.Discard, "", 0),
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(l.target.Load())
			r.Out.Header.Del("Accept-Encoding")
			if r.Out.Header.Get("Authorization") != "" {
				var body []byte
				if r.Out.Body != nil {
					body, _ = io.ReadAll(r.Out.Body)
					r.Out.Body = io.NopCloser(bytes.NewReader(body))
				}
				if err := auth.SignRequest(r.Out, body, f.provs["510000"], time.Now()); err != nil {
					t.Error(err)
				}
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.URL.Path == "/v1/checkpoint" && resp.StatusCode == http.StatusOK && l.note != nil {
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				b = l.note(b)
				resp.Body = io.NopCloser(bytes.NewReader(b))
				resp.ContentLength = int64(len(b))
				resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
				return nil
			}
			if resp.Request.URL.Path != "/v1/entries" || resp.StatusCode != http.StatusOK || (l.rewrite == nil && l.pageMax == 0) {
				return nil
			}
			var page exchange.Entries
			err := json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if l.pageMax > 0 && len(page.Entries) > l.pageMax {
				page.Entries = page.Entries[:l.pageMax]
			}
			for i, e := range page.Entries {
				if l.rewrite != nil {
					page.Entries[i] = l.rewrite(page.Start+uint64(i), e)
				}
			}
			b, err := json.Marshal(page)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		},
	}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := l.witnessed.Load(); f != nil && r.URL.Path == "/v1/checkpoint/witnessed" {
			note := (*f)()
			if note == nil {
				http.Error(w, `{"error":{"code":"no_witnessed_checkpoint","message":"none yet"}}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(note)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *liar) retarget(t testing.TB, target string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l.target.Store(u)
}

func TestFollowerOfAnHonestHubIsReadyAndHasTheCheckpointRoot(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 50, hcx.Red), f.batch(t, 2, 50, 50, hcx.Yellow), f.batch(t, 3, 100, 50, hcx.Red))
	n, _ := runNode(t, f, t.TempDir(), hub.URLs()...)
	cp := checkpointOf(t, hub.URLs()[0], 4)
	waitFor(t, "the node to apply 4 entries", func() bool { return n.Applied() == 4 })
	size, root := n.LogTree()
	if size != cp.Size || !bytes.Equal(root, cp.Root) {
		t.Errorf("node tree: size %d root %x; checkpoint: size %d root %x", size, root, cp.Size, cp.Root)
	}
	if err := n.Ready(); err != nil {
		t.Errorf("ready: %v", err)
	}
	// More entries, past the checkpoint the node saw first.
	submit(t, f, hub.URLs()[0], f.batch(t, 4, 150, 50, hcx.Green))
	waitFor(t, "the node to apply 5 entries", func() bool { return n.Applied() == 5 })
	cp = checkpointOf(t, hub.URLs()[0], 5)
	if size, root := n.LogTree(); size != cp.Size || !bytes.Equal(root, cp.Root) {
		t.Errorf("node tree: size %d root %x; checkpoint: size %d root %x", size, root, cp.Size, cp.Root)
	}
	m := metricsOf(n)
	for _, want := range []string{`hcx_node_log_fork{province="510000"} 0`, `hcx_node_log_forks_total{province="510000"} 0`, `hcx_node_log_entries_rejected_total{province="510000"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A member that rewrites one entry (with a valid envelope Guangdong signed
// but never submitted) is caught by its own signed checkpoint: the node
// applies nothing from it, is not ready and says why; configured with an
// honest member too, it carries on from that one.
func TestFollowerRefusesAMemberThatRewritesAnEntry(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 20, hcx.Red), f.batch(t, 2, 20, 20, hcx.Red), f.batch(t, 3, 40, 20, hcx.Red))
	honest := checkpointOf(t, hub.URLs()[0], 4)
	forged := f.batch(t, 2, 20, 20, hcx.Green)
	l := newLiar(t, f, hub.URLs()[0], func(i uint64, e string) string {
		if i == 2 {
			return forged
		}
		return e
	})
	dir := t.TempDir()
	n, stop := runNode(t, f, dir, l.URL)
	var fork *node.ForkError
	waitFor(t, "the node to report the fork", func() bool { return errors.As(n.Ready(), &fork) })
	if fork.Size != 4 || fork.Member != l.URL || !strings.Contains(fork.Error(), "forked at size 4") {
		t.Errorf("fork = %v; want one at size 4 naming %s", fork, l.URL)
	}
	time.Sleep(300 * time.Millisecond) // the node would have applied by now if it were going to
	if got := n.Applied(); got != 0 {
		t.Errorf("applied %d entries from a forked member, want 0", got)
	}
	if size, _ := n.LogTree(); size != 0 {
		t.Errorf("the node's tree has %d leaves, want 0", size)
	}
	m := metricsOf(n)
	for _, want := range []string{`hcx_node_log_fork{province="510000"} 1`, `hcx_node_log_forks_total{province="510000"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	srv := httptest.NewServer(api.NewNodeHandler(n, quietLogger(), api.NodeOptions{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "forked at size 4") ||
		!strings.Contains(string(body), `"code":"log_fork"`) || !strings.Contains(string(body), `"member":"`+fork.Member+`"`) {
		t.Errorf("/readyz = %d %s; want 503 log_fork naming the fork and the member", resp.StatusCode, body)
	}
	stop()

	// With an honest member configured after the liar, the node moves on.
	n, _ = runNode(t, f, dir, l.URL, hub.URLs()[0])
	waitFor(t, "the node to follow the honest member", func() bool { return n.Applied() == 4 && n.Ready() == nil })
	if size, root := n.LogTree(); size != 4 || !bytes.Equal(root, honest.Root) {
		t.Errorf("node tree: size %d root %x; honest checkpoint root %x", size, root, honest.Root)
	}
	if m := metricsOf(n); !strings.Contains(m, `hcx_node_log_forks_total{province="510000"} 1`) || !strings.Contains(m, `hcx_node_log_fork{province="510000"} 0`) {
		t.Errorf("metrics after moving on:\n%s", m)
	}
}

// A member that starts serving another history — another cluster's log,
// with that cluster's real signed checkpoints by a hub key of the trust list
// — contradicts the tree the node already applied: the node stops reading it
// and continues from another member of its own cluster.
func TestFollowerLeavesAMemberThatServesAnotherHistory(t *testing.T) {
	f := newFed(t, 3, 1)
	a := startHub(t, f, 0, 3, f.batch(t, 1, 0, 20, hcx.Red), f.batch(t, 2, 20, 20, hcx.Red))
	b := startHub(t, f, 1, 1, f.batch(t, 1, 1000, 20, hcx.Green), f.batch(t, 2, 1020, 20, hcx.Green), f.batch(t, 3, 1040, 20, hcx.Green), f.batch(t, 4, 1060, 20, hcx.Green))
	checkpointOf(t, b.URLs()[0], 5)
	checkpointOf(t, a.URLs()[0], 3)
	l := newLiar(t, f, a.URLs()[0], nil)
	n, _ := runNode(t, f, t.TempDir(), l.URL, a.URLs()[1])
	waitFor(t, "the node to apply cluster A's 3 entries", func() bool { return n.Applied() == 3 })

	l.retarget(t, b.URLs()[0])
	submit(t, f, a.URLs()[0], f.batch(t, 3, 40, 20, hcx.Red))
	var fork *node.ForkError
	waitFor(t, "the node to count the fork", func() bool {
		return strings.Contains(metricsOf(n), `hcx_node_log_forks_total{province="510000"} 1`)
	})
	waitFor(t, "the node to carry on from A's second member", func() bool { return n.Applied() == 4 && n.Ready() == nil })
	if errors.As(n.Ready(), &fork) {
		t.Errorf("still not ready: %v", fork)
	}
	cp := checkpointOf(t, a.URLs()[1], 4)
	if size, root := n.LogTree(); size != 4 || !bytes.Equal(root, cp.Root) {
		t.Errorf("node tree: size %d root %x; cluster A checkpoint: size %d root %x", size, root, cp.Size, cp.Root)
	}
}

// A checkpoint signed by a hub key that a trust list further on in the log
// names (a member that joined later) is not a fork: the follower finds the
// key in the newest root-signed trust list. Here every page is one entry
// long, so the page never holds that trust list.
func TestFollowerAcceptsACheckpointKeyFromTheNewestTrustList(t *testing.T) {
	f := newFed(t, 1, 1)
	now := time.Now().Unix()
	list := func(ver uint64, signers ...*certs.Signer) string {
		tl := &exchange.TrustList{At: now, Ver: ver}
		for _, s := range signers {
			tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
		}
		jws, err := exchange.SealTrustList(f.root, tl)
		if err != nil {
			t.Fatal(err)
		}
		return jws
	}
	joined := f.hubs[1][0] // the key the checkpoints are signed with, named only in list 2
	f.trust = list(1, f.provs["440000"], f.provs["510000"], f.hubs[0][0])
	hub := startHub(t, f, 0, 1, list(2, f.provs["440000"], f.provs["510000"], f.hubs[0][0], joined), f.batch(t, 1, 0, 10, hcx.Red))
	checkpointOf(t, hub.URLs()[0], 3)
	l := newLiar(t, f, hub.URLs()[0], nil)
	l.pageMax = 1
	l.note = func(b []byte) []byte {
		cp, err := exchange.ParseCheckpoint(b)
		if err != nil {
			return b
		}
		again, err := exchange.SignCheckpoint(joined, cp.Size, cp.Root, cp.Time)
		if err != nil {
			return b
		}
		return again
	}
	n, _ := runNode(t, f, t.TempDir(), l.URL)
	var fork *node.ForkError
	waitFor(t, "the node to apply 3 entries", func() bool { return n.Applied() == 3 || errors.As(n.Ready(), &fork) })
	if err := n.Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if m := metricsOf(n); !strings.Contains(m, `hcx_node_log_forks_total{province="510000"} 0`) {
		t.Errorf("forks counted:\n%s", m)
	}
}
