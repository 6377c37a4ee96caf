package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Bundle is a built offline verification bundle (PROTOCOL.md §9): a file
// holding the signed header line and the records.
type Bundle struct {
	Path   string // the file; it stays until a newer bundle replaces it
	Size   uint64 // the log size it reflects
	Header exchange.BundleHeader
	Bytes  int64
	ETag   string // quoted SM3 of the header line
	Built  time.Time
}

type bundleCache struct {
	mu  sync.Mutex // held while building: one build at a time
	cur *Bundle
}

// ErrNoCheckpoint says that the node has not verified a hub checkpoint for
// the log it applied yet, so it cannot make a bundle a device could check.
var ErrNoCheckpoint = &hcx.Error{Class: hcx.EUnavailable, Code: "no_checkpoint", Message: "this node has not verified a hub checkpoint for its log yet; try again in a few seconds"}

// VerificationBundle returns the newest bundle, building one when the log
// grew and the last build is older than cfg.BundleInterval. Builds are
// single-flight: concurrent callers wait for the one build.
func (n *Node) VerificationBundle() (*Bundle, error) {
	n.bundle.mu.Lock()
	defer n.bundle.mu.Unlock()
	now := n.cfg.Now().UTC()
	if cur := n.bundle.cur; cur != nil && (cur.Size == n.Applied() || now.Sub(cur.Built) < n.cfg.BundleInterval) {
		return cur, nil
	}
	b, err := n.buildBundle(now)
	if err != nil {
		return nil, err
	}
	if old := n.bundle.cur; old != nil && old.Path != b.Path {
		os.Remove(old.Path)
	}
	n.bundle.cur = b
	return b, nil
}

// buildBundle reads the tree, its checkpoint, the trust list and every
// foreign attestation in one read transaction, and writes the bundle to a
// file in the node's directory.
func (n *Node) buildBundle(now time.Time) (*Bundle, error) {
	var (
		tree  *logTree
		trust []byte
		recs  [][exchange.BundleRecordSize]byte
		cpt   *exchange.Checkpoint
		tc    *treeCheckpoint // the checkpoint the bundle carries
	)
	issuers := map[hcx.ProvinceCode]int{}
	reasons := map[string][]hcx.Reason{}
	type pending struct {
		key  [16]byte
		iss  hcx.ProvinceCode
		col  hcx.Colour
		rs   string
		e, x int64
	}
	var ps []pending
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		if tree, err = loadLogTree(txn); err != nil {
			return err
		}
		if tc = tree.cp; n.cfg.Cosignatures > 0 {
			// A node that requires cosignatures vouches only for its
			// newest k-witnessed checkpoint (witness.go).
			if tc = tree.wcp; tc == nil {
				return ErrNoWitnessedCheckpoint
			}
		}
		if tc == nil {
			return ErrNoCheckpoint
		}
		if cpt, err = exchange.ParseCheckpoint([]byte(tc.Note)); err != nil {
			return err
		}
		item, err := txn.Get([]byte(kTrustList))
		if err != nil {
			return fmt.Errorf("trust list: %w", err)
		}
		if trust, err = item.ValueCopy(nil); err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pForeign), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a exchange.LoggedAttestation
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &a) }); err != nil {
				return fmt.Errorf("attestation %s: %w", it.Item().Key(), err)
			}
			if !exchange.BundleCounts(&a.Attestation, cpt.Time) {
				continue
			}
			issuers[a.Iss] = 0
			rs := reasonKey(a.Reasons)
			reasons[rs] = a.Reasons
			ps = append(ps, pending{exchange.BundleKey(a.Subject), a.Iss, a.Colour, rs, a.Eff, a.Exp})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	h := exchange.BundleHeader{Iss: n.cfg.Province, Size: tree.rng.End(), Root: b64(tree.root), Checkpoint: tc.Note,
		Proof: make([]string, len(tc.Proof)), Trust: string(trust), At: now.Unix(), MaxAge: int64(n.cfg.OfflineMaxAge / time.Second),
		Count: uint64(len(ps)), Issuers: []hcx.ProvinceCode{}, Reasons: [][]hcx.Reason{}}
	for i, p := range tc.Proof {
		h.Proof[i] = b64(p)
	}
	for iss := range issuers {
		h.Issuers = append(h.Issuers, iss)
	}
	sort.Slice(h.Issuers, func(i, j int) bool { return h.Issuers[i] < h.Issuers[j] })
	for i, iss := range h.Issuers {
		issuers[iss] = i
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	reasonIdx := make(map[string]int, len(keys))
	for i, k := range keys {
		reasonIdx[k] = i
		rs := reasons[k]
		if rs == nil {
			rs = []hcx.Reason{}
		}
		h.Reasons = append(h.Reasons, rs)
	}
	recs = make([][exchange.BundleRecordSize]byte, len(ps))
	for i, p := range ps {
		b, err := exchange.AppendBundleRecord(recs[i][:0], exchange.BundleRecord{Key: p.key, Issuer: uint16(issuers[p.iss]), Colour: p.col,
			Reasons: uint16(reasonIdx[p.rs]), Eff: p.e, Exp: p.x})
		if err != nil {
			return nil, fmt.Errorf("attestation of %s about a subject: %w", p.iss, err)
		}
		copy(recs[i][:], b)
	}
	ps = nil
	sort.Slice(recs, func(i, j int) bool { return bytes.Compare(recs[i][:18], recs[j][:18]) < 0 })
	sum := certs.NewSM3()
	for i := range recs {
		sum.Write(recs[i][:])
	}
	h.Body = base64.StdEncoding.EncodeToString(sum.Sum(nil))
	hdr, err := exchange.SealBundleHeader(n.cfg.Signer, &h)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.cfg.Dir, "bundles")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "bundle-*.tmp")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	w := bufio.NewWriterSize(f, 1<<16)
	w.WriteString(hdr + "\n")
	for i := range recs {
		w.Write(recs[i][:])
	}
	err = errors.Join(w.Flush(), f.Sync(), f.Close())
	if err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("bundle-%d-%d", h.Size, now.UnixNano()))
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, err
	}
	tag := certs.SM3([]byte(hdr))
	return &Bundle{Path: path, Size: h.Size, Header: h, Bytes: int64(len(hdr)+1) + int64(len(recs))*exchange.BundleRecordSize,
		ETag: `"` + base64.RawURLEncoding.EncodeToString(tag[:16]) + `"`, Built: now}, nil
}

func reasonKey(rs []hcx.Reason) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, "\x00")
}

// ConsistencyProof fetches from the hub the consistency proof between the
// log of size from and the log of size to, for a device that has a bundle
// of size from and downloads one of size to.
func (n *Node) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	return n.cfg.Hub.ConsistencyProof(ctx, from, to)
}
