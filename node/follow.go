package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// followPage is how many entries the follower asks for at a time.
const followPage = 1000

// followLoop reads the hub's log from where it stopped, checks each page
// against the hub's signed checkpoint (logcheck.go), re-verifies every leaf
// against the trust list in force at that point of the log, and folds
// colour batches into the foreign cache. It reads from one member at a time
// and moves to the next when that member fails or forks; a forked member is
// never read again by this process.
func (n *Node) followLoop(ctx context.Context) {
	members := len(n.cfg.Hub.Members())
	forked := make([]bool, members)
	cur := 0
	// next moves to the next member that has not forked; false if none is left.
	next := func() bool {
		for i := 1; i <= members; i++ {
			if c := (cur + i) % members; !forked[c] {
				cur = c
				return true
			}
		}
		return false
	}
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	backoff := 100 * time.Millisecond
	// caughtUp: the node has read to the head of the log since it started
	// or since the last failure, said once at INFO (not after every page).
	caughtUp := false
	// tryNext logs a failure to read or check the log at a member, moves to
	// the next member and backs off; false when ctx is done.
	tryNext := func(msg, member string, start uint64, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		n.log.Warn(msg+"; trying the next member", "member", member, "start", start, "err", err, "retry_in", backoff)
		caughtUp = false
		next()
		if !wait(backoff) {
			return false
		}
		backoff = min(backoff*2, 5*time.Second)
		return true
	}
	// A member without a first checkpoint is asked again every
	// firstCheckpointPoll, up to maxSoonTries times in a row (a member
	// that never signs one must not hold the follower).
	const maxSoonTries = 50
	soonTries := 0
	atHead := func(size uint64) {
		if !caughtUp {
			caughtUp = true
			n.log.Info("caught up with the hub log", "size", size, "member", n.cfg.Hub.Member(cur).Members()[0])
		}
	}
	n.log.Info("following the hub log", "from", n.applied.Load(), "members", members)
	for ctx.Err() == nil {
		if members == 0 || forked[cur] {
			if !wait(forkRetry) {
				return
			}
			continue
		}
		hub := n.cfg.Hub.Member(cur)
		start := n.applied.Load()
		// While the tree is ahead of its k-witnessed checkpoint, the
		// follower comes back every second to look for a newer one.
		longPoll := 30 * time.Second
		if n.needsWitness() {
			longPoll = time.Second
		}
		page, err := hub.Entries(ctx, start, followPage, longPoll)
		if err == nil && page.Start != start {
			err = fmt.Errorf("asked for entries from %d, got a page from %d", start, page.Start)
		}
		if err == nil && len(page.Entries) > followPage {
			err = fmt.Errorf("asked for at most %d entries, got %d", followPage, len(page.Entries))
		}
		if err != nil {
			if !tryNext("reading the hub log failed", hub.Members()[0], start, err) {
				return
			}
			continue
		}
		// leave stops reading a member that forked.
		leave := func(fork *ForkError) {
			forked[cur] = true
			n.reportFork(fork)
			if !next() {
				n.log.Error("every hub member has forked; the node stops following the log", "members", members)
			}
		}
		var fork *ForkError
		if len(page.Entries) == 0 {
			atHead(start)
			if err := n.refreshWitnessed(ctx, hub); errors.As(err, &fork) {
				leave(fork)
			} else if err != nil {
				n.log.Debug("the member's witnessed checkpoint could not be checked", "member", hub.Members()[0], "err", err)
			}
			continue
		}
		tree, err := n.checkPage(ctx, hub, start, page.Entries)
		var unverified *unverifiedError
		switch {
		case errors.As(err, &fork):
			leave(fork)
			continue
		case errors.As(err, &unverified) && unverified.soon && soonTries < maxSoonTries:
			soonTries++
			n.log.Debug("the hub has no checkpoint yet; asking again shortly", "member", hub.Members()[0], "start", start)
			if !wait(firstCheckpointPoll) {
				return
			}
			continue
		case errors.As(err, &unverified):
			soonTries = 0
			if !tryNext("could not check the hub log", hub.Members()[0], start, err) {
				return
			}
			continue
		case err != nil:
			n.log.Error("checking log entries failed; will retry", "start", start, "err", err)
			if !wait(time.Second) {
				return
			}
			continue
		}
		backoff, soonTries = 100*time.Millisecond, 0
		if err := n.applyChecked(start, page, tree); err != nil {
			n.log.Error("applying log entries failed; will retry", "start", start, "err", err)
			if !wait(time.Second) {
				return
			}
			continue
		}
		if len(page.Entries) < followPage {
			atHead(tree.rng.End())
		}
		if f := n.fork.Load(); f != nil && f.Member != hub.Members()[0] {
			n.log.Info("following the hub log again from a member whose signed checkpoint checks out", "member", hub.Members()[0], "size", tree.rng.End(), "forked_member", f.Member)
			n.fork.Store(nil)
		}
	}
}

