package node

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/witness"
)

// Every province node is a witness of the hub's log (issue 13, C2SP
// tlog-witness): hub members submit each new checkpoint to
// POST /v1/witness/add-checkpoint (api/node_witness.go) and the node
// cosigns it with its province signer if a consistency proof leads to it
// from the largest checkpoint it cosigned before. Its state is one key of
// the node's badger (synced writes), so a restart forgets nothing.
//
// Apart from cosigning, a node may require k cosignatures before it trusts
// a checkpoint (Config.Cosignatures): the follower then also checks its tree
// against the hub's newest witnessed checkpoint (logcheck.go), bundles carry
// that checkpoint (bundle.go), and Ready says checkpoint_unwitnessed when
// the node applied leaves no k-witnessed checkpoint covers for longer than
// unwitnessedBound. See docs/decisions.md "Issue 13: k of n at nodes and
// devices".

// kWitnessState is the node's witness state (witness.NewBadgerStore).
const kWitnessState = "meta/witness"

// unwitnessedBound is how long the node may hold applied leaves that no
// k-witnessed checkpoint covers before Ready refuses. The hub signs a
// checkpoint at most every second and pushes it to the witnesses at once;
// two minutes is many rounds of that, short enough for an operator to be
// told that the witnesses are not cosigning.
const unwitnessedBound = 2 * time.Minute

// maxCosignatures bounds Config.Cosignatures: a note carries at most 64
// signature lines, one of them the hub's.
const maxCosignatures = 63

// CodeUnwitnessed is the code of Ready's refusal when the node's tree is
// not covered by a checkpoint with Config.Cosignatures cosignatures.
const CodeUnwitnessed = "checkpoint_unwitnessed"

// ErrNoWitnessedCheckpoint says that a node requiring cosignatures holds no
// checkpoint with enough of them yet, so it makes no bundle.
var ErrNoWitnessedCheckpoint = &hcx.Error{Class: hcx.EUnavailable, Code: "no_witnessed_checkpoint",
	Message: "this node requires witness cosignatures and holds no checkpoint with enough of them yet; try again in a few seconds"}

func (c *Config) witnessDefaults() error {
	if c.Cosignatures < 0 || c.Cosignatures > maxCosignatures {
		return fmt.Errorf("node %s: cosignatures %d: want 0 (none required) to %d", c.Province, c.Cosignatures, maxCosignatures)
	}
	seen := map[string]bool{}
	for _, kid := range c.Witnesses {
		if kid == "" || seen[kid] {
			return fmt.Errorf("node %s: witnesses: %q is empty or named twice", c.Province, kid)
		}
		seen[kid] = true
	}
	if len(c.Witnesses) > 0 && c.Cosignatures > len(c.Witnesses) {
		return fmt.Errorf("node %s: %d cosignatures can never be met by the %d witnesses named", c.Province, c.Cosignatures, len(c.Witnesses))
	}
	return nil
}

// newWitness makes the node's witness: its province signer cosigns
// checkpoints signed by a hub key of the trust list in force at their time.
func (n *Node) newWitness() (*witness.Witness, error) {
	return witness.New(witness.Config{
		Signer:  n.cfg.Signer,
		LogKeys: func(at time.Time) []*ecdsa.PublicKey { return exchange.HubKeys(n.trust, at) },
		Store:   witness.NewBadgerStore(n.db, kWitnessState),
		Now:     n.cfg.Now,
		Logger:  n.cfg.Logger.With("component", "witness", "province", string(n.cfg.Province)),
	})
}

// Witness is the node's witness, for the add-checkpoint route.
func (n *Node) Witness() *witness.Witness { return n.witness }

// Witnesses are the witnesses whose cosignatures the node counts at at:
// every province and auditor certificate of the trust list not revoked by
// then, narrowed to Config.Witnesses when set.
func (n *Node) Witnesses(at time.Time) []exchange.Witness {
	return exchange.FilterWitnesses(exchange.WitnessesOf(n.trust, at), n.cfg.Witnesses)
}

