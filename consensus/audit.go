package consensus

import (
	"bytes"
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/compact"
)

// Audit re-derives the tree from the stored leaves and checks it against
// everything the member stored about it: each leaf's hash and its
// leaf-hash index entry, every perfect-subtree node, the compact range and
// root, and the root of every committed checkpoint. A leaf altered on disk
// (or a node, or a checkpoint) is reported with its index.
func (h *Hub) Audit(ctx context.Context) error { return h.fsm.audit(ctx) }

func (f *fsm) audit(ctx context.Context) error {
	st, _ := f.state()
	var hs exchange.LogHasher
	rng := f.rf.NewEmptyRange(0)
	roots := map[uint64][]byte{}
	cps := map[uint64][]byte{}
	err := f.view(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: []byte("C")})
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			n, err := exchange.ParseCheckpoint(v)
			if err != nil {
				it.Close()
				return err
			}
			cps[n.Size] = n.Root
		}
		it.Close()
		var bad error
		for i := uint64(0); i < st.Size; i++ {
			if i%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			leaf, err := getVal(tx, keyLeaf(i))
			if err != nil {
				return err
			}
			if leaf == nil {
				return fmt.Errorf("audit: leaf %d is missing", i)
			}
			lh := hs.HashLeaf(leaf)
			if v, _ := getVal(tx, keyHash(lh)); !bytes.Equal(v, be8(i)) {
				return fmt.Errorf("audit: leaf %d does not hash to what the log recorded for it (altered leaf bytes)", i)
			}
			err = rng.Append(lh, func(id compact.NodeID, h []byte) {
				if bad != nil {
					return
				}
				if v, _ := getVal(tx, keyNode(id)); !bytes.Equal(v, h) {
					bad = fmt.Errorf("audit: tree node %d/%d disagrees with the leaves (leaf %d or the node was altered)", id.Level, id.Index, i)
				}
			})
			if err != nil {
				return err
			}
			if bad != nil {
				return bad
			}
			if _, ok := cps[i+1]; ok {
				r, err := rng.GetRootHash(nil)
				if err != nil {
					return err
				}
				roots[i+1] = r
			}
		}
		v, err := getVal(tx, keyRange)
		if err != nil {
			return err
		}
		if v != nil && !bytes.Equal(v, f.encodeRange(rng)) {
			return fmt.Errorf("audit: the stored compact range disagrees with the leaves")
		}
		return nil
	})
	if err != nil {
		return err
	}
	root, err := f.rootOf(rng)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, st.Root) {
		return fmt.Errorf("audit: the root recomputed from %d leaves differs from the member's root", st.Size)
	}
	for size, want := range cps {
		if size > st.Size {
			continue
		}
		if !bytes.Equal(roots[size], want) {
			return fmt.Errorf("audit: checkpoint at size %d signs a root the leaves do not give", size)
		}
	}
	return nil
}
