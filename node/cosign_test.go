package node_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/offline"
	"github.com/hcxfed/hcx/witness"
)

// cosigners are witnesses the test runs with the real witness package
// (real keys, real badger state) and submits a hub member's checkpoints to,
// with the member's consistency proofs, as the hub's leader does; witnessed
// returns the member's newest checkpoint with their cosignatures, as a
// member's GET /v1/checkpoint/witnessed does.
type cosigners struct {
	t      testing.TB
	hub    *exchange.HubClient
	ws     []*witness.Witness
	mu     sync.Mutex
	sizes  []uint64 // what each witness cosigned last
	frozen atomic.Bool
	last   []byte
	closed bool // the test is over: the witnesses' stores are closing
}

func newCosigners(t testing.TB, f *fed, member string, signers ...*certs.Signer) *cosigners {
	t.Helper()
	ts, err := certs.NewTrustStoreDER(f.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange.ApplyTrustList(ts, f.trust); err != nil {
		t.Fatal(err)
	}
	c := &cosigners{t: t, hub: exchange.NewHubClient([]string{member}, &http.Client{Timeout: 10 * time.Second}).SignWith(f.provs["510000"], nil),
		sizes: make([]uint64, len(signers))}
	for _, s := range signers {
		db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithSyncWrites(true).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		w, err := witness.New(witness.Config{Signer: s, LogKeys: func(at time.Time) []*ecdsa.PublicKey { return exchange.HubKeys(ts, at) },
			Store: witness.NewBadgerStore(db, "witness"), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		c.ws = append(c.ws, w)
	}
	// Runs before the stores close: a request the node gave up on may
	// still be in the member's handler.
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closed = true
	})
	return c
}

// witnessed submits the member's newest checkpoint to every witness and
// returns it with their cosignatures (nil when none cosigned); once
// frozen, the last one again.
func (c *cosigners) witnessed() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen.Load() || c.closed {
		return c.last
	}
	ctx := context.Background()
	note, err := c.hub.Checkpoint(ctx)
	if err != nil {
		return c.last
	}
	cp, err := exchange.ParseCheckpoint(note)
	if err != nil {
		c.t.Errorf("the hub's checkpoint: %v", err)
		return nil
	}
	var lines []string
	for i, w := range c.ws {
		for try := 0; try < 2; try++ {
			var p [][]byte
			if old := c.sizes[i]; old > 0 && old < cp.Size {
				if p, err = c.hub.ConsistencyProof(ctx, old, cp.Size); err != nil {
					break
				}
			}
			line, err := w.Add("test hub", witness.EncodeRequest(c.sizes[i], p, note))
			var we *witness.Error
			if errors.As(err, &we) && we.Code == "old_size_mismatch" {
				c.sizes[i] = we.Size
				continue
			}
			if err != nil {
				c.t.Errorf("witness %s refused the hub's checkpoint of size %d: %v", w.Name(), cp.Size, err)
				break
			}
			c.sizes[i] = cp.Size
			lines = append(lines, string(line))
			break
		}
	}
	if len(lines) == 0 {
		return c.last
	}
	out, err := exchange.AddCosignatures(note, lines...)
	if err != nil {
		c.t.Errorf("add cosignatures: %v", err)
		return nil
	}
	c.last = out
	return out
}

// serveWitnessed makes l answer GET /v1/checkpoint/witnessed from c.
func serveWitnessed(l *liar, c *cosigners) {
	f := c.witnessed
	l.witnessed.Store(&f)
}

