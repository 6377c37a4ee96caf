package consensus

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// fastTune makes checkpoints frequent so tests see them quickly.
func fastTune(c *Config) {
	c.CheckpointEvery = 100 * time.Millisecond
	c.CheckpointLeaves = 8
}

func startCluster(t testing.TB, p *pki, n int, withTLS bool, tune func(*Config)) *Cluster {
	t.Helper()
	cc := ClusterConfig{N: n, Dir: t.TempDir(), RootDER: p.root.Cert.Raw, Signers: p.hubs, Logger: testLogger(t), NoAPI: true, InsecurePlaintext: !withTLS,
		Tune: func(c *Config) {
			fastTune(c)
			if tune != nil {
				tune(c)
			}
		}}
	if withTLS {
		for i := 0; i < n; i++ {
			cc.TLS = append(cc.TLS, hubTLS(t, p.root, fmt.Sprintf("hub-%d", i+1)))
		}
	}
	c, err := StartCluster(ctxT(t, 30*time.Second), cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// leaves reads every leaf a member has applied.
func leavesOf(t testing.TB, h *Hub) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		es, err := h.Entries(context.Background(), uint64(len(out)), 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(es.Entries) == 0 {
			return out
		}
		for _, e := range es.Entries {
			out = append(out, []byte(e))
		}
	}
}

// converge waits until every member has applied what the leader committed,
// then checks that they hold the same leaves and that each member's root is
// the root an independent verifier computes from those leaves.
// aFollower picks a member that does not lead and the configuration that
// reopens it from its directory on its own Raft address.
func aFollower(c *Cluster) (int, Config) {
	idx := 0
	for i, h := range c.Members {
		if !h.IsLeader() {
			idx = i
		}
	}
	cfg := c.MemberConfig(idx)
	cfg.RaftAddr = c.Members[idx].RaftAddr()
	return idx, cfg
}

func converge(t testing.TB, hubs ...*Hub) [][]byte {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	for _, h := range hubs {
		if _, err := h.Sync(ctx); err != nil {
			t.Fatalf("%s: sync: %v", h.ID(), err)
		}
	}
	var ref [][]byte
	for i, h := range hubs {
		ls := leavesOf(t, h)
		if i == 0 {
			ref = ls
		} else if len(ls) != len(ref) {
			t.Fatalf("%s has %d leaves, %s has %d", h.ID(), len(ls), hubs[0].ID(), len(ref))
		} else {
			for j := range ls {
				if !bytes.Equal(ls[j], ref[j]) {
					t.Fatalf("%s and %s differ at leaf %d", h.ID(), hubs[0].ID(), j)
				}
			}
		}
		if got, want := h.State().Root, refRoot(ls); !bytes.Equal(got, want) {
			t.Fatalf("%s: root differs from the independent verifier's", h.ID())
		}
	}
	return ref
}

func TestClusterOverTLSForwardsWritesServesIdenticalCheckpointsAndProvableLeaves(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, true, nil)
	ctx := ctxT(t, 30*time.Second)
	leader := c.Leader()
	var follower *Hub
	for _, h := range c.Members {
		if h != leader {
			follower = h
			break
		}
	}
	st, err := follower.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 3 || st.Leader != leader.ID() || st.LeaderAPI != leader.URL() {
		t.Fatalf("status from a follower: %+v", st)
	}
	for _, m := range st.Members {
		if m.Suffrage != "voter" || m.API == "" {
			t.Fatalf("member %+v: want a voter with an API address", m)
		}
	}
	// The trust list and the batches go in through followers: forwarded.
	if _, err := follower.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	provs := []hcx.ProvinceCode{"110000", "440000", "510000"}
	for i := 0; i < 12; i++ {
		h := c.Members[i%3]
		b := p.batch(t, provs[i%3], uint64(i/3+1), 4, i*4, hcx.Red, 1)
		r, err := h.Submit(ctx, b)
		if err != nil {
			t.Fatalf("batch %d via %s: %v", i, h.ID(), err)
		}
		if r.Index != uint64(i+1) {
			t.Fatalf("batch %d got index %d", i, r.Index)
		}
	}
	leaves := converge(t, c.Members...)
	if len(leaves) != 13 {
		t.Fatalf("%d leaves, want 13", len(leaves))
	}
	// A checkpoint for the whole tree commits and is byte-identical
	// everywhere, signed by a hub key, over the root of the leaves.
	var notes [][]byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		notes = notes[:0]
		for _, h := range c.Members {
			if n, err := h.Checkpoint(ctx); err == nil {
				notes = append(notes, n)
			}
		}
		if len(notes) == 3 && bytes.Equal(notes[0], notes[1]) && bytes.Equal(notes[1], notes[2]) {
			if cp, _ := exchange.ParseCheckpoint(notes[0]); cp != nil && cp.Size == 13 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no identical checkpoint of size 13 on all members")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cp, err := exchange.ParseCheckpoint(notes[0])
	if err != nil {
		t.Fatal(err)
	}
	keys := []*certs.Signer{p.hubs[0], p.hubs[1], p.hubs[2]}
	if err := cp.Verify(keys[0].Public(), keys[1].Public(), keys[2].Public()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cp.Root, refRoot(leaves)) {
		t.Fatal("checkpoint root is not the root of the leaves")
	}
	// Every inclusion proof at several sizes, and consistency between them,
	// check out with the independent verifier, from any member.
	for _, size := range []uint64{1, 2, 5, 8, 13} {
		root := refRoot(leaves[:size])
		for i := uint64(0); i < size; i++ {
			h := c.Members[int(i)%3]
			path, err := h.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := refVerifyInclusion(i, size, leaves[i], path, root); err != nil {
				t.Fatalf("inclusion %d in %d from %s: %v", i, size, h.ID(), err)
			}
		}
		for _, from := range []uint64{0, 1, 3, 4, 7, size} {
			if from > size {
				continue
			}
			path, err := c.Members[0].ConsistencyProof(ctx, from, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := refVerifyConsistency(from, size, path, refRoot(leaves[:from]), root); err != nil {
				t.Fatalf("consistency %d->%d: %v", from, size, err)
			}
		}
	}
	// A tampered proof fails the verifier (the verifier is not vacuous).
	path, _ := c.Members[0].InclusionProof(ctx, 3, 13)
	path[0] = refLeaf([]byte("forged"))
	if refVerifyInclusion(3, 13, leaves[3], path, refRoot(leaves)) == nil {
		t.Fatal("a forged inclusion proof verified")
	}
}

func TestMembersJoinAsNonVotersGetPromotedAndAreRemovedAndLeaderHandsOverOnClose(t *testing.T) {
	p := newPKI(t, 4)
	c := startCluster(t, p, 3, false, nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Members[1].Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	cfg := c.MemberConfig(3)
	cfg.Join = []string{c.Members[2].RaftAddr()}
	h4, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h4.Close()
	if err := h4.WaitVoter(ctx); err != nil {
		t.Fatal(err)
	}
	membersSeen(t, c.Members[0], 4)
	converge(t, append(c.Members, h4)...)
	if err := c.Members[0].RemoveMember(ctx, "hub-4"); err != nil {
		t.Fatal(err)
	}
	membersSeen(t, c.Members[0], 3)
	h4.Close()

	// Graceful close of the leader: leadership moves, writes go on.
	old := c.Leader()
	t0 := time.Now()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	var rest []*Hub
	for _, h := range c.Members {
		if h != old {
			rest = append(rest, h)
		}
	}
	for _, h := range rest {
		if err := h.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("new leader after %v", d)
	}
	if _, err := rest[0].Submit(ctx, p.batch(t, "440000", 1, 2, 0, hcx.Red, 1)); err != nil {
		t.Fatal(err)
	}
	converge(t, rest...)
}

func TestFollowerPartitionedThenHealedCatchesUp(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, nil)
	ctx := ctxT(t, 30*time.Second)
	leader := c.Leader()
	if _, err := leader.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	converge(t, c.Members...)
	var cut *Hub
	for _, h := range c.Members {
		if h != leader {
			cut = h
			break
		}
	}
	before := cut.State().Size
	cut.partition(true)
	for i := 1; i <= 10; i++ {
		if _, err := leader.Submit(ctx, p.batch(t, "510000", uint64(i), 3, i*3, hcx.Yellow, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if got := cut.State().Size; got != before {
		t.Fatalf("partitioned follower moved from %d to %d", before, got)
	}
	cut.partition(false)
	converge(t, c.Members...)
	if got := cut.State().Size; got != before+10 {
		t.Fatalf("healed follower has %d leaves, want %d", got, before+10)
	}
}

func TestMemberRestartedFromDiskKeepsItsStateAndCatchesUp(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, nil)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Members[0].Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := c.Members[i%3].Submit(ctx, p.batch(t, "110000", uint64(i), 2, i*2, hcx.Green, 1)); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, c.Members...)
	idx, cfg := aFollower(c)
	victim := c.Members[idx]
	applied := victim.State()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := 6; i <= 9; i++ {
		if _, err := c.Leader().Submit(ctx, p.batch(t, "110000", uint64(i), 2, i*2, hcx.Green, 1)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Members[idx] = h
	if got := h.State(); got.Applied < applied.Applied || got.Size < applied.Size {
		t.Fatalf("restarted member came back at %+v, before the kill it had %+v", got, applied)
	}
	converge(t, c.Members...)
	if err := h.Audit(ctx); err != nil {
		t.Fatal(err)
	}
}

// membersSeen waits until h's configuration lists n members, all voters.
func membersSeen(t *testing.T, h *Hub, n int) {
	t.Helper()
	var st ClusterStatus
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		st, _ = h.Status(context.Background())
		voters := 0
		for _, m := range st.Members {
			if m.Suffrage == "voter" {
				voters++
			}
		}
		if len(st.Members) == n && voters == n {
			return
		}
	}
	t.Fatalf("%s sees members %+v, want %d voters", h.ID(), st.Members, n)
}