// witnessesWith are Witnesses(at) and the witnesses that the root-signed
// trust lists among entries add (the first page of the log brings the
// first trust list).
func (n *Node) witnessesWith(at time.Time, entries []string) []exchange.Witness {
	ws := n.Witnesses(at)
	for _, e := range n.trustedIn(entries) {
		name := exchange.WitnessName(e.KID)
		if (e.Role != certs.RoleProvince && e.Role != certs.RoleAuditor) || slices.ContainsFunc(ws, func(w exchange.Witness) bool { return w.Name == name }) {
			continue
		}
		if len(n.cfg.Witnesses) == 0 || slices.Contains(n.cfg.Witnesses, e.KID) {
			ws = append(ws, exchange.Witness{Name: name, KID: e.KID, Key: e.PublicKey()})
		}
	}
	return ws
}

// CheckpointStatus is what the node reports of the checkpoints it holds.
type CheckpointStatus struct {
	// Size is the size of the newest hub checkpoint verified against the
	// node's tree (0: none yet).
	Size uint64 `json:"checkpoint_size"`
	// Cosignatures is k (Config.Cosignatures); Witnessed the size of the
	// newest checkpoint with k cosignatures the node holds, and
	// WitnessedTime its time. Empty when k is 0.
	Cosignatures  int        `json:"cosignatures,omitempty"`
	Witnessed     uint64     `json:"witnessed_size,omitempty"`
	WitnessedTime *time.Time `json:"witnessed_time,omitempty"`
}

// Checkpoints reports the checkpoints the node holds.
func (n *Node) Checkpoints() CheckpointStatus {
	n.treeMu.Lock()
	t := n.tree
	n.treeMu.Unlock()
	st := CheckpointStatus{Cosignatures: n.cfg.Cosignatures}
	if t.cp != nil {
		if cp, err := exchange.ParseCheckpoint([]byte(t.cp.Note)); err == nil {
			st.Size = cp.Size
		}
	}
	if t.wcp != nil {
		if cp, err := exchange.ParseCheckpoint([]byte(t.wcp.Note)); err == nil {
			st.Witnessed, st.WitnessedTime = cp.Size, &cp.Time
		}
	}
	return st
}

// witnessedReady is Ready's check when k > 0: the node's applied tree is
// covered by a k-witnessed checkpoint, or has not been ahead of one for
// longer than unwitnessedBound (entries do not wait for cosigning).
func (n *Node) witnessedReady() error {
	if n.cfg.Cosignatures == 0 {
		return nil
	}
	n.treeMu.Lock()
	t := n.tree
	n.treeMu.Unlock()
	size := t.rng.End()
	if size == 0 {
		return nil
	}
	k := n.cfg.Cosignatures
	if t.wcp == nil {
		return &hcx.Error{Class: hcx.EUnavailable, Code: CodeUnwitnessed,
			Message: fmt.Sprintf("the node applied %d log entries but holds no checkpoint with %d witness cosignatures", size, k)}
	}
	cp, err := exchange.ParseCheckpoint([]byte(t.wcp.Note))
	if err != nil || cp.Size >= size {
		return nil
	}
	since := n.unwitnessedSince.Load()
	if since == 0 {
		return nil
	}
	if lag := n.cfg.Now().Sub(time.Unix(0, since)); lag > unwitnessedBound {
		return &hcx.Error{Class: hcx.EUnavailable, Code: CodeUnwitnessed,
			Message: fmt.Sprintf("the node applied %d log entries; the newest checkpoint with %d witness cosignatures has %d, and none newer came for %s (bound %s)",
				size, k, cp.Size, lag.Round(time.Second), unwitnessedBound)}
	}
	return nil
}

