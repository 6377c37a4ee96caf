package consensus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/compact"
)

// applyOne applies one command inside the apply transaction. It is
// deterministic: it reads only the transaction and the trust store (itself a
// function of the log), never the clock or the network.
func (f *fsm) applyOne(at *applyTxn, ts *certs.TrustStore, data []byte, pre *prepared) applyResult {
	if raw, stamp, stamped, ok := envelopeOf(data); ok {
		if pre == nil {
			pre = prepare(raw)
		}
		return f.applyEnvelope(at, ts, raw, pre, stamp, stamped)
	}
	body := data[1:]
	switch data[0] {
	case cmdCheckpoint:
		return f.applyCheckpoint(at, body)
	case cmdCosign:
		return f.applyCosign(at, ts, body)
	case cmdMember:
		var m Member
		if err := json.Unmarshal(body, &m); err != nil || m.ID == "" {
			return applyResult{Err: fmt.Errorf("member metadata: %v", err)}
		}
		at.set(keyMember(m.ID), body)
		return applyResult{}
	case cmdForget:
		if err := at.tx.Delete(keyMember(string(body))); err != nil {
			panic(fmt.Sprintf("hub fsm: delete member: %v", err))
		}
		return applyResult{}
	}
	return applyResult{Err: fmt.Errorf("unknown command %d", data[0])}
}

// leafInfo is what the FSM reads from an envelope without checking its
// signature again: the signature was verified before the entry was proposed
// (see DESIGN.md, "verification and determinism").
type leafInfo struct {
	kid string
	payloadInfo
}

type payloadInfo struct {
	typ, iss string
	at       int64
	seq      uint64
	atts     []attRef
	head     *exchange.AuditHead // a trail head's payload
}

type attRef struct {
	sub      string
	n        uint64
	off, len uint32 // the attestation's bytes in the decoded payload
}

// parseLeaf reads a leaf with exchange's strict reader, the same reading
// the hub verified before proposing (exchange.ReadLeaf).
func parseLeaf(raw []byte) (leafInfo, error) {
	x, err := exchange.ReadLeaf(raw)
	if err != nil {
		return leafInfo{}, err
	}
	li := leafInfo{kid: x.Kid, payloadInfo: payloadInfo{typ: x.Typ, iss: x.Iss, at: x.At, seq: x.Seq, head: x.Head}}
	if len(x.Atts) > 0 {
		li.atts = make([]attRef, len(x.Atts))
		for i, a := range x.Atts {
			li.atts[i] = attRef{sub: a.Sub, n: a.N, off: a.Off, len: a.Len}
		}
	}
	return li, nil
}

// applyEnvelope appends one envelope. stamp is the proposing member's clock
// (Unix seconds) when stamped; the leaf's commit time is the latest stamp
// so far, so commit times never go back whatever the leaders' clocks. An
// unstamped (legacy) command is decided as before commit times existed: at
// the signed at, with no commit time recorded.
func (f *fsm) applyEnvelope(at *applyTxn, ts *certs.TrustStore, raw []byte, pre *prepared, stamp int64, stamped bool) applyResult {
	lh := pre.lh
	if v, err := getVal(at.tx, keyHash(lh)); err != nil {
		panic(fmt.Sprintf("hub fsm: read: %v", err))
	} else if v != nil {
		idx, _ := getBE8(v)
		return applyResult{Index: idx, LeafHash: lh, Dup: true}
	}
	li, err := pre.li, pre.err
	if err != nil {
		return applyResult{Err: classify(err)}
	}
	// Revocation re-check: a trust list that revoked the signer may have
	// committed between verification and now. The trust store here is the
	// state after exactly the entries before this one, and the commit time
	// comes from the entry, so every member decides the same way.
	e, err := ts.Lookup(li.kid)
	if err != nil {
		return applyResult{Err: classify(err)}
	}
	var committed time.Time
	commitAt := f.lastCommit
	if stamped {
		// Skew against the proposer's own clock, not the running maximum:
		// one member with a clock far ahead must not block every write.
		if err := checkSkew(li.at, stamp, "proposed"); err != nil {
			return applyResult{Err: err}
		}
		commitAt = max(f.lastCommit, stamp)
		committed = time.Unix(commitAt, 0)
	}
	if err := exchange.CheckSigner(ts, e, time.Unix(li.at, 0), committed); err != nil {
		return applyResult{Err: classify(err)}
	}
	isBatch := false
	switch li.typ {
	case exchange.TypBatch:
		if len(li.atts) == 0 || li.seq == 0 {
			return applyResult{Err: classify(fmt.Errorf("%w: batch without seq or attestations", certs.ErrMalformed))}
		}
		iss := li.iss
		last := uint64(0)
		if v, err := getVal(at.tx, keyLastSeq(iss)); err != nil {
			panic(fmt.Sprintf("hub fsm: read: %v", err))
		} else if v != nil {
			last, _ = getBE8(v)
		}
		switch {
		case li.seq <= last:
			return applyResult{Err: seqConflict(iss, li.seq, last+1, "was already used by different bytes")}
		case li.seq > last+1:
			return applyResult{Err: seqConflict(iss, li.seq, last+1, "leaves a gap")}
		}
		isBatch = true
	case exchange.TypTrust:
		// Verifies the root's signature and that the version increases, then
		// changes the trust store: the only place the hub's trust changes.
		tl, err := exchange.ApplyTrustList(ts, string(raw))
		if err != nil {
			return applyResult{Err: classify(err)}
		}
		idx := f.rng.End()
		at.set(keyTrustVer(tl.Ver), be8(idx))
		at.set(keyTrust, be8(idx))
		select {
		case f.trustKick <- struct{}{}:
		default:
		}
	case exchange.TypAuditHead:
		if li.head == nil {
			return applyResult{Err: classify(fmt.Errorf("%w: trail head without its payload", certs.ErrMalformed))}
		}
		if err := checkTrailHead(at.tx, li.iss, li.head); err != nil {
			return applyResult{Err: err}
		}
	case exchange.TypPolicy, exchange.TypRiskAreas, exchange.TypVax, exchange.TypExposures, exchange.TypBoxKey, exchange.TypReceipts:
	default:
		return applyResult{Err: classify(fmt.Errorf("%w: unknown envelope typ %q", certs.ErrMalformed, li.typ))}
	}
	idx := f.rng.End()
	at.set(keyLeaf(idx), raw)
	at.set(keyHash(lh), be8(idx))
	if stamped {
		at.set(keyLeafTime(idx), be8(uint64(commitAt)))
		f.lastCommit = commitAt
	}
	if err := f.rng.Append(lh, func(id compact.NodeID, h []byte) { at.set(keyNode(id), h) }); err != nil {
		panic(fmt.Sprintf("hub fsm: append to tree: %v", err))
	}
	if li.typ == exchange.TypAuditHead {
		at.set(keyTrailHead(li.iss), append(be8(li.head.Seq), li.head.Hash...))
	}
	if isBatch {
		iss := li.iss
		at.set(keyLastSeq(iss), be8(li.seq))
		at.set(keySeq(iss, li.seq), be8(idx))
		for _, a := range li.atts {
			// Blind writes: the key orders a subject's attestations from
			// one issuer by (n, leaf index), so a read takes the highest n
			// (the first leaf carrying it) without the FSM reading here.
			var v [8]byte
			binary.BigEndian.PutUint32(v[:4], a.off)
			binary.BigEndian.PutUint32(v[4:], a.len)
			at.set(keySubAt(a.sub, iss, a.n, idx), v[:])
		}
	}
	return applyResult{Index: idx, LeafHash: lh}
}

