package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// pendingBatch is a batch that was signed and may have been submitted, but
// whose acknowledgement has not been recorded. It is stored before the first
// submission, so a restart resubmits the very same bytes and the hub's
// idempotency returns the same leaf: nothing is lost or published twice.
type pendingBatch struct {
	Seq        uint64 `json:"seq"`
	JWS        string `json:"jws"`
	LastOutbox uint64 `json:"last_outbox"` // outbox sequence of the last attestation in the batch
	Count      int    `json:"count"`
	// Decided is when each attestation's decision was committed (Unix
	// nanoseconds, node clock; 0 when unknown), for the publish lag.
	Decided []int64 `json:"decided,omitempty"`
}

// outboxEntry is an outbox value: the attestation, and when its decision
// was committed (Unix nanoseconds, node clock) so that the publisher can
// observe the publish lag. Entries written before it was recorded read 0.
type outboxEntry struct {
	hcx.Attestation
	Decided int64 `json:"decided,omitempty"`
}

func (n *Node) publishLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.published:
			// Let a batch gather unless the outbox is already full.
			if n.outboxLen() < n.cfg.BatchMax {
				select {
				case <-ctx.Done():
					return
				case <-time.After(n.cfg.BatchLinger):
				}
			}
		case <-tick.C:
		}
		for ctx.Err() == nil {
			if err := n.publishPolicy(ctx); err != nil {
				n.log.Warn("policy publication not accepted yet; will retry", "err", err)
			}
			if _, err := n.publishVax(ctx); err != nil && ctx.Err() == nil {
				n.metrics.publishErrors.Add(1)
				n.log.Warn("vaccination envelope not accepted yet; will retry", "err", err)
			}
			if err := n.publishPendingRiskAreas(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("risk-area publication not accepted yet; will retry", "err", err)
			}
			if err := n.publishPendingExposures(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("exposure publication not accepted yet; will retry", "err", err)
			}
			if err := n.publishPendingReceipts(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("box-key or receipts publication not accepted yet; will retry", "err", err)
			}
			if err := n.publishAuditHead(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("trail head not logged yet; will retry", "err", err)
			}
			sent, err := n.publishOnce(ctx)
			if err != nil {
				if ctx.Err() == nil {
					n.metrics.publishErrors.Add(1)
					n.log.Warn("publishing to the hub failed; will retry", "err", err, "retry_in", backoff)
					select {
					case <-ctx.Done():
					case <-time.After(backoff):
					}
					backoff = min(backoff*2, 5*time.Second)
				}
				break
			}
			backoff = 100 * time.Millisecond
			if !sent {
				break
			}
		}
	}
}

// Backlog is how many attestations wait for the hub's acknowledgement,
// counted up to BatchMax: 0 means everything decided so far is in the log.
func (n *Node) Backlog() int { return n.outboxLen() }

// outboxLen counts outbox entries, up to BatchMax.
func (n *Node) outboxLen() int {
	c := 0
	_ = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOutbox)})
		defer it.Close()
		for it.Rewind(); it.Valid() && c < n.cfg.BatchMax; it.Next() {
			c++
		}
		return nil
	})
	return c
}

// publishOnce submits the pending batch, or seals the next one from the
// outbox. It reports whether a batch was acknowledged.
func (n *Node) publishOnce(ctx context.Context) (bool, error) {
	p, err := n.nextBatch()
	if err != nil || p == nil {
		return false, err
	}
	start := time.Now()
	res, err := n.cfg.Hub.Submit(ctx, p.JWS)
	if err != nil {
		var apiErr *exchange.APIError
		if errors.As(err, &apiErr) && apiErr.Code == "sequence_conflict" && apiErr.Expected != nil {
			return false, fmt.Errorf("batch %d: the hub expects sequence %d; the node's batch state and the hub's log disagree, an operator must look: %w", p.Seq, *apiErr.Expected, err)
		}
		if errors.As(err, &apiErr) && apiErr.Code == "clock_skew" {
			// The hub refuses an at more than 5 minutes from its clock
			// and says so only for bytes it has not logged: drop the
			// pending batch so that the same attestations are signed
			// again, same sequence, with the clock as it is now.
			if derr := n.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(kPending)) }); derr != nil {
				return false, fmt.Errorf("drop stale batch %d: %w", p.Seq, derr)
			}
			return false, fmt.Errorf("batch %d is signed at a time the hub refuses (check this node's clock); it will be signed again: %w", p.Seq, err)
		}
		return false, fmt.Errorf("submit batch %d: %w", p.Seq, err)
	}
	err = n.recordAck(p)
	if err != nil {
		return false, fmt.Errorf("record acknowledgement of batch %d: %w", p.Seq, err)
	}
	n.metrics.batches.Add(1)
	n.metrics.attestations.Add(uint64(p.Count))
	n.observePublishLag(p.Decided)
	n.log.Debug("batch published", "seq", p.Seq, "attestations", p.Count, "index", res.Index, "took", time.Since(start))
	return true, nil
}

