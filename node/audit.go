package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// The operator audit trail (docs/decisions.md, "Issue 9: audit"):
//
//   - Every write a node makes on behalf of a caller carries an AuditEntry,
//     and the committer (write.go) stores the entry in the same badger
//     transaction as the write: both are on disk or neither is. The
//     committer refuses a write that has neither an entry nor a system
//     name (the node's own background work), so that no code path can
//     write for a caller without a trail entry.
//   - The committer numbers entries in commit order (seq 1, 2, …, no gaps)
//     and chains them: each entry carries SM3 of the canonical bytes of the
//     one before, and meta/audit-head holds the last seq and hash, so an
//     entry deleted, edited or cut off the end is found by
//     VerifyAuditTrail.
//   - No method deletes or rewrites an entry.

// Actions recorded in the trail. Names are stable: auditors search for them.
const (
	ActionResidentRegister     = "resident.register"
	ActionLabPost              = "lab.post"
	ActionContactPost          = "contact.post"
	ActionRulesReload          = "rules.reload"
	ActionResidentReadIdentity = "resident.read_identity"
)

// AuditEntry is one act in the trail. It names the actor by their stable id
// and the resident by their subject (a pseudonym), never by name or
// document.
type AuditEntry struct {
	Seq       uint64           `json:"seq"`
	At        time.Time        `json:"at"`
	Actor     string           `json:"actor"`
	Role      auth.Role        `json:"role"`
	Province  hcx.ProvinceCode `json:"province,omitempty"` // the actor's
	Method    auth.Method      `json:"method,omitempty"`   // how the actor proved itself
	Action    string           `json:"action"`
	Subject   hcx.Subject      `json:"subject,omitempty"`
	Why       string           `json:"why,omitempty"`
	Note      string           `json:"note,omitempty"` // written by the node, such as the policy versions of a reload
	RequestID string           `json:"request_id,omitempty"`
	// Prev is the hex SM3 of the canonical bytes of the entry before (64
	// zeros for the first).
	Prev string `json:"prev"`
}

// AuditRecord is an entry with its own hash, as the trail is read: the next
// entry's Prev.
type AuditRecord struct {
	AuditEntry
	Hash string `json:"hash"`
}

// AuditHead is the end of the trail: the last entry's seq and hash (0 and
// 64 zeros when the trail is empty).
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// AuditHeadType is the JWS type of a signed trail head: the log envelope
// exchange.AuditHead (PROTOCOL.md §3, 1.6). An auditor who keeps one holds
// the node to that history: a node that later rewrites an entry before its
// seq contradicts its own signature. The node logs one at the hub every
// Config.AuditHeadEvery (audithead.go) and signs one with every page.
const AuditHeadType = exchange.HdrAuditHead

// AuditPage is a page of the trail, oldest first.
type AuditPage struct {
	Entries []AuditRecord `json:"entries"`
	// Head is the trail's end when the page was read: the auditor pages
	// until the last entry's hash is Head.Hash.
	Head AuditHead `json:"head"`
	// SignedHead is Head as a trail head envelope (exchange.AuditHead)
	// signed by the province signer, the format the node logs.
	SignedHead string `json:"signed_head"`
	// More reports whether entries follow the page; ask again with after
	// = the last entry's seq.
	More bool `json:"more"`
}

// Bounds of a page of the trail.
const (
	DefaultAuditPage = 100
	MaxAuditPage     = 1000
)

const (
	pAudit     = "audit/"          // audit/<seq 8 bytes big-endian> -> the entry's stored form (auditfmt.go)
	kAuditHead = "meta/audit-head" // seq 8 bytes || SM3 32 bytes of the last entry
)

const zeroHash = exchange.TrailZeroHash

// ErrNoActor: a method that writes for a caller was called with a context
// that carries no principal. It is a bug in the caller, never the
// requester's fault.
var ErrNoActor = hcx.Errorf(hcx.EInternal, "no_actor", "the node was asked to change something without a principal in the context; the audit trail would not know who did it")

