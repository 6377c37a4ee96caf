// Package audit is the national auditor (issue 13): it follows the hub's log
// from one or more members, re-verifies every entry against the trust list
// in force at its index, checks the per-issuer invariants the protocol
// states, checks every signed checkpoint against the tree it recomputes from
// the leaves, and reports any two signed checkpoints that cannot both be
// true (a split view). See docs/decisions.md "Issue 13: the auditor".
package audit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/witness"
	"github.com/transparency-dev/merkle/compact"
)

// Finding kinds.
const (
	KindEnvelope   = "envelope"   // the leaf does not open: signature, signer, revocation, strict decode, content
	KindSeq        = "seq"        // an issuer's batch seq repeats or skips
	KindN          = "n"          // an attestation's n is not above the issuer's last n for that subject
	KindTrust      = "trust"      // a trust list in the log does not apply
	KindCheckpoint = "checkpoint" // a checkpoint is unsigned, malformed, smaller than one seen, or has another root than the leaves
	KindLeaf       = "leaf"       // a member answered another leaf for an index than the audited log
	KindSplitView  = "split_view" // two signed checkpoints that cannot both be true
	KindProof      = "proof"      // a consistency proof that does not hold
	// KindCosignature: a witness cosignature on a checkpoint, by a witness
	// of the trust list, that does not verify.
	KindCosignature = "bad_cosignature"
)

// Kinds are the finding kinds, in a fixed order (metrics).
var Kinds = []string{KindEnvelope, KindSeq, KindN, KindTrust, KindCheckpoint, KindLeaf, KindSplitView, KindProof, KindCosignature,
	KindTrailForked, KindTrailRewritten, KindTrailTruncated, KindTrailBroken}