// recordAck records the hub's acknowledgement of p: its attestations leave the
// outbox, its sequence becomes the last acknowledged, and it is no longer
// pending.
func (n *Node) recordAck(p *pendingBatch) error {
	return n.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOutbox)})
		var keys [][]byte
		last := seqKey(pOutbox, p.LastOutbox)
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if string(k) > string(last) {
				break
			}
			keys = append(keys, k)
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		if err := setU64(txn, kBatchSeq, p.Seq); err != nil {
			return err
		}
		return txn.Delete([]byte(kPending))
	})
}

// nextBatch returns the pending batch, or seals and stores a new one from the
// outbox; nil if there is nothing to send.
func (n *Node) nextBatch() (*pendingBatch, error) {
	var p pendingBatch
	var found bool
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		found, err = getJSON(txn, kPending, &p)
		return err
	})
	if err != nil || found {
		return &p, err
	}
	// Outbox sequence numbers are taken in commit order (write.go), so the
	// entries read here are a prefix of every entry up to the last one.
	var out *pendingBatch
	err = n.db.Update(func(txn *badger.Txn) error {
		seq, err := getU64(txn, kBatchSeq)
		if err != nil {
			return err
		}
		b := exchange.Batch{Iss: n.cfg.Province, Seq: seq + 1, At: n.cfg.Now().Unix(), SKV: n.cfg.SubjectKey.Version}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOutbox), PrefetchValues: true})
		var last uint64
		var decided []int64
		for it.Rewind(); it.Valid() && len(b.Atts) < n.cfg.BatchMax; it.Next() {
			var e outboxEntry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				it.Close()
				return err
			}
			b.Atts = append(b.Atts, e.Attestation)
			decided = append(decided, e.Decided)
			fmt.Sscanf(string(it.Item().Key()[len(pOutbox):]), "%d", &last)
		}
		it.Close()
		if len(b.Atts) == 0 {
			return nil
		}
		jws, err := exchange.SealBatch(n.cfg.Signer, &b)
		if err != nil {
			return fmt.Errorf("seal batch %d: %w", b.Seq, err)
		}
		out = &pendingBatch{Seq: b.Seq, JWS: jws, LastOutbox: last, Count: len(b.Atts), Decided: decided}
		return setJSON(txn, kPending, out)
	})
	return out, err
}

// publishPolicy publishes the rules in force as a policy publication when the
// hub has not acknowledged this version yet.
func (n *Node) publishPolicy(ctx context.Context) error {
	rules := n.rules.Load()
	if n.policyPublished.Load() == rules.version {
		return nil
	}
	var done string
	_ = n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kPolicyPub))
		if err == nil {
			b, _ := item.ValueCopy(nil)
			done = string(b)
		}
		return nil
	})
	if done == rules.version {
		n.policyPublished.Store(rules.version)
		return nil
	}
	pub := exchange.PolicyPublication{Iss: n.cfg.Province, At: n.cfg.Now().Unix(), Pol: rules.version, Rules: base64.StdEncoding.EncodeToString(rules.rs.Source())}
	jws, err := exchange.SealPolicy(n.cfg.Signer, &pub)
	if err != nil {
		return err
	}
	if _, err := n.cfg.Hub.Submit(ctx, jws); err != nil {
		return fmt.Errorf("publish policy %s: %w", rules.version, err)
	}
	if err := n.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(kPolicyPub), []byte(rules.version)) }); err != nil {
		return err
	}
	n.policyPublished.Store(rules.version)
	n.log.Info("policy published", "version", rules.version)
	return nil
}