// apply folds log entries [start, start+len) into the store without the
// checkpoint check (tests feed it pages directly).
func (n *Node) apply(start uint64, page exchange.Entries) error {
	entries := page.Entries
	n.treeMu.Lock()
	cur := n.tree
	n.treeMu.Unlock()
	if cur.rng.End() != start {
		return fmt.Errorf("page starts at %d but the node's tree has %d leaves", start, cur.rng.End())
	}
	tree, err := cur.extend(entries)
	if err != nil {
		return err
	}
	return n.applyChecked(start, page, tree)
}

// applyChecked folds log entries [start, start+len) into the store, with
// tree, the node's tree extended by them, stored in the same transaction as
// the follow position. Entries that do not verify are counted and skipped:
// the log is the hub's, the judgement is ours. A storage error stops the
// page: the follow position and the tree stay at start (what was spilled
// before it is re-applied, harmlessly, on the next try).
// Revocation is decided at each leaf's commit time (page.Times).
func (n *Node) applyChecked(start uint64, page exchange.Entries, tree *logTree) error {
	entries := page.Entries
	end := start + uint64(len(entries))
	if tree.rng.End() != end {
		return fmt.Errorf("the tree for entries %d..%d has %d leaves", start, end, tree.rng.End())
	}
	w := &followTxn{db: n.db, txn: n.db.NewTransaction(true), stats: &n.stats}
	defer func() { w.txn.Discard() }()
	for i, raw := range entries {
		idx := start + uint64(i)
		if err := n.applyEntry(w, idx, raw, page.Committed(i)); err != nil {
			var se *storageError
			if errors.As(err, &se) {
				return fmt.Errorf("apply log entry %d: %w", idx, se.err)
			}
			n.metrics.followRejected.Add(1)
			n.log.Warn("log entry rejected", "index", idx, "err", err)
		}
	}
	if err := w.set([]byte(kFollowTree), tree.encode()); err != nil {
		return fmt.Errorf("apply log entries from %d: %w", start, err)
	}
	for key, cp := range map[string]*treeCheckpoint{kFollowCheckpoint: tree.cp, kFollowWitnessed: tree.wcp} {
		if cp == nil {
			continue
		}
		b, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		if err := w.set([]byte(key), b); err != nil {
			return fmt.Errorf("apply log entries from %d: %w", start, err)
		}
	}
	if err := w.set([]byte(kFollowNext), u64b(end)); err != nil {
		return fmt.Errorf("apply log entries from %d: %w", start, err)
	}
	if err := w.txn.Commit(); err != nil {
		return fmt.Errorf("commit log entries from %d: %w", start, err)
	}
	w.counted()
	if w.risk {
		if err := n.loadRiskSet(); err != nil {
			return fmt.Errorf("reload risk areas: %w", err)
		}
		n.pokeRisk()
	}
	if w.expo {
		n.pokeExposures()
	}
	n.treeMu.Lock()
	n.tree = tree
	n.treeMu.Unlock()
	n.noteWitnessed(tree)
	n.metrics.followApplied.Add(uint64(len(entries)))
	n.observeFollowLag(page)
	n.applied.Store(end)
	return nil
}

// followTxn is the follower's write transaction. When badger says it is
// full, it commits and carries on in a new one; every read and write of an
// entry goes through it, so an entry always reads the live transaction,
// which holds what it and the entries before it wrote. Spilled commits hold
// cache entries only: the follow position is written once, with the last
// commit of a page. Re-applying an entry after a crash is harmless:
// attestations only ever replace lower per-subject sequences, and doses
// (applyVax, which commits early under the doses' subjects' locks) are
// keyed by province and record id and recorded once.
type followTxn struct {
	db   *badger.DB
	txn  *badger.Txn
	risk bool // risk areas changed (riskareas.go)
	expo bool // exposures changed: matching jobs stored (exposures.go)
	// stats receives pending once the transaction that wrote what they
	// count commits (nil: counts are dropped, as in tests applying by hand).
	stats   *statState
	pending []pendingStat
}

