package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// Limits on a page of entries.
const (
	DefaultEntriesLimit = 100
	MaxEntriesLimit     = 1000
	MaxWait             = 60 * time.Second
)

// Entries returns up to limit leaves from start, as applied on this member,
// with each leaf's commit time (Times, Unix seconds; 0 for a leaf logged
// before commit times were recorded); with wait > 0 it blocks until the leaf
// at start exists or wait passes. Size is the member's tree size when read.
func (h *Hub) Entries(ctx context.Context, start uint64, limit int, wait time.Duration) (exchange.Entries, error) {
	if limit <= 0 {
		limit = DefaultEntriesLimit
	}
	limit = min(limit, MaxEntriesLimit)
	wait = min(wait, MaxWait)
	st := h.fsm.waitSize(ctx, start, wait)
	es, times, err := h.fsm.entries(start, limit, st.Size)
	if err != nil {
		return exchange.Entries{}, err
	}
	return exchange.Entries{Start: start, Entries: es, Times: times, Size: st.Size}, nil
}

// Subject returns the latest attestation per issuer about sub, as applied
// on this member; Applied is the tree size the answer reflects (every
// attestation's index is below it).
func (h *Hub) Subject(ctx context.Context, sub hcx.Subject) (exchange.SubjectAnswer, error) {
	if err := sub.Validate(); err != nil {
		return exchange.SubjectAnswer{}, err
	}
	atts, err := h.fsm.subject(string(sub))
	if err != nil {
		return exchange.SubjectAnswer{}, err
	}
	st, _ := h.fsm.state()
	return exchange.SubjectAnswer{Applied: st.Size, Attestations: atts}, nil
}

// Trust returns the newest trust-list envelope in the log; hcx.ErrNotFound
// (class not_found) when none has committed yet.
func (h *Hub) Trust(ctx context.Context) (string, error) {
	b, err := h.fsm.trust()
	if err != nil {
		return "", err
	}
	if b == nil {
		return "", &hcx.Error{Class: hcx.ENotFound, Code: "no_trust_list", Message: "no trust list has been published to the log yet", Err: hcx.ErrNotFound}
	}
	return string(b), nil
}

// Checkpoint returns the newest committed checkpoint note, byte-identical on
// every member that has applied it.
func (h *Hub) Checkpoint(ctx context.Context) ([]byte, error) {
	b, err := h.fsm.get(keyCP)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, &hcx.Error{Class: hcx.ENotFound, Code: "no_checkpoint", Message: "no checkpoint has been committed yet", Err: hcx.ErrNotFound}
	}
	return b, nil
}

// CheckpointAt returns the checkpoint committed for exactly size leaves.
func (h *Hub) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	b, err := h.fsm.get(keyCPAt(size))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, &hcx.Error{Class: hcx.ENotFound, Code: "no_checkpoint", Message: "no checkpoint at that size", Err: hcx.ErrNotFound}
	}
	return b, nil
}

// InclusionProof proves leaf index is in the tree of size leaves.
func (h *Hub) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	return h.fsm.inclusion(index, size)
}

// ConsistencyProof proves the tree of size from is a prefix of the tree of
// size to.
func (h *Hub) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	return h.fsm.consistency(from, to)
}

// State is this member's applied state.
func (h *Hub) State() State {
	st, _ := h.fsm.state()
	return st
}

