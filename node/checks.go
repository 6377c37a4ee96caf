package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// The resident's check history (issue 11 item 4, docs/decisions.md "Issue
// 11: check history"): every verification at this node of a code this
// province issued is kept for the resident for CheckRetention, newest
// first.
//
// Verify is the hottest read path, so it does not write: it hands a
// receipt to a bounded queue (checkQueueLen) and a background writer
// stores the receipts in batches, one badger transaction per batch. A full
// queue drops the receipt and counts it (hcx_node_checks_dropped_total):
// the verification itself is never slowed or refused for the history's
// sake. Receipts still queued at Close are written before the store closes.
//
// Keys: chk/<sub>/<inverted unix nanos 16 hex><seq 8 hex>, so that a
// forward scan of one resident's prefix is newest first. Each entry
// expires in badger CheckRetention after the check (ExpiresAt), and
// PruneChecks deletes those older than CheckRetention by the node's clock.

// CheckRetention is how long a check of a resident's code is kept.
const CheckRetention = 30 * 24 * time.Hour

const pCheck = "chk/"

// Bounds of the background writer.
const (
	checkQueueLen = 8192
	checkBatch    = 512
	// checkGather is how long the writer waits to fill a batch.
	checkGather = 50 * time.Millisecond
	// MaxChecksPage is the longest page of GET /v1/residents/{sub}/checks.
	MaxChecksPage = 200
)

// Check is one verification of a resident's code, as the resident sees it.
type Check struct {
	At time.Time `json:"at"`
	// Province is the checking unit's province; Division its division
	// when the verifying credential names one (checkpoint certificates do
	// not yet: empty).
	Province hcx.ProvinceCode `json:"province"`
	Division hcx.DivisionCode `json:"division,omitempty"`
	// Unit is the verifying unit: the checkpoint device's certificate
	// name, or "operator" for an operator's verification (an operator's
	// login name is staff data, not shown to residents).
	Unit string `json:"unit"`
	// Role is checkpoint or operator.
	Role   string     `json:"role"`
	Colour hcx.Colour `json:"colour"`
}

// checkQueue is the node's background check writer.
type checkQueue struct {
	ch      chan pendingCheck
	seq     atomic.Uint32
	quit    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64
	stored  atomic.Uint64
}

type pendingCheck struct {
	sub hcx.Subject
	c   Check
}

func (q *checkQueue) start(n *Node) {
	if q.ch == nil { // kept across a stop and start: what is queued stays queued
		q.ch = make(chan pendingCheck, checkQueueLen)
		q.seq.Store(rand.Uint32())
	}
	q.quit = make(chan struct{})
	q.done = make(chan struct{})
	go n.checkLoop()
}

// stop writes what is queued and stops the writer.
func (q *checkQueue) stop() {
	close(q.quit)
	<-q.done
}

// recordCheck queues a receipt for a verification of sub's code by the
// caller in ctx, without waiting; a full queue drops it and counts it.
func (n *Node) recordCheck(ctx context.Context, sub hcx.Subject, at time.Time, col hcx.Colour) {
	if n.closing.Load() {
		return
	}
	c, ok := checkOf(ctx, at, col)
	if !ok {
		return
	}
	select {
	case n.checks.ch <- pendingCheck{sub: sub, c: c}:
	default:
		n.checks.dropped.Add(1)
	}
}

func (n *Node) checkLoop() {
	q := &n.checks
	defer close(q.done)
	batch := make([]pendingCheck, 0, checkBatch)
	tick := time.NewTicker(StatsFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			n.flushStats()
		case pc := <-q.ch:
			// Gather for up to checkGather: each batch is one synced
			// write, and a goroutine blocked in msync holds its P until
			// the runtime takes it back, so many small writes idle the
			// cores that verification needs (BenchmarkBatchVerifyThroughHTTP).
			batch = append(batch[:0], pc)
			gather := time.NewTimer(checkGather)
		drain:
			for len(batch) < checkBatch {
				select {
				case pc := <-q.ch:
					batch = append(batch, pc)
				case <-gather.C:
					break drain
				case <-q.quit:
					break drain
				}
			}
			gather.Stop()
			n.storeChecks(batch)
		case <-q.quit:
			for {
				batch = batch[:0]
				for len(batch) < checkBatch {
					select {
					case pc := <-q.ch:
						batch = append(batch, pc)
						continue
					default:
					}
					break
				}
				if len(batch) == 0 {
					n.flushStats()
					return
				}
				n.storeChecks(batch)
			}
		}
	}
}