// Finding is one thing wrong, named by where it was seen.
type Finding struct {
	Kind   string  `json:"kind"`
	Member string  `json:"member,omitempty"` // the member (or gossip source) that served it
	Index  *uint64 `json:"index,omitempty"`  // the leaf index, for leaf findings
	Size   uint64  `json:"size,omitempty"`   // the tree size, for checkpoint findings
	// Witness is the witness whose cosignature does not verify.
	Witness string   `json:"witness,omitempty"`
	Detail  string   `json:"detail"`
	Notes   []string `json:"notes,omitempty"` // the signed checkpoint notes that prove it
	// Province and Seq name a trail finding's province and the trail seq
	// of the logged head it is about.
	Province string `json:"province,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
}

func (f Finding) String() string {
	s := f.Kind
	if f.Member != "" {
		s += " at " + f.Member
	}
	if f.Index != nil {
		s += fmt.Sprintf(" index %d", *f.Index)
	}
	if f.Size != 0 {
		s += fmt.Sprintf(" size %d", f.Size)
	}
	if f.Province != "" {
		s += fmt.Sprintf(" province %s trail seq %d", f.Province, f.Seq)
	}
	return s + ": " + f.Detail
}

func idx(i uint64) *uint64 { return &i }

var ranges = compact.RangeFactory{Hash: exchange.LogHasher{}.HashChildren}

// Keys in the auditor's store.
const (
	kState = "state"
	// kWitness holds the state of the auditor's own witness (hcx audit
	// --watch): the largest checkpoint it cosigned.
	kWitness = "witness"
	pN       = "n/" // n/<issuer>/<subject> -> n (8 bytes) || index (8 bytes)
)

// state is what the auditor keeps between runs besides the per-subject n.
type state struct {
	Size      uint64            `json:"size"`       // leaves verified
	Hashes    [][]byte          `json:"hashes"`     // the compact range of those leaves
	Seq       map[string]uint64 `json:"seq"`        // per issuer, the last batch seq
	TrustList string            `json:"trust_list"` // the newest trust list applied
	Last      string            `json:"last"`       // the largest signed checkpoint verified against the tree
	// Trails are the provinces' operator trails, by province (trail.go).
	Trails map[string]*trailState `json:"trails,omitempty"`
}

// Verifier is the auditor's verification core: it takes the log's leaves in
// order and returns what is wrong with each; Commit stores its state.
type Verifier struct {
	db    *badger.DB
	trust *certs.TrustStore
	st    state
	rng   *compact.Range
	// pending per-subject n of the leaves since the last Commit.
	pending map[string][16]byte
	// heads are the trail heads taken since the last Commit, by key;
	// forget the provinces whose heads up to a seq a check made needless.
	heads  map[string][]byte
	forget map[string]uint64
}

// OpenVerifier opens (or creates) the auditor's store in dir, pinned to the
// national root rootDER.
func OpenVerifier(dir string, rootDER []byte) (*Verifier, error) {
	opts := badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(16 << 20).WithNumMemtables(2).WithBlockCacheSize(16 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open the auditor's store %s: %w", dir, err)
	}
	v := &Verifier{db: db, pending: map[string][16]byte{}, heads: map[string][]byte{}, forget: map[string]uint64{}}
	if v.trust, err = certs.NewTrustStoreDER(rootDER); err != nil {
		db.Close()
		return nil, fmt.Errorf("national root: %w", err)
	}
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kState))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return json.Unmarshal(b, &v.st) })
	})
	if err == nil && v.st.TrustList != "" {
		_, err = exchange.ApplyTrustList(v.trust, v.st.TrustList)
	}
	if err == nil {
		v.rng, err = ranges.NewRange(0, v.st.Size, v.st.Hashes)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("the auditor's store %s: %w", dir, err)
	}
	if v.st.Seq == nil {
		v.st.Seq = map[string]uint64{}
	}
	if v.st.Trails == nil {
		v.st.Trails = map[string]*trailState{}
	}
	return v, nil
}

// WitnessStore keeps the auditor's witness state (package witness) in the
// auditor's store, beside what it verified.
func (v *Verifier) WitnessStore() witness.Store { return witness.NewBadgerStore(v.db, kWitness) }

// Close closes the store; call Commit first to keep what was verified.
func (v *Verifier) Close() error { return v.db.Close() }

// Size is how many leaves the verifier has taken.
func (v *Verifier) Size() uint64 { return v.rng.End() }

// Root is the root of the tree of the leaves taken.
func (v *Verifier) Root() []byte {
	if v.rng.End() == 0 {
		return exchange.LogHasher{}.EmptyRoot()
	}
	r, _ := v.rng.GetRootHash(nil)
	return r
}

// Trust is the trust store in force after the leaves taken.
func (v *Verifier) Trust() *certs.TrustStore { return v.trust }

// Range is a copy of the compact range of the leaves taken.
func (v *Verifier) Range() *compact.Range {
	hs := make([][]byte, len(v.rng.Hashes()))
	for i, h := range v.rng.Hashes() {
		hs[i] = append([]byte(nil), h...)
	}
	r, _ := ranges.NewRange(0, v.rng.End(), hs)
	return r
}

// Append takes the next leaf of the log, committed at committed (zero if
// the hub did not say), and returns what is wrong with it. The leaf joins
// the tree whatever it holds: the tree is the hub's, the findings are ours.
func (v *Verifier) Append(raw string, committed time.Time) ([]Finding, error) {
	i := v.rng.End()
	if err := v.rng.Append(exchange.LogHasher{}.HashLeaf([]byte(raw)), nil); err != nil {
		return nil, err
	}
	bad := func(kind, format string, a ...any) []Finding {
		return []Finding{{Kind: kind, Index: idx(i), Detail: fmt.Sprintf(format, a...)}}
	}
	h, err := certs.ParseHeader(raw)
	if err != nil {
		return bad(KindEnvelope, "not a signed envelope: %v", err), nil
	}
	if h.Typ == exchange.HdrTrust {
		if _, err := exchange.ApplyTrustList(v.trust, raw); err != nil {
			return bad(KindTrust, "the trust list does not apply: %v", err), nil
		}
		v.st.TrustList = raw
		return nil, nil
	}
	env, err := exchange.OpenLogged(v.trust, raw, committed)
	if err != nil {
		return bad(KindEnvelope, "%v", err), nil
	}
	if err := exchange.CheckContent(env); err != nil {
		return bad(KindEnvelope, "%s content: %v", env.Typ, err), nil
	}
	if env.Typ == exchange.TypAuditHead {
		h, _ := exchange.DecodeAuditHead(env) // CheckContent decoded it
		return v.appendHead(i, h), nil
	}
	if env.Typ != exchange.TypBatch {
		return nil, nil
	}
	b, _ := exchange.DecodeBatch(env) // CheckContent decoded it
	var out []Finding
	last := v.st.Seq[string(b.Iss)]
	if b.Seq != last+1 {
		what := "skips"
		if b.Seq <= last {
			what = "repeats"
		}
		out = append(out, bad(KindSeq, "issuer %s batch seq %d %s: the last batch had seq %d", b.Iss, b.Seq, what, last)...)
	}
	v.st.Seq[string(b.Iss)] = max(last, b.Seq)
	for _, a := range b.Atts {
		prev, found, err := v.lastN(b.Iss, a.Subject)
		if err != nil {
			return nil, err
		}
		if found && prev >= a.N {
			out = append(out, bad(KindN, "issuer %s, subject %s: n %d is not above the last n %d", b.Iss, a.Subject, a.N, prev)...)
			continue
		}
		var val [16]byte
		binary.BigEndian.PutUint64(val[:8], a.N)
		binary.BigEndian.PutUint64(val[8:], i)
		v.pending[nKey(b.Iss, a.Subject)] = val
	}
	return out, nil
}

func nKey(iss hcx.ProvinceCode, sub hcx.Subject) string { return pN + string(iss) + "/" + string(sub) }

// lastN is the last n the issuer gave the subject, in the leaves taken.
func (v *Verifier) lastN(iss hcx.ProvinceCode, sub hcx.Subject) (uint64, bool, error) {
	k := nKey(iss, sub)
	if val, ok := v.pending[k]; ok {
		return binary.BigEndian.Uint64(val[:8]), true, nil
	}
	var n uint64
	found := false
	err := v.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(k))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) != 16 {
				return fmt.Errorf("stored %s is %d bytes, want 16", k, len(b))
			}
			// A value stored from a leaf at or after this one is from a run
			// that stopped before it stored its position: not a repeat.
			if binary.BigEndian.Uint64(b[8:]) < v.rng.End()-1 {
				n, found = binary.BigEndian.Uint64(b[:8]), true
			}
			return nil
		})
	})
	return n, found, err
}

// Commit stores what the leaves taken since the last Commit changed, then
// the position: a crash in between re-reads those leaves on the next run,
// which lastN tells apart from repeats.
func (v *Verifier) Commit() error {
	wb := v.db.NewWriteBatch()
	defer wb.Cancel()
	for k, val := range v.pending {
		if err := wb.Set([]byte(k), append([]byte(nil), val[:]...)); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store per-subject n: %w", err)
	}
	clear(v.pending)
	if err := v.commitTrails(); err != nil {
		return err
	}
	v.st.Size, v.st.Hashes = v.rng.End(), v.rng.Hashes()
	b, err := json.Marshal(v.st)
	if err != nil {
		return err
	}
	return v.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(kState), b) })
}

// LastCheckpoint is the largest signed checkpoint verified in an earlier
// run, nil if none.
func (v *Verifier) LastCheckpoint() *exchange.Checkpoint {
	if v.st.Last == "" {
		return nil
	}
	cp, err := exchange.ParseCheckpoint([]byte(v.st.Last))
	if err != nil {
		return nil
	}
	return cp
}

// SetLastCheckpoint records note as the largest verified checkpoint (kept by
// the next Commit).
func (v *Verifier) SetLastCheckpoint(note []byte) { v.st.Last = string(note) }
