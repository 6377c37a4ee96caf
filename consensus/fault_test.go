package consensus

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// live tracks which members of a cluster are up, for submitters that must
// move to another member when theirs dies.
type live struct {
	mu   sync.Mutex
	hubs []*Hub
	next int
}

func (l *live) pick() *Hub {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	return l.hubs[l.next%len(l.hubs)]
}

func (l *live) drop(h *Hub) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.hubs {
		if x == h {
			l.hubs = append(l.hubs[:i], l.hubs[i+1:]...)
			return
		}
	}
}

// submitUntilAcked retries the same bytes at live members until one
// acknowledges them, as a province publisher does.
func submitUntilAcked(ctx context.Context, l *live, env string) (exchange.SubmitResult, error) {
	for {
		h := l.pick()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := h.Submit(sctx, env)
		cancel()
		if err == nil {
			return r, nil
		}
		if !retryable(err) {
			return r, err
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type ack struct {
	iss   hcx.ProvinceCode
	seq   uint64
	env   string
	index uint64
}

func TestLeaderKilledUnderLoadElectsANewLeaderWithin3sAndLosesOrDuplicatesNothing(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, nil)
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.Members[0].Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	l := &live{hubs: append([]*Hub(nil), c.Members...)}
	const perProvince = 15
	provs := []hcx.ProvinceCode{"110000", "440000", "510000"}
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	errs := make(chan error, len(provs))
	for pi, prov := range provs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= perProvince; seq++ {
				env := p.batch(t, prov, seq, 5, pi*1000+int(seq)*5, hcx.Red, seq)
				r, err := submitUntilAcked(ctx, l, env)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acks = append(acks, ack{prov, seq, env, r.Index})
				mu.Unlock()
			}
		}()
	}
	// Kill the leader once the load is under way.
	for {
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		if n >= 10 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	old := c.Leader()
	l.drop(old)
	t0 := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	var elected time.Duration
	for elected == 0 {
		for _, h := range l.hubs {
			if h.IsLeader() {
				elected = time.Since(t0)
			}
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatal("no new leader within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if elected > 3*time.Second {
		t.Fatalf("new leader after %v, want within 3s", elected)
	}
	t.Logf("new leader %v after the kill", elected)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	leaves := converge(t, l.hubs...)
	if got, want := len(leaves), 1+len(provs)*perProvince; got != want {
		t.Fatalf("%d leaves, want %d (one trust list and every acknowledged batch once)", got, want)
	}
	seen := map[string]bool{}
	for i, lf := range leaves {
		if seen[string(lf)] {
			t.Fatalf("leaf %d is a duplicate", i)
		}
		seen[string(lf)] = true
	}
	for _, a := range acks {
		if string(leaves[a.index]) != a.env {
			t.Fatalf("%s seq %d acknowledged at %d, but another leaf is there", a.iss, a.seq, a.index)
		}
	}
}

func TestSnapshotIsInstalledOnALaggingMember(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, func(c *Config) {
		c.SnapshotThreshold = 1 << 30 // only the explicit snapshot below
		c.TrailingLogs = 4
	})
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.Members[0].Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	converge(t, c.Members...)
	idx, cfg := aFollower(c)
	lagging := c.Members[idx]
	if err := lagging.Kill(); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader()
	for i := 1; i <= 30; i++ {
		if _, err := leader.Submit(ctx, p.batch(t, "440000", uint64(i), 2, i*2, hcx.Yellow, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Members[idx] = h
	converge(t, c.Members...)
	cur, err := os.ReadFile(filepath.Join(cfg.Dir, "fsm", currentFile))
	if err != nil {
		t.Fatalf("the lagging member never installed a snapshot: %v", err)
	}
	if strings.TrimSpace(string(cur)) == "fsm-0" {
		t.Fatal("the lagging member still runs its first state")
	}
	if err := h.Audit(ctx); err != nil {
		t.Fatal(err)
	}
	// And it goes on applying after the snapshot.
	if _, err := h.Submit(ctx, p.batch(t, "440000", 31, 1, 0, hcx.Red, 2)); err != nil {
		t.Fatal(err)
	}
	converge(t, c.Members...)
}

func TestSnapshotBelowTheDurableStateIsNotRestoredOverIt(t *testing.T) {
	p := newPKI(t, 1)
	dir := t.TempDir()
	h := startOne(t, p, dir, nil)
	ctx := ctxT(t, 20*time.Second)
	if _, err := h.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sink := &memSink{Buffer: &buf}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	for i := 1; i <= 3; i++ {
		if _, err := h.Submit(ctx, p.batch(t, "110000", uint64(i), 1, i, hcx.Red, 1)); err != nil {
			t.Fatal(err)
		}
	}
	before := h.State()
	if err := h.fsm.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if after := h.State(); after.Size != before.Size || !bytes.Equal(after.Root, before.Root) {
		t.Fatalf("an older snapshot rolled the tree back from %d to %d leaves", before.Size, after.Size)
	}
	h.Close()
}

type memSink struct{ *bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func TestALeafAlteredInOneMembersBadgerIsDetected(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Members[0].Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		if _, err := c.Members[0].Submit(ctx, p.batch(t, "510000", uint64(i), 2, i*2, hcx.Red, 1)); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, c.Members...)
	victim := c.Members[2]
	cfg := c.MemberConfig(2)
	cfg.RaftAddr = victim.RaftAddr()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	// Flip one character of leaf 3's signature, directly in badger.
	db, err := openBadger(filepath.Join(cfg.Dir, "fsm", "fsm-0"))
	if err != nil {
		t.Fatal(err)
	}
	txn := db.NewTransaction(true)
	it, err := txn.Get(keyLeaf(3))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := it.ValueCopy(nil)
	if v[len(v)-2] == 'A' {
		v[len(v)-2] = 'B'
	} else {
		v[len(v)-2] = 'A'
	}
	if err := txn.Set(keyLeaf(3), v); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Members[2] = h
	err = h.Audit(ctx)
	if err == nil || !strings.Contains(err.Error(), "leaf 3") {
		t.Fatalf("audit of the altered member: %v, want leaf 3 reported", err)
	}
	for _, m := range c.Members[:2] {
		if err := m.Audit(ctx); err != nil {
			t.Fatalf("%s: %v", m.ID(), err)
		}
	}
	// A follower of the log sees it too: the altered leaf's inclusion proof
	// against the honest members' root fails.
	es, err := h.Entries(ctx, 3, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	path, err := c.Members[0].InclusionProof(ctx, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if refVerifyInclusion(3, 7, []byte(es.Entries[0]), path, c.Members[0].State().Root) == nil {
		t.Fatal("the altered leaf verified against the honest root")
	}
}

func TestARevocationCommittedBeforeABatchAppliesMakesEveryMemberRefuseIt(t *testing.T) {
	p := newPKI(t, 3)
	c, ctx, leader := startTrusted(t, p, false)
	// The batch is verified against the trust state now (valid) ...
	b := p.batch(t, "440000", 1, 2, 0, hcx.Red, 1)
	if err := leader.verify(b); err != nil {
		t.Fatal(err)
	}
	// ... then a trust list revoking its signer from before the batch's
	// signed time commits ...
	rev := p.revocation(t, 2, "440000", time.Now().Add(-time.Minute))
	if _, err := leader.Submit(ctx, rev); err != nil {
		t.Fatal(err)
	}
	// ... and only then does the batch reach the log: the FSM refuses it.
	_, err := leader.apply(ctx, encodeEnvelope(time.Now(), b))
	var he *hcx.Error
	if !errors.As(err, &he) || he.Code != "key_revoked" {
		t.Fatalf("batch applied after its signer's revocation: got %v, want key_revoked", err)
	}
	leaves := converge(t, c.Members...)
	if len(leaves) != 2 {
		t.Fatalf("%d leaves, want the two trust lists only", len(leaves))
	}
	// Submitting it now is refused up front too.
	if _, err := c.Members[0].Submit(ctx, b); !errors.As(err, &he) || he.Code != "key_revoked" {
		t.Fatalf("got %v, want key_revoked", err)
	}
}

// A member that is persisting a snapshot when a newer one arrives must install
// it without waiting for its own snapshot: Raft releases that snapshot only
// after its main loop, which is blocked on the install, answers it.
func TestRestoreDoesNotWaitForAnOpenSnapshotOfTheOldState(t *testing.T) {
	p := newPKI(t, 1)
	ctx := ctxT(t, 20*time.Second)
	ahead := startOne(t, p, t.TempDir(), nil)
	persist := func() *bytes.Buffer {
		snap, err := ahead.fsm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Release()
		var b bytes.Buffer
		if err := snap.Persist(&memSink{Buffer: &b}); err != nil {
			t.Fatal(err)
		}
		return &b
	}
	if _, err := ahead.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	older := persist()
	for i := 1; i <= 3; i++ {
		if _, err := ahead.Submit(ctx, p.batch(t, "110000", uint64(i), 1, i, hcx.Red, 1)); err != nil {
			t.Fatal(err)
		}
	}
	newer := persist()

	// A bare state machine (Raft calls Snapshot and Restore from one
	// goroutine; here the test is that goroutine), one leaf behind.
	dir := t.TempDir()
	f, err := openFSM(dir, p.root.Cert.Raw, testLogger(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	if err := f.Restore(nopCloser{older}); err != nil {
		t.Fatal(err)
	}
	f.retired.Wait()
	first := filepath.Base(f.db.Opts().Dir)
	open, err := f.Snapshot() // held open across the next restore
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Restore(nopCloser{newer}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		open.Release() // let the restore and the cleanup finish
		<-done
		t.Fatal("restore was still waiting for the open snapshot of the old state after 10 s")
	}
	if got, want := f.size, ahead.State().Size; got != want || !bytes.Equal(f.root, ahead.State().Root) {
		t.Fatalf("after restore: %d leaves, want %d with the same root", got, want)
	}
	// The open snapshot still reads the old state, which is removed once it
	// is released.
	var old bytes.Buffer
	if err := open.Persist(&memSink{Buffer: &old}); err != nil {
		t.Fatalf("persist the snapshot of the replaced state: %v", err)
	}
	if size, _ := getBE8(old.Bytes()[len(snapMagic)+8 : len(snapMagic)+16]); size != 1 {
		t.Fatalf("the open snapshot holds %d leaves, want the old state's 1", size)
	}
	open.Release()
	f.retired.Wait()
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Fatalf("the replaced state %s is still on disk: %v", first, err)
	}
}