// checkTrailHead refuses a province's trail head that takes its trail back:
// a lower trail seq than the province's last logged head (conflict naming
// seq), or the same seq with another hash (conflict naming hash). The same
// head again, signed at another time, is logged.
func checkTrailHead(tx *badger.Txn, iss string, h *exchange.AuditHead) error {
	v, err := getVal(tx, keyTrailHead(iss))
	if err != nil {
		panic(fmt.Sprintf("hub fsm: read: %v", err))
	}
	if v == nil {
		return nil
	}
	if len(v) != 8+64 {
		panic(fmt.Sprintf("hub fsm: the stored trail head of %s has %d bytes, want 72", iss, len(v)))
	}
	last, _ := getBE8(v[:8])
	lastHash := string(v[8:])
	switch {
	case h.Seq < last:
		return &hcx.Error{Class: hcx.EConflict, Code: "trail_conflict", Field: "seq",
			Message: fmt.Sprintf("province %s: trail head seq %d is below the last logged head's %d: a trail only grows", iss, h.Seq, last),
			Detail:  map[string]any{"expected": last}}
	case h.Seq == last && h.Hash != lastHash:
		return &hcx.Error{Class: hcx.EConflict, Code: "trail_conflict", Field: "hash",
			Message: fmt.Sprintf("province %s: trail head seq %d has hash %s, the logged head at that seq has %s: a trail entry is never rewritten", iss, h.Seq, h.Hash, lastHash)}
	}
	return nil
}

// applyCheckpoint stores a checkpoint note if it is newer than the last one
// and its root is the tree's root at its size; anything else is refused the
// same way on every member.
func (f *fsm) applyCheckpoint(at *applyTxn, note []byte) applyResult {
	n, err := exchange.ParseCheckpoint(note)
	if err != nil {
		return applyResult{Err: err}
	}
	if n.Size > f.rng.End() {
		return applyResult{Err: fmt.Errorf("checkpoint size %d is beyond the tree (%d)", n.Size, f.rng.End())}
	}
	if n.Size <= f.pendingCPSize() {
		return applyResult{Dup: true}
	}
	root, err := f.rootAtTx(at.tx, n.Size)
	if err != nil {
		return applyResult{Err: err}
	}
	if !bytes.Equal(root, n.Root) {
		return applyResult{Err: hcx.Errorf(hcx.EConflict, "checkpoint_root", "checkpoint root for size %d does not match the tree", n.Size)}
	}
	at.set(keyCP, note)
	at.set(keyCPAt(n.Size), note)
	f.pendingCP = n.Size
	return applyResult{Index: n.Size}
}

func (f *fsm) pendingCPSize() uint64 { return f.pendingCP }

// rootAtTx computes the root of the tree's first size leaves from stored
// perfect-subtree hashes.
func (f *fsm) rootAtTx(tx *badger.Txn, size uint64) ([]byte, error) {
	if size == 0 {
		return f.hasher.EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hs := make([][]byte, len(ids))
	for i, id := range ids {
		v, err := getVal(tx, keyNode(id))
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, fmt.Errorf("tree node %d/%d is missing", id.Level, id.Index)
		}
		hs[i] = v
	}
	r, err := f.rf.NewRange(0, size, hs)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// prepared is the pure, per-entry work of applying an envelope (hashing the
// leaf, decoding the payload), done for a whole ApplyBatch in parallel
// before the entries are applied in order.
type prepared struct {
	lh  []byte
	li  leafInfo
	err error
}

func prepare(raw []byte) *prepared {
	p := &prepared{lh: exchange.LogHasher{}.HashLeaf(raw)}
	p.li, p.err = parseLeaf(raw)
	return p
}