// errNoAuditEntry: the committer was handed a caller's write without an
// audit entry.
var errNoAuditEntry = hcx.Errorf(hcx.EInternal, "no_audit_entry", "a write reached the committer without an audit entry or a system name; it was not written")

func auditKey(seq uint64) []byte {
	k := make([]byte, len(pAudit)+8)
	copy(k, pAudit)
	binary.BigEndian.PutUint64(k[len(pAudit):], seq)
	return k
}

// validAction reports whether a is a stable action name: lowercase dotted
// words, such as "lab.post".
func validAction(a string) bool {
	if len(a) == 0 || len(a) > 64 || a[0] == '.' || a[len(a)-1] == '.' {
		return false
	}
	dot := false
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c == '.':
			if i > 0 && a[i-1] == '.' {
				return false
			}
			dot = true
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		default:
			return false
		}
	}
	return dot
}

// callerEntry starts the audit entry of an act by the principal in ctx. It
// returns ErrNoActor when ctx carries none: every method that writes for a
// caller calls it before anything else.
func callerEntry(ctx context.Context, action string, sub hcx.Subject) (*AuditEntry, error) {
	if !auth.InContext(ctx) {
		return nil, ErrNoActor
	}
	if !validAction(action) {
		return nil, fmt.Errorf("audit action %q is not a stable dotted name", action)
	}
	p := auth.FromContext(ctx)
	req := auth.RequestFrom(ctx)
	return &AuditEntry{Actor: p.Actor, Role: p.Role, Province: p.Province, Method: p.Method,
		Action: action, Subject: sub, Why: req.Reason, RequestID: req.ID}, nil
}

// recordIn adds e to w: the committer stores it with w's writes.
func (w *write) record(e *AuditEntry) {
	w.entry = e
	w.bytes += 512
}

// recordMore adds e to w's entries: a write of a batch carries one entry
// per record, stored in order.
func (w *write) recordMore(e *AuditEntry) {
	if w.entry == nil {
		w.record(e)
		return
	}
	w.also(e)
}

// also adds a further entry to w, for an act that has more than one step
// recorded in the same write (an appeal decided and the records it voids):
// the committer stores them after w's entry, in order.
func (w *write) also(e *AuditEntry) {
	w.more = append(w.more, e)
	w.bytes += 512
}

// auditEntries are the trail entries of group in the order they are
// stored: each write's entry, then those it added with also.
func auditEntries(group []*write) []*AuditEntry {
	var out []*AuditEntry
	for _, w := range group {
		if w.entry != nil {
			out = append(out, w.entry)
			out = append(out, w.more...)
		}
	}
	return out
}

// AuditRead records that the principal in ctx read something about sub
// (action, such as ActionResidentReadIdentity) for the reason why (the
// request's X-HCX-Reason if why is empty). It returns once the entry is on
// disk: a handler shows the data only after it. It returns ErrNoActor, ErrBusy
// or ErrClosed.
func (n *Node) AuditRead(ctx context.Context, action string, sub hcx.Subject, why string) error {
	e, err := callerEntry(ctx, action, sub)
	if err != nil {
		return err
	}
	if why != "" {
		e.Why = why
	}
	release, err := n.admit(ctx)
	if err != nil {
		return err
	}
	defer release()
	w := &write{}
	w.record(e)
	return n.write(w)
}

