package node

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/certs"
)

// Forgeries of a closed node's store for the tests of package node_test:
// what a province that owns its disk could do to its trail.

// RewriteTrail edits entry seq of the trail in dir and recomputes the chain
// after it and the head, as a forger who wants the trail to pass its own
// check (VerifyAuditTrail) would.
func RewriteTrail(dir string, seq uint64, change func(*AuditEntry)) error {
	return forgeTrail(dir, func(txn *badger.Txn, recs []AuditRecord) (uint64, [32]byte, error) {
		var prev [32]byte
		for i := range recs {
			e := recs[i].AuditEntry
			if e.Seq < seq {
				p, _ := hex.DecodeString(recs[i].Hash)
				copy(prev[:], p)
				continue
			}
			if e.Seq == seq {
				change(&e)
			}
			e.Prev = hex.EncodeToString(prev[:])
			v, err := encodeAuditEntry(&e, e.Seq, prev)
			if err != nil {
				return 0, prev, err
			}
			if err := txn.Set(auditKey(e.Seq), v); err != nil {
				return 0, prev, err
			}
			b, err := json.Marshal(&e)
			if err != nil {
				return 0, prev, err
			}
			prev = certs.SM3(b)
		}
		return uint64(len(recs)), prev, nil
	})
}

// TruncateTrail cuts the trail in dir after entry keep and sets the head
// there.
func TruncateTrail(dir string, keep uint64) error {
	return forgeTrail(dir, func(txn *badger.Txn, recs []AuditRecord) (uint64, [32]byte, error) {
		var head [32]byte
		for _, r := range recs {
			if r.Seq <= keep {
				p, _ := hex.DecodeString(r.Hash)
				copy(head[:], p)
				continue
			}
			if err := txn.Delete(auditKey(r.Seq)); err != nil {
				return 0, head, err
			}
		}
		return keep, head, nil
	})
}

// forgeTrail reads the whole trail in dir and lets forge change it in one
// transaction; forge returns the new head.
func forgeTrail(dir string, forge func(*badger.Txn, []AuditRecord) (uint64, [32]byte, error)) error {
	db, err := openBadger(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer db.Close()
	var recs []AuditRecord
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(pAudit)})
		defer it.Close()
		want, prev := uint64(1), zeroHash
		for it.Rewind(); it.Valid(); it.Next() {
			rec, err := readAuditRecord(it.Item(), want, prev)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
			prev = rec.Hash
			want++
		}
		return nil
	})
	if err != nil {
		return err
	}
	return db.Update(func(txn *badger.Txn) error {
		last, head, err := forge(txn, recs)
		if err != nil {
			return err
		}
		return txn.Set([]byte(kAuditHead), append(u64b(last), head[:]...))
	})
}
