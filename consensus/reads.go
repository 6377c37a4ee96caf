package consensus

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// State is what a member has applied: its Raft applied index, the tree size
// and root there, and the size of the newest checkpoint.
type State struct {
	Applied        uint64 `json:"applied"`
	Size           uint64 `json:"size"`
	Root           []byte `json:"root"`
	CheckpointSize uint64 `json:"checkpoint_size"`
}

func (f *fsm) state() (State, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return State{Applied: f.applied, Size: f.size, Root: f.root, CheckpointSize: f.cpSize}, f.changed
}

func (f *fsm) view(fn func(tx *badger.Txn) error) error {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	return f.db.View(fn)
}

// waitSize blocks until the tree holds more than n leaves, ctx ends or wait
// passes; it returns the state then.
func (f *fsm) waitSize(ctx context.Context, n uint64, wait time.Duration) State {
	st, ch := f.state()
	if st.Size > n || wait <= 0 {
		return st
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ch:
		case <-t.C:
			st, _ = f.state()
			return st
		case <-ctx.Done():
			st, _ = f.state()
			return st
		}
		st, ch = f.state()
		if st.Size > n {
			return st
		}
	}
}

// maxEntriesBytes bounds one page of entries.
const maxEntriesBytes = 8 << 20

// entries reads leaves [start, start+limit) below size, and each one's
// commit time (0 for a leaf logged before commit times were recorded).
func (f *fsm) entries(start uint64, limit int, size uint64) ([]string, []int64, error) {
	out, times := []string{}, []int64{}
	if start >= size {
		return out, times, nil
	}
	end := min(size, start+uint64(limit))
	total := 0
	err := f.view(func(tx *badger.Txn) error {
		for i := start; i < end; i++ {
			v, err := getVal(tx, keyLeaf(i))
			if err != nil {
				return err
			}
			if v == nil {
				return fmt.Errorf("leaf %d missing below size %d", i, size)
			}
			if total > 0 && total+len(v) > maxEntriesBytes {
				break
			}
			var ct int64
			if tv, err := getVal(tx, keyLeafTime(i)); err != nil {
				return err
			} else if tv != nil {
				u, err := getBE8(tv)
				if err != nil {
					return fmt.Errorf("commit time of leaf %d: %w", i, err)
				}
				ct = int64(u)
			}
			total += len(v)
			out = append(out, string(v))
			times = append(times, ct)
		}
		return nil
	})
	return out, times, err
}