// appendAudit stores the entries of group in txn, numbered and chained from
// the committer's head, and returns the new head. The caller keeps the new
// head only if txn commits.
func (n *Node) appendAudit(txn *badger.Txn, group []*write, now time.Time) (next uint64, head [32]byte, err error) {
	next, head = n.auditNext, n.auditHead
	for _, e := range auditEntries(group) {
		// The time is kept to the nanosecond in UTC: what the stored form
		// gives back, so the hash of the entry is the same when it is read.
		e.Seq, e.At, e.Prev = next, time.Unix(0, now.UnixNano()).UTC(), hex.EncodeToString(head[:])
		v, err := encodeAuditEntry(e, next, head)
		if err != nil {
			return 0, head, fmt.Errorf("encode audit entry: %w", err)
		}
		b, err := json.Marshal(e)
		if err != nil {
			return 0, head, fmt.Errorf("encode audit entry: %w", err)
		}
		if err := txn.Set(auditKey(next), v); err != nil {
			return 0, head, err
		}
		head = certs.SM3(b)
		next++
	}
	if next != n.auditNext {
		v := append(u64b(next-1), head[:]...)
		if err := txn.Set([]byte(kAuditHead), v); err != nil {
			return 0, head, err
		}
	}
	return next, head, nil
}

// loadAuditHead reads the trail's end: the next seq to give and the last
// entry's hash.
func loadAuditHead(txn *badger.Txn) (next uint64, head [32]byte, err error) {
	item, err := txn.Get([]byte(kAuditHead))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 1, head, nil
	}
	if err != nil {
		return 0, head, err
	}
	err = item.Value(func(b []byte) error {
		if len(b) != 8+32 {
			return fmt.Errorf("%s has %d bytes, want 40", kAuditHead, len(b))
		}
		next = binary.BigEndian.Uint64(b) + 1
		copy(head[:], b[8:])
		return nil
	})
	return next, head, err
}

// AuditTrail returns up to limit entries after seq after, oldest first
// (limit 0: DefaultAuditPage; at most MaxAuditPage), with the trail's head.
// It returns an EInvalid error naming limit when it is out of range.
func (n *Node) AuditTrail(ctx context.Context, after uint64, limit int) (*AuditPage, error) {
	if limit == 0 {
		limit = DefaultAuditPage
	}
	if limit < 0 || limit > MaxAuditPage {
		return nil, hcx.Invalidf("limit", "limit %d: want 1 to %d", limit, MaxAuditPage)
	}
	page := &AuditPage{Entries: []AuditRecord{}}
	err := n.db.View(func(txn *badger.Txn) error {
		next, head, err := loadAuditHead(txn)
		if err != nil {
			return err
		}
		page.Head = AuditHead{Seq: next - 1, Hash: hex.EncodeToString(head[:])}
		if after >= next-1 {
			return nil
		}
		// Entries before after+1 back to the last anchor are read only to
		// rebuild the first entry's prev.
		start := after/auditAnchorEvery*auditAnchorEvery + 1
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit+int(after+1-start), 100), Prefix: []byte(pAudit)})
		defer it.Close()
		want, prev := start, ""
		for it.Seek(auditKey(start)); it.ValidForPrefix([]byte(pAudit)); it.Next() {
			if len(page.Entries) == limit {
				page.More = true
				break
			}
			rec, err := readAuditRecord(it.Item(), want, prev)
			if err != nil {
				return err
			}
			prev = rec.Hash
			want++
			if rec.Seq > after {
				page.Entries = append(page.Entries, rec)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	page.SignedHead, err = exchange.SealAuditHead(n.cfg.Signer, n.cfg.Now().Unix(), page.Head.Seq, page.Head.Hash)
	if err != nil {
		return nil, fmt.Errorf("sign the audit head: %w", err)
	}
	return page, nil
}

// ErrAuditTrailBroken is the class of every finding of VerifyAuditTrail
// and VerifyAuditRecords; the message says which entry and what.
const auditBrokenCode = "audit_trail_broken"

func broken(format string, args ...any) error {
	return hcx.Errorf(hcx.EInternal, auditBrokenCode, format, args...)
}

// VerifyAuditTrail reads the whole trail and checks that the entries are
// numbered 1, 2, … without a gap, each is stored in its canonical form
// under its own seq, each carries the hash of the one before, and the last
// one is the head. It returns the head, or an error (code
// "audit_trail_broken") naming the first entry that does not check out.
func (n *Node) VerifyAuditTrail() (AuditHead, error) {
	return verifyAuditTrail(n.db)
}

func verifyAuditTrail(db *badger.DB) (AuditHead, error) {
	var out AuditHead
	err := db.View(func(txn *badger.Txn) error {
		next, head, err := loadAuditHead(txn)
		if err != nil {
			return err
		}
		want := uint64(1)
		prev := zeroHash
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(pAudit)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rec, err := readAuditRecord(it.Item(), want, prev)
			if err != nil {
				return err
			}
			prev = rec.Hash
			want++
		}
		if want != next {
			return broken("the trail ends at entry %d but its head says %d", want-1, next-1)
		}
		if hs := hex.EncodeToString(head[:]); hs != prev {
			return broken("the last entry %d hashes to %s but the head says %s", want-1, prev, hs)
		}
		out = AuditHead{Seq: want - 1, Hash: prev}
		return nil
	})
	return out, err
}

