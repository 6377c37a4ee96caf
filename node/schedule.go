package node

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// The due index: due/<unix seconds, 20 digits>/<sub> for every resident whose
// colour can change, or whose attestation must be renewed, with the passing
// of time alone. evaluate keeps it in the same transaction as the state, so
// it is exactly as durable; the scheduler re-decides the entries at or before
// its clock.
const pDue = "due/"

// dueBatch bounds how many residents one pass of the scheduler reads at once.
const dueBatch = 512

func dueKey(unix int64, sub hcx.Subject) []byte {
	return []byte(fmt.Sprintf("%s%020d/%s", pDue, unix, sub))
}

// dueAt is when a resident must be decided again without any new event: the
// earliest of a wait that ends, the time the next test may be taken, the
// renewal of its attestation and a daily re-check (rules whose conditions
// lapse with time). A green resident has nothing due: no attestation counts
// as green, and a green needs no renewal. The answer is always after now.
func (n *Node) dueAt(d *policy.Decision, st *colourState, now time.Time) int64 {
	if st.Colour == hcx.Green {
		return 0
	}
	due := now.Add(n.cfg.RecheckEvery)
	consider := func(t time.Time) {
		if t.After(now) && t.Before(due) {
			due = t
		}
	}
	if st.Exp > 0 {
		consider(time.Unix(st.Exp, 0).Add(-n.cfg.RenewBefore))
	}
	for _, c := range d.Release {
		switch c.Kind {
		case policy.CondWait:
			consider(c.Until)
		case policy.CondTests:
			consider(c.NotBefore)
		case policy.CondCheckIns:
			// The condition's "today's is done" is stale at local
			// midnight: decide again then (declare.go).
			consider(nextMidnight(now, n.rules.Load().rs.Location()))
		}
	}
	u := due.Unix()
	if due.Nanosecond() > 0 || u <= now.Unix() {
		u++ // never due at or before now: a pass always makes progress
	}
	return u
}

// setDue moves the resident's entry in the due index to unix (0: none).
func (n *Node) setDue(txn *badger.Txn, sub hcx.Subject, st *colourState, unix int64) error {
	if st.Due == unix {
		return nil
	}
	if st.Due != 0 {
		if err := txn.Delete(dueKey(st.Due, sub)); err != nil {
			return err
		}
	}
	if unix != 0 {
		if err := txn.Set(dueKey(unix, sub), nil); err != nil {
			return err
		}
	}
	st.Due = unix
	return nil
}

// RunDue re-decides every resident due at the node's clock (Config.Now):
// releases whose wait has ended, attestations that near their expiry, the
// daily re-check of colours other than green. Changes go to the outbox. It
// returns how many residents it decided. The scheduler in Run calls it every
// DueTick; tests call it after moving the clock.
func (n *Node) RunDue(ctx context.Context) (int, error) {
	now := n.cfg.Now().UTC()
	total, attested := 0, 0
	for ctx.Err() == nil {
		subs, keys, err := n.dueBefore(now)
		if err != nil {
			return total, err
		}
		if len(subs) == 0 {
			break
		}
		a, err := n.redecideChunk(ctx, subs, keys, n.rules.Load(), now)
		if err != nil {
			return total, err
		}
		total += len(subs)
		attested += a
	}
	if attested > 0 {
		n.pokePublisher()
	}
	if total > 0 {
		n.log.Info("scheduled re-decisions", "residents", total, "attestations", attested)
	}
	return total, ctx.Err()
}

// dueBefore reads up to dueBatch entries of the due index at or before now.
func (n *Node) dueBefore(now time.Time) (subs []hcx.Subject, keys [][]byte, err error) {
	limit := now.Unix()
	err = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pDue)})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(subs) < dueBatch; it.Next() {
			k := it.Item().KeyCopy(nil)
			rest := string(k[len(pDue):])
			if len(rest) < 22 || rest[20] != '/' {
				return fmt.Errorf("due index key %q is malformed", k)
			}
			unix, err := strconv.ParseInt(rest[:20], 10, 64)
			if err != nil {
				return fmt.Errorf("due index key %q: %w", k, err)
			}
			if unix > limit {
				break
			}
			subs = append(subs, hcx.Subject(rest[21:]))
			keys = append(keys, k)
		}
		return nil
	})
	return subs, keys, err
}

// redecideChunk decides the residents subs again and commits what changes
// through the committer (write.go), deleting the due keys given (nil for
// none); it returns how many attestations it wrote. It holds the residents'
// locks from the reads to the synced commit, like Ingest, and a write slot,
// so background work shares the node's bound on writes in flight.
func (n *Node) redecideChunk(ctx context.Context, subs []hcx.Subject, dueKeys [][]byte, rules *ruleSet, now time.Time) (int, error) {
	release, err := n.admitBackground(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	unlock := n.locks.ofAll(subs)
	defer unlock()
	// The node's own work: re-deciding by the rules in force is not an act
	// of a caller (the rule change that started it is in the trail).
	w := &write{system: "redecide"}
	for _, k := range dueKeys {
		w.del(k)
	}
	var attested int
	err = n.db.View(func(txn *badger.Txn) error {
		var err error
		attested, err = n.decideChunk(txn, w, subs, rules, now)
		return err
	})
	if err == nil && (len(w.sets) > 0 || len(w.dels) > 0) {
		err = n.write(w)
	}
	if err != nil {
		return 0, fmt.Errorf("re-decide %d residents from %s: %w", len(subs), subs[0], err)
	}
	return attested, nil
}

// decideChunk decides residents again from what txn reads, the histories
// through one iterator, and adds the writes to w. Subjects with no resident
// (a stale due entry) are skipped. It returns how many attestations it added.
func (n *Node) decideChunk(txn *badger.Txn, w *write, subs []hcx.Subject, rules *ruleSet, now time.Time) (int, error) {
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	attested := 0
	for _, sub := range subs {
		var rec residentRecord
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return 0, err
		}
		if !found {
			continue
		}
		var st colourState
		if _, err := getJSON(txn, pState+string(sub), &st); err != nil {
			return 0, err
		}
		facts, err := factsFrom(it, sub)
		if err != nil {
			return 0, err
		}
		a, err := n.decide(w, sub, &rec, &st, facts, rules, now)
		if err != nil {
			return 0, err
		}
		if a {
			attested++
		}
	}
	return attested, nil
}

// dueLoop runs the scheduler: once at start, then every DueTick.
func (n *Node) dueLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.DueTick)
	defer tick.Stop()
	for {
		if _, err := n.RunDue(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("scheduled re-decisions failed; will retry at the next tick", "err", err, "tick", n.cfg.DueTick)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
