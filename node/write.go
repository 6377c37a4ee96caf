package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// The node's write path (docs/decisions.md, "Ingest"):
//
//   - Writes about one resident are serialised by that resident's stripe of
//     a fixed array of mutexes, so different residents proceed in parallel
//     and memory stays bounded whatever the number of residents.
//   - Nothing every transaction reads and writes: events need no sequence
//     number (a resident's history is one bounded value), and outbox
//     sequence numbers come from memory, kept by the committer and recovered
//     at open from meta/outbox-next, which it writes with every entry.
//   - Group commit: ingests read and decide in parallel, then hand their
//     writes to one committer, which commits every write waiting in one
//     synced transaction. (badger alone does not group synced commits: it
//     syncs its write-ahead log once per transaction.)
//   - At most Config.MaxPendingWrites ingests are in flight; beyond that a
//     caller waits up to a second and then gets ErrBusy (503).

// lockStripes is the number of resident locks; two residents share a lock
// with probability 1/lockStripes.
const lockStripes = 1024

type subjectLocks [lockStripes]sync.Mutex

// of is the lock that serialises writes about sub.
func (l *subjectLocks) of(sub hcx.Subject) *sync.Mutex { return &l[stripe(sub)] }

func stripe(sub hcx.Subject) uint32 {
	h := fnv.New32a()
	h.Write([]byte(sub))
	return h.Sum32() % lockStripes
}

// ofAll locks the locks of every resident in subs, each stripe once and in
// stripe order (so that two callers never wait for each other), and returns
// the function that unlocks them.
func (l *subjectLocks) ofAll(subs []hcx.Subject) (unlock func()) {
	var held [lockStripes]bool
	for _, sub := range subs {
		held[stripe(sub)] = true
	}
	for i := range held {
		if held[i] {
			l[i].Lock()
		}
	}
	return func() {
		for i := range held {
			if held[i] {
				l[i].Unlock()
			}
		}
	}
}

// ErrBusy is returned when more writes wait for the disk than the node
// allows: back-pressure, so that a burst cannot queue without bound.
// Its "retry_after" detail makes the API answer with Retry-After.
var ErrBusy = &hcx.Error{Class: hcx.EUnavailable, Code: "busy", Message: "the node has too many writes waiting for its disk; retry in a second",
	Detail: map[string]any{"retry_after": 1}}

// busyWait is how long a write waits for a free slot before ErrBusy.
const busyWait = time.Second

// admit takes one of the node's in-flight write slots for a request; call
// the returned function to give it back.
func (n *Node) admit(ctx context.Context) (func(), error) {
	t := time.NewTimer(busyWait)
	defer t.Stop()
	return n.admitWithin(ctx, t.C)
}

// admitBackground takes a write slot for the node's own work (the scheduler,
// a bulk re-decision): it waits as long as ctx lasts, never ErrBusy, so that
// requests and background work share one bound.
func (n *Node) admitBackground(ctx context.Context) (func(), error) {
	return n.admitWithin(ctx, nil)
}