func (f *fsm) subject(sub string) ([]exchange.LoggedAttestation, error) {
	out := []exchange.LoggedAttestation{}
	prefix := append(append([]byte("s"), sub...), 0)
	type best struct {
		n, idx   uint64
		off, len uint32
		raw      []byte
	}
	byIss := map[string]*best{}
	var order []string
	err := f.view(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			// key: s <sub> 0 <iss> 0 <n(8)> <idx(8)>, ascending in (iss, n, idx)
			k := it.Item().Key()
			if len(k) < len(prefix)+18 {
				return fmt.Errorf("subject key of %d bytes", len(k))
			}
			iss := string(k[len(prefix) : len(k)-17])
			n, _ := getBE8(k[len(k)-16 : len(k)-8])
			idx, _ := getBE8(k[len(k)-8:])
			b, ok := byIss[iss]
			if !ok {
				b = &best{}
				byIss[iss] = b
				order = append(order, iss)
			} else if n <= b.n {
				continue // the first leaf with the highest n wins
			}
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("subject entry of %d bytes", len(v))
				}
				b.off, b.len = binary.BigEndian.Uint32(v[:4]), binary.BigEndian.Uint32(v[4:])
				return nil
			})
			if err != nil {
				return err
			}
			b.n, b.idx = n, idx
		}
		for _, iss := range order {
			b := byIss[iss]
			leaf, err := getVal(tx, keyLeaf(b.idx))
			if err != nil || leaf == nil {
				return fmt.Errorf("subject %s: leaf %d unreadable: %v", sub, b.idx, err)
			}
			if b.raw, err = payloadSlice(leaf, b.off, b.len); err != nil {
				return fmt.Errorf("subject %s: leaf %d: %w", sub, b.idx, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, iss := range order {
		b := byIss[iss]
		la := exchange.LoggedAttestation{Iss: hcx.ProvinceCode(iss), Index: b.idx}
		if err := json.Unmarshal(b.raw, &la.Attestation); err != nil {
			return nil, fmt.Errorf("subject %s from %s: %w", sub, iss, err)
		}
		out = append(out, la)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Iss < out[j].Iss })
	return out, nil
}

func (f *fsm) get(k []byte) ([]byte, error) {
	var v []byte
	err := f.view(func(tx *badger.Txn) error {
		var err error
		v, err = getVal(tx, k)
		return err
	})
	return v, err
}

func (f *fsm) trust() ([]byte, error) {
	v, err := f.get(keyTrust)
	if err != nil || v == nil {
		return nil, err
	}
	idx, err := getBE8(v)
	if err != nil {
		return nil, err
	}
	return f.get(keyLeaf(idx))
}

func (f *fsm) leafIndex(lh []byte) (uint64, bool, error) {
	v, err := f.get(keyHash(lh))
	if err != nil || v == nil {
		return 0, false, err
	}
	idx, err := getBE8(v)
	return idx, err == nil, err
}

func (f *fsm) nodeHashes(ids []compact.NodeID) ([][]byte, error) {
	hs := make([][]byte, len(ids))
	err := f.view(func(tx *badger.Txn) error {
		for i, id := range ids {
			v, err := getVal(tx, keyNode(id))
			if err != nil {
				return err
			}
			if v == nil {
				return fmt.Errorf("tree node %d/%d missing", id.Level, id.Index)
			}
			hs[i] = v
		}
		return nil
	})
	return hs, err
}

func (f *fsm) inclusion(index, size uint64) ([][]byte, error) {
	st, _ := f.state()
	if size > st.Size {
		return nil, hcx.Errorf(hcx.ENotFound, "size_beyond_tree", "size %d is beyond this member's tree (%d leaves applied)", size, st.Size)
	}
	if index >= size {
		return nil, &hcx.Error{Class: hcx.EInvalid, Code: "invalid_index", Field: "index", Message: fmt.Sprintf("index %d is not below size %d", index, size)}
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return f.proofHashes(n)
}

func (f *fsm) consistency(from, to uint64) ([][]byte, error) {
	st, _ := f.state()
	if to > st.Size {
		return nil, hcx.Errorf(hcx.ENotFound, "size_beyond_tree", "size %d is beyond this member's tree (%d leaves applied)", to, st.Size)
	}
	if from > to {
		return nil, &hcx.Error{Class: hcx.EInvalid, Code: "invalid_from", Field: "from", Message: fmt.Sprintf("from %d is above to %d", from, to)}
	}
	n, err := proof.Consistency(from, to)
	if err != nil {
		return nil, err
	}
	return f.proofHashes(n)
}

// proofHashes reads the stored node hashes a proof needs and folds them into
// the proof's hashes.
func (f *fsm) proofHashes(n proof.Nodes) ([][]byte, error) {
	hs, err := f.nodeHashes(n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hs, exchange.LogHasher{}.HashChildren)
}

func (f *fsm) members() (map[string]Member, error) {
	out := map[string]Member{}
	err := f.view(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: []byte("m"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var m Member
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
				return err
			}
			out[m.ID] = m
		}
		return nil
	})
	return out, err
}

// payloadSlice returns bytes [off, off+n) of a compact JWS's decoded
// payload, decoding only the base64 groups that cover them.
func payloadSlice(leaf []byte, off, n uint32) ([]byte, error) {
	d1 := bytes.IndexByte(leaf, '.')
	d2 := bytes.LastIndexByte(leaf, '.')
	if d1 < 0 || d2 <= d1 {
		return nil, fmt.Errorf("not a compact JWS")
	}
	p := leaf[d1+1 : d2]
	first := int(off) / 3
	last := (int(off) + int(n) + 2) / 3 // groups, rounded up
	cs, ce := first*4, min(last*4, len(p))
	if cs >= ce {
		return nil, fmt.Errorf("attestation at %d+%d is outside the payload", off, n)
	}
	dec := make([]byte, base64.RawURLEncoding.DecodedLen(ce-cs))
	m, err := base64.RawURLEncoding.Decode(dec, p[cs:ce])
	if err != nil {
		return nil, err
	}
	start := int(off) - first*3
	if start+int(n) > m {
		return nil, fmt.Errorf("attestation at %d+%d is outside the payload", off, n)
	}
	return dec[start : start+int(n)], nil
}