// readAuditRecord decodes the stored entry item, which must be entry want,
// gives it prev (the hash of entry want-1; "" to take it from an anchor
// entry's stored prev) and hashes its canonical JSON. It returns an
// audit_trail_broken error naming the entry when the key is not want's, the
// record does not decode or is not canonical, or an anchor's stored prev is
// not prev.
func readAuditRecord(item *badger.Item, want uint64, prev string) (AuditRecord, error) {
	k := item.Key()
	if len(k) != len(pAudit)+8 {
		return AuditRecord{}, broken("key %q is not an audit entry key", k)
	}
	seq := binary.BigEndian.Uint64(k[len(pAudit):])
	if seq != want {
		return AuditRecord{}, broken("audit entry %d is missing (the next one is %d)", want, seq)
	}
	var rec AuditRecord
	err := item.Value(func(b []byte) error {
		e, err := decodeAuditEntry(seq, b)
		if err != nil {
			return broken("%v", err)
		}
		rec.AuditEntry = e
		return nil
	})
	if err != nil {
		return AuditRecord{}, err
	}
	switch {
	case prev == "" && rec.Prev == "":
		return AuditRecord{}, broken("audit entry %d: no prev to start from", seq)
	case prev != "" && rec.Prev != "" && rec.Prev != prev:
		return AuditRecord{}, broken("audit entry %d does not follow entry %d: its stored prev is %s, entry %d hashes to %s", seq, seq-1, rec.Prev, seq-1, prev)
	case prev != "":
		rec.Prev = prev
	}
	b, err := json.Marshal(&rec.AuditEntry)
	if err != nil {
		return AuditRecord{}, err
	}
	h := certs.SM3(b)
	rec.Hash = hex.EncodeToString(h[:])
	return rec, nil
}

// VerifyAuditRecords checks a page of the trail as an auditor reads it: each
// record's hash is SM3 of its entry's canonical encoding, the first follows
// prev (the hash of the entry before the page; 64 zeros from the start) and
// each next one follows it without a gap. It returns the hash of the last
// record (prev if there are none).
func VerifyAuditRecords(prev string, after uint64, recs []AuditRecord) (string, error) {
	for i := range recs {
		r := &recs[i]
		if r.Seq != after+1 {
			return "", broken("entry %d follows entry %d: a gap", r.Seq, after)
		}
		if r.Prev != prev {
			return "", broken("entry %d does not follow the entry before it: prev %s, want %s", r.Seq, r.Prev, prev)
		}
		b, err := json.Marshal(&r.AuditEntry)
		if err != nil {
			return "", err
		}
		h := certs.SM3(b)
		if got := hex.EncodeToString(h[:]); got != r.Hash {
			return "", broken("entry %d hashes to %s, not to the %s it carries", r.Seq, got, r.Hash)
		}
		prev, after = r.Hash, r.Seq
	}
	return prev, nil
}