// covered reports whether t's newest k-witnessed checkpoint covers every
// leaf of t.
func (t *logTree) covered() bool {
	if t.wcp == nil {
		return false
	}
	cp, err := exchange.ParseCheckpoint([]byte(t.wcp.Note))
	return err == nil && cp.Size >= t.rng.End()
}

// needsWitness says whether the follower should look for a newer
// witnessed checkpoint for the tree it applied: cosigning comes after the
// checkpoint, which comes after the entries, so the check made with a page
// usually finds the checkpoint before last.
func (n *Node) needsWitness() bool {
	if n.cfg.Cosignatures == 0 {
		return false
	}
	n.treeMu.Lock()
	defer n.treeMu.Unlock()
	return n.tree.rng.End() > 0 && !n.tree.covered()
}

// refreshWitnessed checks hub's newest witnessed checkpoint against the
// tree the node applied, with no new entries, and keeps it (stored in the
// follow position's place) if it is newer. It returns a *ForkError when the
// member's witnessed checkpoint contradicts the tree.
func (n *Node) refreshWitnessed(ctx context.Context, hub *exchange.HubClient) error {
	if !n.needsWitness() {
		return nil
	}
	n.treeMu.Lock()
	cur := n.tree
	n.treeMu.Unlock()
	wcp, err := n.checkWitnessed(ctx, hub, cur.wcp, cur, nil, nil, forkAt(hub, cur.rng.End()))
	if err != nil || wcp == nil || (cur.wcp != nil && wcp.Note == cur.wcp.Note) {
		n.noteWitnessed(cur)
		return err
	}
	b, err := json.Marshal(wcp)
	if err != nil {
		return err
	}
	if err := n.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(kFollowWitnessed), b) }); err != nil {
		return fmt.Errorf("store the witnessed checkpoint: %w", err)
	}
	n.treeMu.Lock()
	t := n.tree
	if t == cur { // the follower is the only writer; this is its own tree
		next := *cur
		next.wcp = wcp
		n.tree, t = &next, &next
	}
	n.treeMu.Unlock()
	n.noteWitnessed(t)
	return nil
}

// noteWitnessed records, after a page is applied, since when the tree has
// been ahead of its newest k-witnessed checkpoint.
func (n *Node) noteWitnessed(t *logTree) {
	if n.cfg.Cosignatures == 0 {
		return
	}
	switch {
	case t.covered():
		n.unwitnessedSince.Store(0)
	case n.unwitnessedSince.Load() == 0:
		n.unwitnessedSince.Store(n.cfg.Now().UnixNano())
	}
}

// witnessMetrics registers the witness's counters and the k-of-n gauges.
func (n *Node) witnessMetrics(s metricSet) {
	stats := func() witness.Stats { return n.witness.Stats() }
	s.counter("hcx_node_witness_cosigned_total", "Hub checkpoints this node cosigned as a witness.", func() uint64 { return stats().Cosigned })
	for _, r := range []struct {
		reason string
		v      func() uint64
	}{
		{"malformed", func() uint64 { return stats().Malformed }},
		{"unsigned", func() uint64 { return stats().Unsigned }},
		{"unknown_origin", func() uint64 { return stats().UnknownOrigin }},
		{"stale", func() uint64 { return stats().Stale }},
	} {
		s.with("reason", r.reason).counter("hcx_node_witness_refused_total", "Checkpoint submissions the witness refused, by reason (conflicts are counted apart).", r.v)
	}
	s.counter("hcx_node_witness_conflicts_total", "Hub-signed checkpoints that contradict one this node cosigned: evidence of a split view.", func() uint64 { return stats().Conflicts })
	if n.cfg.Cosignatures > 0 {
		s.gauge("hcx_node_witnessed_size", "Size of the newest checkpoint with the required cosignatures the node holds.", func() float64 { return float64(n.Checkpoints().Witnessed) })
		s.counter("hcx_node_witnessed_short_total", "Witnessed checkpoints fetched with fewer valid cosignatures than required.", n.metrics.witnessedShort.Load)
	}
}