// storeChecks writes one batch in one synced transaction. A failed batch
// is logged and counted as dropped: the history is best effort, the
// verification already answered.
func (n *Node) storeChecks(batch []pendingCheck) {
	err := n.db.Update(func(txn *badger.Txn) error {
		for _, pc := range batch {
			v, err := json.Marshal(&pc.c)
			if err != nil {
				return err
			}
			e := badger.NewEntry(checkKey(pc.sub, pc.c.At, n.checks.seq.Add(1)), v)
			e.ExpiresAt = uint64(max(pc.c.At.Add(CheckRetention).Unix(), 1))
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.checks.dropped.Add(uint64(len(batch)))
		n.log.Warn("store check history", "checks", len(batch), "err", err)
		return
	}
	n.checks.stored.Add(uint64(len(batch)))
}

func checkPrefix(sub hcx.Subject) []byte { return []byte(pCheck + string(sub) + "/") }

func checkKey(sub hcx.Subject, at time.Time, seq uint32) []byte {
	k := checkPrefix(sub)
	k = binary.BigEndian.AppendUint64(k, math.MaxUint64-uint64(at.UnixNano()))
	return binary.BigEndian.AppendUint32(k, seq)
}

// checkKeyTime reads the time of a check from its key.
func checkKeyTime(key []byte) (time.Time, bool) {
	if len(key) < len(pCheck)+12 {
		return time.Time{}, false
	}
	inv := binary.BigEndian.Uint64(key[len(key)-12 : len(key)-4])
	return time.Unix(0, int64(math.MaxUint64-inv)), true
}

// ChecksPage is a page of a resident's check history, newest first.
type ChecksPage struct {
	Checks []Check `json:"checks"`
	// Next is the cursor of the next page ("after" query); empty on the
	// last page.
	Next string `json:"next,omitempty"`
	// RetentionDays is how far back the history reaches.
	RetentionDays int `json:"retention_days"`
}

// Checks lists the checks of sub's code in the last CheckRetention, newest
// first, limit at a time after the cursor after (a page's Next).
func (n *Node) Checks(ctx context.Context, sub hcx.Subject, after string, limit int) (*ChecksPage, error) {
	if err := sub.Validate(); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxChecksPage {
		return nil, hcx.Invalidf("limit", "limit must be 1 to %d", MaxChecksPage)
	}
	prefix := checkPrefix(sub)
	start := prefix
	if after != "" {
		cur, err := hex.DecodeString(after)
		if err != nil || len(cur) != 12 {
			return nil, hcx.Invalidf("after", "after is not a cursor from this history; pass the next of the previous page")
		}
		// The cursor is the last key shown: start just after it.
		start = append(append(append([]byte{}, prefix...), cur...), 0)
	}
	cut := n.cfg.Now().Add(-CheckRetention)
	page := &ChecksPage{Checks: []Check{}, RetentionDays: int(CheckRetention / (24 * time.Hour))}
	err := n.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit+1, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		var last []byte
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			at, ok := checkKeyTime(item.Key())
			if !ok || at.Before(cut) {
				return nil // newest first: everything further is older
			}
			if len(page.Checks) == limit {
				page.Next = hex.EncodeToString(last[len(prefix):])
				return nil
			}
			var c Check
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return err
			}
			page.Checks = append(page.Checks, c)
			last = item.KeyCopy(last[:0])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// PruneChecks deletes the checks older than CheckRetention by the node's
// clock (badger's own expiry reads the wall clock; this makes the node's
// clock the one that counts), and returns how many it deleted.
func (n *Node) PruneChecks() (int, error) {
	cut := n.cfg.Now().Add(-CheckRetention)
	return n.pruneWhere(pCheck, func(k []byte) (bool, bool) {
		at, ok := checkKeyTime(k)
		return ok && at.Before(cut), true
	})
}

// pruneWhere deletes the keys under prefix that old says to, at most
// pruneRound keys in memory at a time, and returns how many it deleted;
// old's second result false ends the scan (for keys in time order).
func (n *Node) pruneWhere(prefix string, old func(key []byte) (del, more bool)) (int, error) {
	total := 0
	from := []byte(prefix)
	for {
		var dead [][]byte
		err := n.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = []byte(prefix)
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Seek(from); it.Valid() && len(dead) < pruneRound; it.Next() {
				del, more := old(it.Item().Key())
				if del {
					dead = append(dead, it.Item().KeyCopy(nil))
				}
				if !more {
					break
				}
			}
			return nil
		})
		if err != nil || len(dead) == 0 {
			return total, err
		}
		wb := n.db.NewWriteBatch()
		for _, k := range dead {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return total, err
			}
		}
		if err := wb.Flush(); err != nil {
			return total, err
		}
		total += len(dead)
		from = append(dead[len(dead)-1], 0)
	}
}

const pruneRound = 10000
