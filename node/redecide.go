package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// Bulk re-decision: when the rules in force change, every resident of the
// province is decided again under them, and the colours that change are
// published through the outbox. The job is durable (kRedecide), so a node
// that stops half-way goes on from its cursor when it starts again; a node
// that starts with rules other than those its residents were last decided
// with (kDecidedPolicy) plans a job too.
const (
	kRedecide      = "meta/redecide"       // redecideJob in progress
	kDecidedPolicy = "meta/decided-policy" // the policy every resident was last decided with
)

// redecideJob is a bulk re-decision in progress. Every resident up to and
// including Cursor (in key order) has been decided under Policy.
type redecideJob struct {
	Policy  string      `json:"policy"`
	Cursor  hcx.Subject `json:"cursor,omitempty"`
	Done    uint64      `json:"done"`
	Started time.Time   `json:"started"`
}

// RedecideProgress is how far a bulk re-decision has come.
type RedecideProgress struct {
	Policy     string
	Done       uint64 // residents decided under Policy
	Total      uint64
	Attested   uint64 // attestations written
	Elapsed    time.Duration
	Incomplete bool // stopped before the end (rules changed again, or ctx ended)
}

// planRedecide records that every resident must be decided under policy:
// always after a rule change (restart the job from the beginning), and at
// start when the store's residents were last decided with other rules and no
// job for these rules is under way.
func (n *Node) planRedecide(policy string, changed bool) error {
	if n.db == nil {
		return nil // New loads the rules before it opens the store; it plans then
	}
	planned := true
	err := n.db.Update(func(txn *badger.Txn) error {
		var job redecideJob
		found, err := getJSON(txn, kRedecide, &job)
		if err != nil {
			return err
		}
		if found && job.Policy == policy && !changed {
			return nil // resume where it stopped
		}
		if !found && !changed {
			item, err := txn.Get([]byte(kDecidedPolicy))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				var decided []byte
				if decided, err = item.ValueCopy(nil); err != nil {
					return err
				}
				if string(decided) == policy {
					return nil
				}
			}
		}
		if !hasAny(txn, pResident) {
			// Nobody to decide (a new store): done at once, nothing to run.
			if err := txn.Delete([]byte(kRedecide)); err != nil {
				return err
			}
			planned = false
			return txn.Set([]byte(kDecidedPolicy), []byte(policy))
		}
		return setJSON(txn, kRedecide, &redecideJob{Policy: policy, Started: n.cfg.Now().UTC()})
	})
	if err != nil || !planned {
		return err
	}
	select {
	case n.redecide <- struct{}{}:
	default:
	}
	return nil
}

// hasAny reports whether some key has the prefix.
func hasAny(txn *badger.Txn, prefix string) bool {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	defer it.Close()
	it.Rewind()
	return it.Valid()
}