// deviceOf is a device pinned to f's root that requires k cosignatures by
// the witnesses kids (all of the trust list's when none).
func deviceOf(t testing.TB, f *fed, k int, kids ...string) *offline.Device {
	t.Helper()
	d, err := offline.Open(t.TempDir(), f.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.Cosignatures, d.Witnesses = k, kids
	return d
}

func codeOf(err error) string {
	var e *hcx.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func readyz(t testing.TB, n *node.Node) (int, string) {
	t.Helper()
	srv := witnessServer(t, n)
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A node that requires 2 cosignatures is ready once its tree is covered by
// a checkpoint two witnesses of the trust list cosigned, puts that
// checkpoint, cosignatures and all, in its bundles, and a device that
// requires 2 installs them.
func TestNodeRequiringTwoCosignaturesTrustsAWitnessedCheckpoint(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 10, hcx.Red))
	l := newLiar(t, f, hub.URLs()[0], nil)
	serveWitnessed(l, newCosigners(t, f, hub.URLs()[0], f.provs["440000"], f.provs["510000"]))
	n, _ := runNodeWith(t, f, t.TempDir(), func(c *node.Config) { c.Cosignatures = 2 }, l.URL)
	// The node publishes its policy and box key too: the log grows by
	// itself, and the witnessed checkpoint follows.
	waitFor(t, "the node to be ready with a witnessed checkpoint", func() bool {
		return n.Ready() == nil && n.Checkpoints().Witnessed >= 2
	})
	if st, body := readyz(t, n); st != http.StatusOK || !strings.Contains(body, `"witnessed_size":`) || !strings.Contains(body, `"cosignatures":2`) {
		t.Errorf("/readyz = %d %s; want 200 with the witnessed size and k", st, body)
	}
	b, err := n.VerificationBundle()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := exchange.ParseCheckpoint([]byte(b.Header.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if valid, _ := cp.VerifyCosignatures(n.Witnesses(time.Now()), time.Now()); len(valid) != 2 {
		t.Errorf("the bundle's checkpoint has %d valid cosignatures, want 2", len(valid))
	}
	d := deviceOf(t, f, 2)
	if err := d.Install(bytes.NewReader(bundleBytes(t, b)), nil); err != nil {
		t.Fatalf("a device requiring 2 cosignatures refused the bundle: %v", err)
	}

	// More entries: the follower moves to the newer witnessed checkpoint.
	before := n.Applied()
	submit(t, f, hub.URLs()[0], f.batch(t, 2, 10, 10, hcx.Red))
	waitFor(t, "a newer witnessed checkpoint", func() bool { return n.Checkpoints().Witnessed > before && n.Ready() == nil })
}

// Fewer valid cosignatures than required: the node applies the entries
// (they do not wait for cosigning) but is not ready, says why, and makes no
// bundle. Once witnessed, a tree that runs ahead of its newest witnessed
// checkpoint for longer than the bound is not ready either.
func TestNodeRequiringCosignaturesIsNotReadyWithoutThem(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 10, hcx.Red))
	l := newLiar(t, f, hub.URLs()[0], nil)
	serveWitnessed(l, newCosigners(t, f, hub.URLs()[0], f.provs["440000"]))
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	dir := t.TempDir()
	tune := func(c *node.Config) { c.Cosignatures, c.Now, c.BundleInterval = 2, now, time.Nanosecond }
	n, stop := runNodeWith(t, f, dir, tune, l.URL)
	waitFor(t, "the node to apply entries and find the witnessed checkpoint short", func() bool {
		return n.Applied() >= 2 && strings.Contains(metricsOf(n), `hcx_node_witnessed_short_total{province="510000"} `) &&
			!strings.Contains(metricsOf(n), `hcx_node_witnessed_short_total{province="510000"} 0`)
	})
	if err := n.Ready(); codeOf(err) != node.CodeUnwitnessed || !strings.Contains(err.Error(), "no checkpoint with 2 witness cosignatures") {
		t.Errorf("ready = %v; want %s", err, node.CodeUnwitnessed)
	}
	if st, body := readyz(t, n); st != http.StatusServiceUnavailable || !strings.Contains(body, `"checkpoint_unwitnessed"`) {
		t.Errorf("/readyz = %d %s; want 503 checkpoint_unwitnessed", st, body)
	}
	if _, err := n.VerificationBundle(); !errors.Is(err, node.ErrNoWitnessedCheckpoint) {
		t.Errorf("bundle: %v; want %v", err, node.ErrNoWitnessedCheckpoint)
	}

	// Two witnesses now: ready.
	both := newCosigners(t, f, hub.URLs()[0], f.provs["440000"], f.provs["510000"])
	serveWitnessed(l, both)
	waitFor(t, "the node to be ready", func() bool { return n.Ready() == nil && n.Checkpoints().Witnessed >= 2 })

	// The witnesses stop cosigning; the node still applies new entries,
	// and stays ready within the bound, not past it.
	both.frozen.Store(true)
	last, err := exchange.ParseCheckpoint(both.witnessed())
	if err != nil {
		t.Fatal(err)
	}
	w := last.Size
	waitFor(t, "the node to hold the last witnessed checkpoint", func() bool { return n.Checkpoints().Witnessed == w })
	submit(t, f, hub.URLs()[0], f.batch(t, 2, 10, 10, hcx.Red))
	waitFor(t, "the node to apply entries past the witnessed checkpoint", func() bool { return n.Applied() > w })
	if err := n.Ready(); err != nil {
		t.Errorf("ready within the bound: %v", err)
	}
	clock.Add(int64(3 * time.Minute))
	if err := n.Ready(); codeOf(err) != node.CodeUnwitnessed || !strings.Contains(err.Error(), fmt.Sprintf("has %d, and none newer came for 3m0s", w)) {
		t.Errorf("ready 3 minutes on = %v; want %s naming the sizes and the wait", err, node.CodeUnwitnessed)
	}
	if b, err := n.VerificationBundle(); err != nil || b.Size <= w {
		t.Errorf("bundle: %v; want one past size %d with the witnessed checkpoint of size %d", err, w, w)
	} else if cp, err := exchange.ParseCheckpoint([]byte(b.Header.Checkpoint)); err != nil || cp.Size != w {
		t.Errorf("the bundle's checkpoint: %v; want size %d", err, w)
	}
	// A restart gives the witnesses the bound again, and no more: the tree
	// it finds stored ahead of its witnessed checkpoint counts from then.
	stop()
	n, _ = runNodeWith(t, f, dir, tune, l.URL)
	waitFor(t, "the restarted node to have its trust list", func() bool { return n.Checkpoints().Witnessed == w && n.Ready() == nil })
	clock.Add(int64(3 * time.Minute))
	if err := n.Ready(); codeOf(err) != node.CodeUnwitnessed {
		t.Errorf("restarted, ready 3 minutes on = %v; want %s", err, node.CodeUnwitnessed)
	}
	both.frozen.Store(false)
	waitFor(t, "the node to be ready again", func() bool { return n.Ready() == nil && n.Checkpoints().Witnessed == n.Applied() })
}

// A witnessed checkpoint with enough valid cosignatures that is not
// consistent with the node's tree is a fork naming the member that served
// it, as a hub checkpoint would be.
func TestNodeRequiringCosignaturesForksOnAWitnessedCheckpointOfAnotherHistory(t *testing.T) {
	f := newFed(t, 1, 1)
	a := startHub(t, f, 0, 1, f.batch(t, 1, 0, 10, hcx.Red), f.batch(t, 2, 10, 10, hcx.Red), f.batch(t, 3, 20, 10, hcx.Red))
	b := startHub(t, f, 1, 1, f.batch(t, 1, 1000, 10, hcx.Green))
	checkpointOf(t, a.URLs()[0], 4)
	checkpointOf(t, b.URLs()[0], 2)
	l := newLiar(t, f, a.URLs()[0], nil)
	serveWitnessed(l, newCosigners(t, f, b.URLs()[0], f.provs["440000"], f.provs["510000"]))
	n, _ := runNodeWith(t, f, t.TempDir(), func(c *node.Config) { c.Cosignatures = 2 }, l.URL)
	var fork *node.ForkError
	waitFor(t, "the node to report the fork", func() bool { return errors.As(n.Ready(), &fork) })
	if fork.Member != l.URL || !strings.Contains(fork.Reason, "witnessed checkpoint of size 2") {
		t.Errorf("fork = %v; want one naming %s and its witnessed checkpoint of size 2", fork, l.URL)
	}
	if n.Applied() != 0 {
		t.Errorf("applied %d entries from a member whose witnessed checkpoint forks, want 0", n.Applied())
	}
}

// A device that requires 2 cosignatures refuses a bundle whose checkpoint
// carries 1, saying how many of how many, and keeps the bundle it has.
func TestDeviceRequiringCosignaturesKeepsItsBundle(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 10, hcx.Red))
	l := newLiar(t, f, hub.URLs()[0], nil)
	serveWitnessed(l, newCosigners(t, f, hub.URLs()[0], f.provs["440000"], f.provs["510000"]))
	n, _ := runNodeWith(t, f, t.TempDir(), func(c *node.Config) { c.Cosignatures, c.BundleInterval = 1, time.Nanosecond }, l.URL)
	waitFor(t, "a witnessed checkpoint", func() bool { return n.Checkpoints().Witnessed >= 2 })
	b1, err := n.VerificationBundle()
	if err != nil {
		t.Fatal(err)
	}
	d := deviceOf(t, f, 2)
	if err := d.Install(bytes.NewReader(bundleBytes(t, b1)), nil); err != nil {
		t.Fatal(err)
	}

	serveWitnessed(l, newCosigners(t, f, hub.URLs()[0], f.provs["440000"]))
	w := n.Checkpoints().Witnessed
	submit(t, f, hub.URLs()[0], f.batch(t, 2, 10, 10, hcx.Red))
	waitFor(t, "a newer witnessed checkpoint", func() bool { return n.Checkpoints().Witnessed > w })
	b2, err := n.VerificationBundle()
	if err != nil || b2.Size <= b1.Size {
		t.Fatalf("a bundle past size %d: %v", b1.Size, err)
	}
	raw2 := bundleBytes(t, b2)
	p, err := n.ConsistencyProof(context.Background(), b1.Size, b2.Size)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Install(bytes.NewReader(raw2), p)
	if !errors.Is(err, exchange.ErrBadBundle) || !errors.Is(err, exchange.ErrTooFewCosignatures) || !strings.Contains(err.Error(), "1 valid of the 2 required") {
		t.Fatalf("install a bundle with 1 cosignature: %v; want a bad bundle with too few cosignatures, 1 of 2", err)
	}
	if st := d.State(); st.Header.Size != b1.Size {
		t.Errorf("the device has a bundle of size %d, want the old one of size %d", st.Header.Size, b1.Size)
	}

	// Narrowed to the one witness that cosigned, k=1 of n=1 accepts it.
	d.Cosignatures, d.Witnesses = 1, []string{f.provs["440000"].KID}
	if err := d.Install(bytes.NewReader(raw2), p); err != nil {
		t.Errorf("a device requiring 1 of the witness that cosigned: %v", err)
	}
	// And a witness list that leaves it out refuses it.
	d2 := deviceOf(t, f, 1, f.provs["510000"].KID)
	if err := d2.Install(bytes.NewReader(raw2), nil); !errors.Is(err, exchange.ErrTooFewCosignatures) || !strings.Contains(err.Error(), "of 1 witnesses known") {
		t.Errorf("a device counting only another witness: %v; want too few cosignatures, of 1 witness", err)
	}
}
