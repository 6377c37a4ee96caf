package node

import (
	"context"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// The fast path of bulk feeds (docs/decisions.md, "Issue 10: bulk feeds").
//
// IngestBatch takes many records at once: it validates each, locks the
// stripes of every resident named together (locks.ofAll, in stripe order),
// reads their residents, states, histories and record ids in one read
// transaction, adds every record of a resident to their history and decides
// each resident once, and hands the result to the committer as a few writes
// that it sends together (so that they share synced commits), answering
// after every one of them is on disk. Each record keeps its own audit entry
// (action, subject, and the record's kind and id in the note), so that an
// auditor who asks who wrote a record about a subject finds it as for a
// single ingest.

// MaxBatch bounds the records of one IngestBatch or RegisterBatch call.
const MaxBatch = 4096

// BatchRecord is one record of a feed: an event about a resident.
type BatchRecord struct {
	Sub   hcx.Subject
	Event Event
}

// ErrDuplicateRecord is a batch record's outcome when its record id was
// recorded before with the same content (or earlier in the same batch): it
// counts once, and is not an error of the feed.
var ErrDuplicateRecord = hcx.Errorf(hcx.EConflict, "duplicate_record", "this record id was recorded before with the same content; it counts once")

// batchWriteBytes bounds one write of a batch, well inside a transaction.
const batchWriteBytes = maxGroupBytes / 2

// IngestBatch records a batch of events (at most MaxBatch) and answers one
// outcome per record, in order: nil when it was recorded (durably: every
// accepted record is synced before IngestBatch returns),
// ErrDuplicateRecord when it was recorded before, or the record's own error
// (a validation error naming the field, record_conflict, unknown_resident or
// what nonResident makes of it). The error returned is the batch's own:
// ErrNoActor, ErrBusy, ErrClosed, a store failure; then no outcome is
// certain except that a retry with the same record ids counts each once.
func (n *Node) IngestBatch(ctx context.Context, recs []BatchRecord) ([]error, error) {
	if !auth.InContext(ctx) {
		return nil, ErrNoActor
	}
	if len(recs) > MaxBatch {
		return nil, hcx.Invalidf("records", "a batch has at most %d records, got %d", MaxBatch, len(recs))
	}
	start := time.Now() // latency, not the node's clock (which tests may stop)
	now := n.cfg.Now().UTC()
	out := make([]error, len(recs))
	entries := make([]*AuditEntry, len(recs))
	var subs []hcx.Subject
	for i := range recs {
		r := &recs[i]
		if err := r.Sub.Validate(); err != nil {
			out[i] = err
			continue
		}
		if err := r.Event.validate(now); err != nil {
			out[i] = err
			continue
		}
		e, err := callerEntry(ctx, r.Event.action(), r.Sub)
		if err != nil {
			return nil, err
		}
		if id := r.Event.RecordID(); id != "" {
			e.Note = "record " + r.Event.kind() + "/" + id
		}
		entries[i] = e
		subs = append(subs, r.Sub)
	}
	if len(subs) == 0 {
		return out, nil
	}
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	unlock := n.locks.ofAll(subs)
	attested, foreign, err := n.ingestLocked(recs, entries, out, now)
	unlock()
	release()
	if err != nil {
		return nil, err
	}
	// Records about people this node does not hold go to nonResident once
	// the stripes are free: it may write, and take a resident's lock.
	for _, f := range foreign {
		_, out[f.i] = n.nonResident(ctx, recs[f.i].Sub, &recs[f.i].Event, f.entry)
	}
	if attested {
		n.pokePublisher()
	}
	n.metrics.ingest["batch"].Observe(time.Since(start).Seconds())
	return out, nil
}

// foreignRecord is a batch's record about someone this node does not hold,
// with its audit entry, for nonResident.
type foreignRecord struct {
	i     int
	entry *AuditEntry
}

// batchResident is what a batch reads and changes about one resident.
type batchResident struct {
	rec   residentRecord
	st    colourState
	h     *history
	found bool
	recs  []int // the batch's records added to h
}

// ingestLocked is IngestBatch's work under the residents' locks: it fills
// out and returns whether an attestation was written and the records about
// people this node does not hold.
func (n *Node) ingestLocked(recs []BatchRecord, entries []*AuditEntry, out []error, now time.Time) (bool, []foreignRecord, error) {
	rules := n.rules.Load()
	res := map[hcx.Subject]*batchResident{}
	var order []hcx.Subject  // residents in first-seen order, for stable writes
	seen := map[string]int{} // record key -> first record of the batch with it
	var foreign []foreignRecord
	err := n.db.View(func(txn *badger.Txn) error {
		for i := range recs {
			if entries[i] == nil {
				continue
			}
			sub, ev := recs[i].Sub, &recs[i].Event
			r := res[sub]
			if r == nil {
				r = &batchResident{}
				res[sub] = r
				order = append(order, sub)
				var err error
				if r.found, err = getJSON(txn, pResident+string(sub), &r.rec); err != nil {
					return err
				}
				if r.found {
					if r.h, err = loadHistory(txn, sub); err != nil {
						return err
					}
					if _, err = getJSON(txn, pState+string(sub), &r.st); err != nil {
						return err
					}
				}
			}
			if !r.found {
				foreign = append(foreign, foreignRecord{i, entries[i]})
				entries[i] = nil // not this batch's to write
				continue
			}
			rid := recordKey(ev)
			if j, ok := seen[rid]; ok && rid != "" {
				if recs[j].Sub == sub && recordDigestEqual(&recs[j].Event, ev) {
					out[i] = ErrDuplicateRecord
				} else {
					out[i] = errRecordConflict(ev.RecordID())
				}
				entries[i] = nil
				continue
			}
			dup, err := checkRecord(txn, rid, sub, ev)
			if err != nil {
				var he *hcx.Error
				if !errors.As(err, &he) {
					return err
				}
				out[i], entries[i] = err, nil
				continue
			}
			if dup {
				out[i], entries[i] = ErrDuplicateRecord, nil
				continue
			}
			if rid != "" {
				seen[rid] = i
			}
			r.h.add(ev)
			r.recs = append(r.recs, i)
		}
		return nil
	})
	if err != nil {
		return false, nil, err
	}
	var writes []*write
	w := &write{}
	attested := false
	// A resident's records, their ids, their audit entries and their new
	// history and state go in one write: a record id is never on disk
	// without the record.
	for _, sub := range order {
		r := res[sub]
		if len(r.recs) == 0 {
			continue
		}
		for _, i := range r.recs {
			ev := &recs[i].Event
			w.recordMore(entries[i])
			if rid := recordKey(ev); rid != "" {
				w.setTTL(rid, recordValue(sub, ev), recordTTL(ev))
			}
			n.indexEvent(w, sub, ev)
		}
		r.h.expire(now)
		hb, err := r.h.MarshalBinary()
		if err != nil {
			return false, nil, err
		}
		w.set(histKey(sub), hb)
		a, err := n.decide(w, sub, &r.rec, &r.st, r.h.facts(), rules, now)
		if err != nil {
			return false, nil, err
		}
		attested = attested || a
		if w.bytes >= batchWriteBytes {
			writes = append(writes, w)
			w = &write{}
		}
	}
	if len(w.sets) > 0 || w.entry != nil {
		writes = append(writes, w)
	}
	if err := n.writeAll(writes); err != nil {
		return false, nil, err
	}
	var accepted uint64
	for i := range out {
		switch {
		case entries[i] != nil:
			accepted++
		case out[i] == ErrDuplicateRecord:
			n.metrics.duplicates.Add(1)
		}
	}
	n.metrics.events.Add(accepted)
	return attested, foreign, nil
}

func recordDigestEqual(a, b *Event) bool {
	return string(recordDigest(a)) == string(recordDigest(b))
}

// writeAll hands every write to the committer before waiting for any, so
// that they share synced commits, and returns once all are answered: the
// first error, if any.
func (n *Node) writeAll(ws []*write) error {
	sent := 0
	var err error
	for _, w := range ws {
		w.done = make(chan error, 1)
		select {
		case n.writes <- w:
			sent++
		case <-n.quit:
			err = ErrClosed
		}
		if err != nil {
			break
		}
	}
	for _, w := range ws[:sent] {
		if e := <-w.done; e != nil && err == nil {
			err = e
		}
	}
	return err
}

// RegisterBatch registers a batch of residents (at most MaxBatch; bulk
// registration by an operator) and answers one outcome per request, in
// order: nil when registered (synced before it returns),
// ErrDuplicateRecord when the document is registered already (a file sent
// twice registers each resident once; the existing resident is left as it
// is), or the request's validation error naming the field. Each
// registration has its own audit entry, as Register's.
func (n *Node) RegisterBatch(ctx context.Context, reqs []RegisterRequest) ([]error, error) {
	if !auth.InContext(ctx) {
		return nil, ErrNoActor
	}
	if len(reqs) > MaxBatch {
		return nil, hcx.Invalidf("records", "a batch has at most %d records, got %d", MaxBatch, len(reqs))
	}
	local := n.cfg.Now().In(n.rules.Load().rs.Location())
	now := n.cfg.Now().UTC()
	out := make([]error, len(reqs))
	entries := make([]*AuditEntry, len(reqs))
	subs := make([]hcx.Subject, len(reqs))
	var held []hcx.Subject
	for i := range reqs {
		if err := reqs[i].Validate(local); err != nil {
			out[i] = err
			continue
		}
		subs[i] = n.cfg.SubjectKey.Subject(reqs[i].DocType, reqs[i].DocNumber)
		e, err := callerEntry(ctx, ActionResidentRegister, subs[i])
		if err != nil {
			return nil, err
		}
		entries[i] = e
		held = append(held, subs[i])
	}
	if len(held) == 0 {
		return out, nil
	}
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	unlock := n.locks.ofAll(held)
	defer unlock()
	seen := map[hcx.Subject]bool{}
	err = n.db.View(func(txn *badger.Txn) error {
		for i := range reqs {
			if entries[i] == nil {
				continue
			}
			_, err := txn.Get([]byte(pResident + string(subs[i])))
			switch {
			case err == nil || seen[subs[i]]:
				out[i], entries[i] = ErrDuplicateRecord, nil
			case errors.Is(err, badger.ErrKeyNotFound):
				seen[subs[i]] = true
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var writes []*write
	w := &write{}
	var added uint64
	var attested bool
	for i := range reqs {
		if entries[i] == nil {
			continue
		}
		rec := n.newResidentRecord(subs[i], &reqs[i], now)
		w.recordMore(entries[i])
		if err := w.setJSON(pResident+string(subs[i]), rec); err != nil {
			return nil, err
		}
		// Doses other provinces gave them before they registered count
		// from the start, as for a registration alone (ensureResident).
		if err := n.adoptForeignDoses(w, rec, now); err != nil {
			return nil, err
		}
		attested = attested || len(w.atts) > 0
		added++
		if w.bytes >= batchWriteBytes {
			writes = append(writes, w)
			w = &write{}
		}
	}
	if w.entry != nil {
		writes = append(writes, w)
	}
	if err := n.writeAll(writes); err != nil {
		return nil, err
	}
	n.metrics.registrations.Add(added)
	if attested {
		n.pokePublisher()
	}
	return out, nil
}