// redecideLoop runs the bulk re-decision whenever one is planned.
func (n *Node) redecideLoop(ctx context.Context) {
	for {
		if _, err := n.Redecide(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("bulk re-decision failed; will retry", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-n.redecide:
		}
	}
}

// Redecide runs the planned bulk re-decision, if any, to the end: residents
// in key order, RedecideChunk to a transaction, RedecideWorkers transactions
// at once, progress logged every few seconds and the cursor stored as chunks
// complete. If the rules change again meanwhile, it starts over under the new
// ones. Run calls it; tests and benchmarks may call it directly.
func (n *Node) Redecide(ctx context.Context) (RedecideProgress, error) {
	for {
		var job redecideJob
		var found bool
		err := n.db.View(func(txn *badger.Txn) error {
			var err error
			found, err = getJSON(txn, kRedecide, &job)
			return err
		})
		if err != nil || !found {
			return RedecideProgress{}, err
		}
		rules := n.rules.Load()
		if job.Policy != rules.version {
			if err := n.planRedecide(rules.version, true); err != nil {
				return RedecideProgress{}, err
			}
			continue
		}
		p, err := n.runRedecide(ctx, &job, rules)
		if err != nil || !p.Incomplete {
			return p, err
		}
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		// The rules changed under the job: go again under the new ones.
	}
}

type chunkResult struct {
	i        int
	last     hcx.Subject
	n        int
	attested int
	err      error
}

func (n *Node) runRedecide(ctx context.Context, job *redecideJob, rules *ruleSet) (RedecideProgress, error) {
	start := time.Now()
	total, err := n.countResidents()
	if err != nil {
		return RedecideProgress{}, err
	}
	p := RedecideProgress{Policy: job.Policy, Done: job.Done, Total: total}
	n.log.Info("re-deciding every resident under new rules", "policy", job.Policy, "residents", total, "already_done", job.Done)

	parent := ctx
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	doneBefore := job.Done
	chunks := make(chan []hcx.Subject, n.cfg.RedecideWorkers)
	type indexed struct {
		i    int
		subs []hcx.Subject
	}
	work := make(chan indexed, n.cfg.RedecideWorkers)
	results := make(chan chunkResult, n.cfg.RedecideWorkers)
	prodErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		prodErr <- n.residentChunks(ctx, job.Cursor, n.cfg.RedecideChunk, chunks)
	}()
	go func() {
		defer close(work)
		i := 0
		for c := range chunks {
			select {
			case work <- indexed{i, c}:
				i++
			case <-ctx.Done():
				return
			}
		}
	}()
	// Workers decide a chunk and hand its writes to the committer, which
	// syncs the chunks of every worker (and the ingests meanwhile) together.
	var wg sync.WaitGroup
	for w := 0; w < n.cfg.RedecideWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if ctx.Err() != nil || n.rules.Load().version != rules.version {
					results <- chunkResult{i: c.i, err: errStale}
					continue
				}
				attested, err := n.redecideChunk(ctx, c.subs, nil, rules, n.cfg.Now().UTC())
				if err != nil && ctx.Err() != nil {
					err = errStale // stopped, not failed: the cursor says where
				}
				results <- chunkResult{i: c.i, last: c.subs[len(c.subs)-1], n: len(c.subs), attested: attested, err: err}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	// Completed chunks may arrive out of order; the cursor moves over the
	// contiguous prefix only, so a restart redoes at most the chunks that
	// were in flight (deciding a resident again changes nothing).
	done := map[int]chunkResult{}
	next := 0
	var firstErr error
	lastSave, lastLog := time.Now(), time.Now()
	// save stores the cursor, unless a newer job (a rule change) replaced
	// this one meanwhile: that one must not be lost.
	save := func() error {
		return n.db.Update(func(txn *badger.Txn) error {
			var cur redecideJob
			found, err := getJSON(txn, kRedecide, &cur)
			if err != nil || !found || cur.Policy != job.Policy || !cur.Started.Equal(job.Started) {
				return err
			}
			return setJSON(txn, kRedecide, job)
		})
	}
	for r := range results {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			cancel()
			continue
		}
		done[r.i] = r
		for {
			c, ok := done[next]
			if !ok {
				break
			}
			delete(done, next)
			next++
			job.Cursor, job.Done = c.last, job.Done+uint64(c.n)
			p.Done, p.Attested = job.Done, p.Attested+uint64(c.attested)
		}
		if p.Attested > 0 {
			n.pokePublisher()
		}
		if time.Since(lastSave) > 500*time.Millisecond && firstErr == nil {
			if err := save(); err != nil {
				firstErr = err
				cancel()
			}
			lastSave = time.Now()
		}
		if time.Since(lastLog) > 5*time.Second {
			el := time.Since(start)
			n.log.Info("re-deciding residents", "policy", job.Policy, "done", p.Done, "total", total,
				"per_second", int(float64(p.Done-doneBefore)/el.Seconds()), "attestations", p.Attested)
			lastLog = time.Now()
		}
	}
	p.Elapsed = time.Since(start)
	cancel() // the producer may wait to send a chunk nobody takes
	if err := <-prodErr; firstErr == nil {
		firstErr = err
	}
	if firstErr == nil && n.rules.Load().version != rules.version {
		firstErr = errStale // every chunk was out before the rules changed
	}
	if errors.Is(firstErr, errStale) || (firstErr == nil && parent.Err() != nil) {
		p.Incomplete = true
		return p, save()
	}
	if firstErr != nil {
		p.Incomplete = true
		if err := save(); err != nil {
			n.log.Error("storing the re-decision cursor failed", "err", err)
		}
		return p, firstErr
	}
	err = n.db.Update(func(txn *badger.Txn) error {
		var cur redecideJob
		if _, err := getJSON(txn, kRedecide, &cur); err != nil {
			return err
		}
		if cur.Policy != job.Policy || !cur.Started.Equal(job.Started) {
			return nil // a newer job was planned meanwhile: leave it
		}
		if err := txn.Delete([]byte(kRedecide)); err != nil {
			return err
		}
		return txn.Set([]byte(kDecidedPolicy), []byte(job.Policy))
	})
	if err != nil {
		return p, fmt.Errorf("record the end of the re-decision under %s: %w", job.Policy, err)
	}
	n.log.Info("every resident re-decided under new rules", "policy", job.Policy, "residents", p.Done, "attestations", p.Attested,
		"took", p.Elapsed.Round(time.Millisecond), "per_second", int(float64(p.Done-doneBefore)/max(p.Elapsed.Seconds(), 1e-9)))
	return p, nil
}

var errStale = errors.New("the rules changed during the re-decision")

func (n *Node) countResidents() (uint64, error) {
	var c uint64
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pResident)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			c++
		}
		return nil
	})
	return c, err
}

// residentChunks sends the subjects after cursor, in key order, in chunks of
// size; it stops when ctx ends.
func (n *Node) residentChunks(ctx context.Context, cursor hcx.Subject, size int, out chan<- []hcx.Subject) error {
	return n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pResident)})
		defer it.Close()
		it.Rewind()
		if cursor != "" {
			it.Seek([]byte(pResident + string(cursor) + "\x00"))
		}
		chunk := make([]hcx.Subject, 0, size)
		for ; it.Valid(); it.Next() {
			chunk = append(chunk, hcx.Subject(it.Item().Key()[len(pResident):]))
			if len(chunk) == size {
				select {
				case out <- chunk:
				case <-ctx.Done():
					return nil
				}
				chunk = make([]hcx.Subject, 0, size)
			}
		}
		if len(chunk) > 0 {
			select {
			case out <- chunk:
			case <-ctx.Done():
			}
		}
		return nil
	})
}