// admitWithin takes a write slot, waiting until busy fires (nil: never).
func (n *Node) admitWithin(ctx context.Context, busy <-chan time.Time) (func(), error) {
	if n.closing.Load() {
		return nil, ErrClosed
	}
	free := func() { <-n.slots }
	select {
	case n.slots <- struct{}{}:
	default:
		select {
		case n.slots <- struct{}{}:
		case <-busy:
			return nil, ErrBusy
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if n.closing.Load() {
		free()
		return nil, ErrClosed
	}
	return free, nil
}

// write is the writes of one caller, committed together: keys to delete,
// keys and values to set (after the deletes), and attestations for the
// outbox, to which the committer gives their sequence numbers. An ingest
// writes one resident; a chunk of the scheduler or of a bulk re-decision
// writes many.
//
// Every write is either a caller's, with the audit entry of the act (entry,
// see audit.go), or the node's own background work, named by system (the
// scheduler's and a rule change's re-decisions); the committer refuses any
// other.
type write struct {
	dels   [][]byte
	sets   []kv
	atts   []*hcx.Attestation
	entry  *AuditEntry
	more   []*AuditEntry // further entries of the same act (also) or of a batch (recordMore)
	system string
	bytes  int
	done   chan error
}

type kv struct {
	k, v []byte
	ttl  time.Duration // 0: kept for good
	exp  uint64        // badger expiry, Unix seconds (0: by ttl); set by setExpires
}

func (w *write) setJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	w.set(key, b)
	return nil
}

func (w *write) attest(att *hcx.Attestation) {
	w.atts = append(w.atts, att)
	w.bytes += 512
}

func (w *write) del(key []byte) {
	w.dels = append(w.dels, key)
	w.bytes += len(key) + 64
}

func (w *write) set(key string, v []byte) {
	w.sets = append(w.sets, kv{k: []byte(key), v: v})
	w.bytes += len(key) + len(v) + 64
}

// setTTL sets a key that badger drops after ttl (retention).
func (w *write) setTTL(key string, v []byte, ttl time.Duration) {
	w.sets = append(w.sets, kv{k: []byte(key), v: v, ttl: ttl})
	w.bytes += len(key) + len(v) + 64
}

// setExpires sets a key that badger drops at the given time (retention
// counted from when the data was, not when it was written: a stay index
// entry lives as long as the stay).
func (w *write) setExpires(key string, v []byte, at time.Time) {
	w.sets = append(w.sets, kv{k: []byte(key), v: v, exp: uint64(max(at.Unix(), 1))})
	w.bytes += len(key) + len(v) + 64
}

// Bounds of one group commit, well inside badger's transaction limits
// (about 2.4 MB and 24,000 entries with the node's 16 MB memtables).
const (
	maxGroupWrites = 1024
	maxGroupBytes  = 1 << 20
)

// ErrClosed is returned by writes after Close.
var ErrClosed = hcx.Errorf(hcx.EUnavailable, "closed", "the node is shutting down; retry at another node or after it restarts")

// write hands w to the committer and waits until it is synced. It waits even
// if the caller's context ends: the caller holds the resident's lock, and
// releasing it before the outcome is known could let the next event read a
// stale state.
func (n *Node) write(w *write) error {
	w.done = make(chan error, 1)
	select {
	case n.writes <- w:
	case <-n.quit:
		return ErrClosed
	}
	return <-w.done
}

// commitLoop is the committer: it takes every write waiting, commits them in
// one synced transaction, answers each, and starts again. While one group is
// being synced the next one gathers, so the busier the node, the more writes
// share a sync. It is the only writer of outbox entries, so outbox sequence
// numbers follow commit order: a reader that sees entry s sees every entry
// before it, and the publisher's "delete up to the last one I sent" never
// deletes one it did not send.
func (n *Node) commitLoop() {
	defer close(n.committed)
	for {
		var group []*write
		select {
		case w := <-n.writes:
			group = append(group, w)
		case <-n.quit:
			// Close waited for every writer; nothing is left.
			return
		}
		size := group[0].bytes
	gather:
		for len(group) < maxGroupWrites && size < maxGroupBytes {
			select {
			case w := <-n.writes:
				group = append(group, w)
				size += w.bytes
			default:
				break gather
			}
		}
		n.commitGroup(group)
	}
}

// commitGroup commits group in one transaction and answers each write. A
// write with neither an audit entry nor a system name is refused alone.
func (n *Node) commitGroup(group []*write) {
	ok := group[:0:0]
	for _, w := range group {
		if w.entry == nil && w.system == "" {
			w.done <- errNoAuditEntry
			continue
		}
		ok = append(ok, w)
	}
	if group = ok; len(group) == 0 {
		return
	}
	err := n.commitOnce(group)
	if errors.Is(err, badger.ErrTxnTooBig) && len(group) > 1 {
		n.commitGroup(group[:len(group)/2])
		n.commitGroup(group[len(group)/2:])
		return
	}
	n.metrics.commits.Add(1)
	for _, w := range group {
		w.done <- err
	}
}

func (n *Node) commitOnce(group []*write) error {
	txn := n.db.NewTransaction(true)
	defer txn.Discard()
	next := n.outboxNext
	var decided int64 // when the group's decisions commit, for the publish lag
	for _, w := range group {
		for _, k := range w.dels {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for _, e := range w.sets {
			var err error
			switch {
			case e.exp > 0:
				ent := badger.NewEntry(e.k, e.v)
				ent.ExpiresAt = e.exp
				err = txn.SetEntry(ent)
			case e.ttl > 0:
				err = txn.SetEntry(badger.NewEntry(e.k, e.v).WithTTL(e.ttl))
			default:
				err = txn.Set(e.k, e.v)
			}
			if err != nil {
				return err
			}
		}
		for _, att := range w.atts {
			if decided == 0 {
				decided = n.cfg.Now().UnixNano()
			}
			if err := setJSON(txn, string(seqKey(pOutbox, next)), outboxEntry{Attestation: *att, Decided: decided}); err != nil {
				return err
			}
			next++
		}
	}
	if next != n.outboxNext {
		if err := setU64(txn, kOutboxNext, next); err != nil {
			return err
		}
	}
	auditNext, auditHead, err := n.appendAudit(txn, group, n.cfg.Now().UTC())
	if err != nil {
		return err
	}
	// The transaction only writes, so it cannot conflict; with SyncWrites
	// Commit returns once the group is on disk.
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit %d writes: %w", len(group), err)
	}
	n.outboxNext = next
	n.metrics.written.Add(uint64(bytesOf(group) + int(auditNext-n.auditNext)*auditEntryBytes))
	n.auditNext, n.auditHead = auditNext, auditHead
	n.metrics.auditSeq.Store(auditNext - 1)
	return nil
}

// auditEntryBytes is about the stored size of one audit entry, and
// attestationBytes of one outbox entry: what bytesOf counts for them.
const (
	auditEntryBytes  = 300
	attestationBytes = 350
)

// bytesOf is the key and value bytes group writes (audit entries apart).
func bytesOf(group []*write) int {
	b := 0
	for _, w := range group {
		for _, e := range w.sets {
			b += len(e.k) + len(e.v)
		}
		for _, k := range w.dels {
			b += len(k)
		}
		b += len(w.atts) * attestationBytes
	}
	return b
}
