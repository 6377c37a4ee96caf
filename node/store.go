package node

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// Keys. Subjects and province codes are fixed-width ASCII, so prefixes never
// collide and iteration order is meaningful.
const (
	pResident = "res/"     // res/<sub> -> residentRecord
	pHistory  = "hist/"    // hist/<sub> -> history: the resident's bounded events
	pState    = "state/"   // state/<sub> -> colourState
	pOutbox   = "outbox/"  // outbox/<seq 20> -> hcx.Attestation
	pForeign  = "foreign/" // foreign/<sub>/<iss> -> exchange.LoggedAttestation

	kOutboxNext = "meta/outbox-next"   // next outbox sequence
	kBatchSeq   = "meta/batch-seq"     // last batch sequence the hub acknowledged
	kPending    = "meta/pending-batch" // pendingBatch: signed, maybe submitted, not yet acknowledged
	kFollowNext = "meta/follow-next"   // next log index to read
	kFollowTree = "meta/follow-tree"   // size || compact range of the applied log prefix
	kTrustList  = "meta/trust-list"    // newest trust-list envelope applied
	// kFollowCheckpoint is the newest hub checkpoint verified against the
	// applied tree, with the consistency proof (treeCheckpoint).
	kFollowCheckpoint = "meta/follow-checkpoint"
	// kFollowWitnessed is the newest checkpoint with Config.Cosignatures
	// witness cosignatures verified against the applied tree, with the
	// consistency proof (treeCheckpoint; witness.go).
	kFollowWitnessed = "meta/follow-witnessed"
	kPolicyPub       = "meta/policy-published"

	// Written by versions before bounded histories; New folds them into
	// histories and deletes them.
	pEvent     = "ev/"             // ev/<sub>/<unix nanos 20>/<seq 20> -> event
	kEventNext = "meta/event-next" // next event sequence
)

func openBadger(dir string, log *slog.Logger) (*badger.DB, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithIndexCacheSize(128 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open node store %s: %w", dir, err)
	}
	return db, nil
}

// badgerLogger routes badger's messages into slog, warnings and errors only.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (l badgerLogger) Infof(string, ...any)  {}
func (l badgerLogger) Debugf(string, ...any) {}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64b(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// getJSON reads key into v; it reports false if the key is absent.
func getJSON(txn *badger.Txn, key string, v any) (bool, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set([]byte(key), b)
}

func getU64(txn *badger.Txn, key string) (uint64, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error { v = u64(b); return nil })
	return v, err
}

func setU64(txn *badger.Txn, key string, v uint64) error { return txn.Set([]byte(key), u64b(v)) }

// seqKey formats a sequence number so that keys sort numerically.
func seqKey(prefix string, v uint64) []byte { return []byte(fmt.Sprintf("%s%020d", prefix, v)) }
