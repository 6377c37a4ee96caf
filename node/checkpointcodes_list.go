package node

import (
	"context"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// Bounds of a page of checkpoint codes.
const (
	DefaultCheckpointCodePage = 50
	MaxCheckpointCodePage     = 200
)

// CheckpointCodePage is a page of checkpoint codes, newest first; Next is
// the before= of the next (older) page, empty on the last.
type CheckpointCodePage struct {
	Codes []CheckpointCode `json:"codes"`
	Next  string           `json:"next,omitempty"`
}

// CheckpointCodes pages through the node's checkpoint codes, newest first
// (ids start with the second), from before (a page's Next; empty:
// the newest). It answers their state, never a code: the node keeps only
// SM3 of each, and the listing omits even that.
func (n *Node) CheckpointCodes(ctx context.Context, before string, limit int) (*CheckpointCodePage, error) {
	if limit < 1 || limit > MaxCheckpointCodePage {
		limit = DefaultCheckpointCodePage
	}
	if before != "" && (len(before) != 16 || strings.Trim(before, "0123456789abcdef") != "") {
		return nil, hcx.Invalidf("before", "not a cursor this node gave: pass a page's next as it is")
	}
	page := &CheckpointCodePage{Codes: []CheckpointCode{}}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pCPCodeID), Reverse: true})
		defer it.Close()
		start := pCPCodeID + "\xff"
		if before != "" {
			start = pCPCodeID + before
		}
		for it.Seek([]byte(start)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			id := strings.TrimPrefix(string(it.Item().Key()), pCPCodeID)
			if id == before {
				continue
			}
			if len(page.Codes) == limit {
				page.Next = page.Codes[limit-1].ID
				return nil
			}
			key, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			var rec checkpointCodeRecord
			found, err := getJSON(txn, string(key), &rec)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			rec.Code = ""
			if rec.Issued.IsZero() {
				rec.Issued = rec.Expires.Add(-CheckpointCodeTTL)
			}
			page.Codes = append(page.Codes, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}
