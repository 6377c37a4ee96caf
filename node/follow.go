package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// followLoop reads the hub's log from where it stopped, re-verifies every
// leaf against the trust list in force at that point of the log, and folds
// colour batches into the foreign cache.
func (n *Node) followLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := n.applied.Load()
		page, err := n.cfg.Hub.Entries(ctx, start, 1000, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("reading the hub log failed; will retry", "start", start, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if page.Start != start || len(page.Entries) == 0 {
			continue
		}
		if err := n.apply(start, page); err != nil {
			n.log.Error("applying log entries failed; will retry", "start", start, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// apply folds log entries [start, start+len) into the store. Entries that do
// not verify are counted and skipped: the log is the hub's, the judgement is
// ours. Revocation is decided at each leaf's commit time (page.Times).
func (n *Node) apply(start uint64, page exchange.Entries) error {
	entries := page.Entries
	txn := n.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	// set writes in txn, committing and starting a new transaction when it
	// is full. Re-applying an entry after a crash is harmless: attestations
	// only ever replace lower per-subject sequences.
	set := func(key, val []byte) error {
		err := txn.Set(key, val)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = n.db.NewTransaction(true)
			err = txn.Set(key, val)
		}
		return err
	}
	for i, raw := range entries {
		idx := start + uint64(i)
		if err := n.applyEntry(txn, set, idx, raw, page.Committed(i)); err != nil {
			n.metrics.followRejected.Add(1)
			n.log.Warn("log entry rejected", "index", idx, "err", err)
		}
		if err := set([]byte(kFollowNext), u64b(idx+1)); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit log entries from %d: %w", start, err)
	}
	n.metrics.followApplied.Add(uint64(len(entries)))
	n.applied.Store(start + uint64(len(entries)))
	return nil
}

func (n *Node) applyEntry(txn *badger.Txn, set func(k, v []byte) error, idx uint64, raw string, committed time.Time) error {
	h, err := certs.ParseHeader(raw)
	if err != nil {
		return err
	}
	if h.Typ == exchange.HdrTrust {
		if _, err := exchange.ApplyTrustList(n.trust, raw); err != nil {
			return fmt.Errorf("trust list: %w", err)
		}
		return set([]byte(kTrustList), []byte(raw))
	}
	env, err := exchange.OpenLogged(n.trust, raw, committed)
	if err != nil {
		return err
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
		found, err := getJSON(txn, string(key), &cur)
		if err != nil {
			return err
		}
		if found && cur.N >= a.N {
			continue
		}
		val, err := jsonMarshal(exchange.LoggedAttestation{Iss: b.Iss, Attestation: a, Index: idx})
		if err != nil {
			return err
		}
		if err := set(key, val); err != nil {
			return err
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