// ClusterStatus is GET /v1/cluster.
type ClusterStatus struct {
	ID           string   `json:"id"`
	State        string   `json:"state"`
	Leader       string   `json:"leader"`
	LeaderAPI    string   `json:"leader_api,omitempty"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	TreeSize     uint64   `json:"tree_size"`
	Checkpoint   uint64   `json:"checkpoint_size"`
	Members      []Member `json:"members"`
}

// Status reports members, leader, term, commit and applied index.
func (h *Hub) Status(ctx context.Context) (ClusterStatus, error) {
	st, _ := h.fsm.state()
	api, leader := h.leaderAPI()
	cs := ClusterStatus{ID: h.cfg.ID, State: h.raft.State().String(), Leader: leader, LeaderAPI: api,
		Term: h.raft.CurrentTerm(), CommitIndex: h.raft.CommitIndex(), AppliedIndex: st.Applied,
		TreeSize: st.Size, Checkpoint: st.CheckpointSize, Members: []Member{}}
	f := h.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return cs, err
	}
	meta, err := h.fsm.members()
	if err != nil {
		return cs, err
	}
	for _, s := range f.Configuration().Servers {
		m := meta[string(s.ID)]
		m.ID, m.RaftAddr = string(s.ID), string(s.Address)
		m.Suffrage = "voter"
		if s.Suffrage != raft.Voter {
			m.Suffrage = "nonvoter"
		}
		cs.Members = append(cs.Members, m)
	}
	return cs, nil
}

// Ready codes of the hub's /readyz refusals.
const (
	// CodeNoLeader: this member knows no leader (before bootstrap, or a
	// member cut off from a quorum of its peers).
	CodeNoLeader = "no_leader"
	// CodeCatchingUp: a leader is known but this member has applied less
	// than was committed (readyLag behind or more).
	CodeCatchingUp = "catching_up"
)

// readyLag is how many committed entries a member may not yet have applied
// and still count as ready.
const readyLag = 64

// Ready reports whether a leader is known and this member has applied what
// was committed when asked (within readyLag): nil when ready, otherwise an
// *hcx.Error of class EUnavailable coded CodeNoLeader or CodeCatchingUp
// whose message says what to check.
func (h *Hub) Ready() error {
	if api, id := h.leaderAPI(); api == "" {
		msg := "this member knows no Raft leader: the cluster is not bootstrapped yet, or this member cannot reach a majority of its peers (check that they run and that their Raft addresses are reachable)"
		if id != "" {
			msg = fmt.Sprintf("the Raft leader %s has not announced its API address yet (wait, or check the leader's log)", id)
		}
		return &hcx.Error{Class: hcx.EUnavailable, Code: CodeNoLeader, Message: msg}
	}
	applied, commit := h.raft.AppliedIndex(), h.raft.CommitIndex()
	if applied+readyLag < commit {
		return &hcx.Error{Class: hcx.EUnavailable, Code: CodeCatchingUp,
			Message: fmt.Sprintf("this member has applied Raft index %d of %d committed; it is catching up (wait; if it does not move, check its disk and its link to the leader)", applied, commit)}
	}
	return nil
}

// checkpointer runs on every member; while it leads, it commits a signed
// checkpoint every CheckpointEvery and whenever CheckpointLeaves leaves have
// been appended since the last one.
func (h *Hub) checkpointer() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		case <-h.fsm.cpKick:
		}
		if !h.IsLeader() {
			continue
		}
		committed, err := h.commitCheckpoint()
		if err != nil {
			h.log.Debug("checkpoint", "err", err)
		}
		// After a new checkpoint, and on ticks while a witness is behind.
		h.startCosignRound(committed)
	}
}

// commitCheckpoint signs and commits a checkpoint of the tree if it grew;
// committed says whether it did.
func (h *Hub) commitCheckpoint() (committed bool, err error) {
	st, _ := h.fsm.state()
	if st.Size == 0 || st.Size <= st.CheckpointSize {
		return false, nil
	}
	note, err := exchange.SignCheckpoint(h.cfg.Signer, st.Size, st.Root, h.cfg.Now())
	if err != nil {
		return false, err
	}
	res, err := h.applyCmd(encodeCmd(cmdCheckpoint, note))
	return err == nil && !res.Dup, err
}

// Sync makes this member's next reads linearizable: it returns once the
// member has applied every write the leader had committed when Sync was
// called (Raft's read-index, with a barrier at the leader). Reads without
// Sync are served from the applied state as it is, and say its size.
func (h *Hub) Sync(ctx context.Context) (State, error) {
	var target uint64
	for attempt := 0; ; attempt++ {
		var err error
		if h.IsLeader() {
			target, err = h.readIndex()
		} else if addr, _ := h.raft.LeaderWithID(); addr == "" {
			err = hcx.ErrNotLeader
		} else {
			var a internalAnswer
			a, err = h.post(ctx, string(addr), routeReadIndex, nil)
			target = a.Commit
		}
		if err == nil {
			break
		}
		if !retryable(err) {
			return State{}, classify(err)
		}
		select {
		case <-ctx.Done():
			return State{}, classify(fmt.Errorf("%w: no leader answered the read index: %v", hcx.ErrNotLeader, ctx.Err()))
		case <-h.done:
			return State{}, classify(ErrClosed)
		case <-time.After(backoff(attempt + 1)):
		}
	}
	for {
		st, ch := h.fsm.state()
		if st.Applied >= target {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, classify(fmt.Errorf("%w: waiting to apply index %d: %v", hcx.ErrNotLeader, target, ctx.Err()))
		case <-h.done:
			return st, classify(ErrClosed)
		}
	}
}

// readIndex, at the leader: a barrier (which commits only while this member
// still leads) and then the FSM's applied index, which covers every write
// acknowledged before the call.
func (h *Hub) readIndex() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ApplyTimeout)
	defer cancel()
	if err := h.await(ctx, h.raft.Barrier(h.cfg.ApplyTimeout)); err != nil {
		return 0, err
	}
	st, _ := h.fsm.state()
	return st.Applied, nil
}