type pendingStat struct {
	at           time.Time
	group, value string
}

// count adds one to a statistic when the current transaction commits.
func (w *followTxn) count(at time.Time, group, value string) {
	w.pending = append(w.pending, pendingStat{at, group, value})
}

// counted hands the pending counts to the statistics after a commit.
func (w *followTxn) counted() {
	if w.stats != nil {
		for _, p := range w.pending {
			w.stats.count(p.at, p.group, p.value)
		}
	}
	w.pending = w.pending[:0]
}

func (w *followTxn) set(key, val []byte) error {
	err := w.txn.Set(key, val)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err := w.commit(); err != nil {
			return err
		}
		err = w.txn.Set(key, val)
	}
	return err
}

// setTTL is set, for a key that badger drops after ttl.
func (w *followTxn) setTTL(key, val []byte, ttl time.Duration) error {
	e := badger.NewEntry(key, val).WithTTL(ttl)
	err := w.txn.SetEntry(e)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err := w.commit(); err != nil {
			return err
		}
		err = w.txn.SetEntry(badger.NewEntry(key, val).WithTTL(ttl))
	}
	return err
}

// commit commits what the transaction holds so far and carries on in a
// new one.
func (w *followTxn) commit() error {
	if err := w.txn.Commit(); err != nil {
		return err
	}
	w.counted()
	w.txn = w.db.NewTransaction(true)
	return nil
}

// storageError marks a failure of the node's own store, as opposed to an
// entry that does not verify.
type storageError struct{ err error }

func (e *storageError) Error() string { return "node store: " + e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

func stored(err error) error {
	if err == nil {
		return nil
	}
	return &storageError{err}
}

func (n *Node) applyEntry(w *followTxn, idx uint64, raw string, committed time.Time) error {
	h, err := certs.ParseHeader(raw)
	if err != nil {
		return err
	}
	if h.Typ == exchange.HdrTrust {
		if _, err := exchange.ApplyTrustList(n.trust, raw); err != nil {
			return fmt.Errorf("trust list: %w", err)
		}
		return stored(w.set([]byte(kTrustList), []byte(raw)))
	}
	env, err := exchange.OpenLogged(n.trust, raw, committed)
	if err != nil {
		return err
	}
	if env.Typ == exchange.TypVax {
		return n.applyVax(w, env)
	}
	if env.Typ == exchange.TypBoxKey {
		return n.applyBoxKey(w, env)
	}
	if env.Typ == exchange.TypReceipts {
		return n.applyReceipts(w, idx, env)
	}
	if env.Typ == exchange.TypRiskAreas {
		changed, err := n.applyRiskAreas(w, env)
		w.risk = w.risk || changed
		return err
	}
	if env.Typ == exchange.TypExposures {
		changed, err := n.applyExposures(w, env)
		w.expo = w.expo || changed
		return err
	}
	if env.Typ == exchange.TypAuditHead {
		// A province's trail head (its own or another's) changes no
		// colour: it is there for the auditor. It is verified above like
		// every leaf, and skipped.
		return nil
	}
	if env.Typ != exchange.TypBatch {
		return nil
	}
	b, err := exchange.DecodeBatch(env)
	if err != nil {
		return err
	}
	for _, a := range b.Atts {
		key := []byte(pForeign + string(a.Subject) + "/" + string(b.Iss))
		var cur exchange.LoggedAttestation
		found, err := getJSON(w.txn, string(key), &cur)
		if err != nil {
			return stored(fmt.Errorf("read %s: %w", key, err))
		}
		if found && cur.N >= a.N {
			continue
		}
		val, err := jsonMarshal(exchange.LoggedAttestation{Iss: b.Iss, Attestation: a, Index: idx})
		if err != nil {
			return stored(err)
		}
		if err := w.set(key, val); err != nil {
			return stored(err)
		}
	}
	return nil
}

// restoreTrust re-applies the newest trust list seen in the log, so that a
// restarted node verifies with what it trusted before.
func (n *Node) restoreTrust() error {
	var raw []byte
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kTrustList))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		raw, err = item.ValueCopy(nil)
		return err
	})
	if err != nil || raw == nil {
		return err
	}
	if _, err := exchange.ApplyTrustList(n.trust, string(raw)); err != nil {
		return fmt.Errorf("restore trust list: %w", err)
	}
	return nil
}

// Applied is the size of the log prefix the node's cache reflects.
func (n *Node) Applied() uint64 { return n.applied.Load() }
