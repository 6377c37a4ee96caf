package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/raft"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/compact"
)

// Keys of the FSM's badger state. Integers are 8-byte big-endian so keys sort
// in log order.
//
//	a                      -> last applied Raft index
//	r                      -> compact range of the tree: size(8) || hashes(32 each)
//	l <idx>                -> leaf bytes (the compact JWS)
//	n <level(1)> <idx>     -> hash of a perfect subtree node (level 0: leaf hashes)
//	h <leaf hash>          -> leaf index (idempotent resubmission of any envelope)
//	Q <iss>                -> the issuer's last batch sequence
//	H <iss>                -> the issuer's last logged trail head: trail seq(8) || hash (64 hex)
//	q <iss> 0x00 <seq>     -> leaf index of that batch
//	s <sub> 0 <iss> 0 <n> <idx> -> offset(4) || length(4) of the attestation in leaf idx's payload
//	t <ver>                -> leaf index of trust list version ver
//	T                      -> leaf index of the newest trust list
//	c                      -> newest checkpoint note
//	C <size>               -> checkpoint note at that size (with the witness cosignatures committed for it)
//	W                      -> the newest checkpoint size whose note carries a witness cosignature
//	m <id>                 -> member metadata (JSON)
//	L <idx>                -> commit time of leaf idx, Unix seconds (absent: logged before commit times)
//	w                      -> the latest commit time, Unix seconds
var (
	keyClock     = []byte("w")
	keyApplied   = []byte("a")
	keyRange     = []byte("r")
	keyTrust     = []byte("T")
	keyCP        = []byte("c")
	keyWitnessed = []byte("W")
)

func keyLeaf(i uint64) []byte { return append([]byte("l"), be8(i)...) }
func keyNode(id compact.NodeID) []byte {
	return append([]byte{'n', byte(id.Level)}, be8(id.Index)...)
}
func keyHash(h []byte) []byte        { return append([]byte("h"), h...) }
func keyLastSeq(iss string) []byte   { return append([]byte("Q"), iss...) }
func keyTrailHead(iss string) []byte { return append([]byte("H"), iss...) }
func keySeq(iss string, s uint64) []byte {
	return append(append(append([]byte("q"), iss...), 0), be8(s)...)
}
func keySubAt(sub, iss string, n, idx uint64) []byte {
	k := make([]byte, 0, 1+len(sub)+1+len(iss)+1+16)
	k = append(append(append(append(append(k, 's'), sub...), 0), iss...), 0)
	return append(append(k, be8(n)...), be8(idx)...)
}
func keyTrustVer(v uint64) []byte { return append([]byte("t"), be8(v)...) }
func keyCPAt(size uint64) []byte  { return append([]byte("C"), be8(size)...) }
func keyMember(id string) []byte  { return append([]byte("m"), id...) }
func keyLeafTime(i uint64) []byte { return append([]byte("L"), be8(i)...) }

// fsm is the hub's replicated state machine. Raft calls ApplyBatch, Snapshot
// and Restore from one goroutine; readers call the read methods from any.
type fsm struct {
	log     *slog.Logger
	dir     string // parent of the badger directories
	rootDER []byte
	hasher  exchange.LogHasher
	rf      *compact.RangeFactory
	// cpEvery: after this many leaves past the last checkpoint, poke cpKick.
	cpEvery uint64
	cpKick  chan struct{}
	// trustKick is poked when a trust list has been applied.
	trustKick chan struct{}

	dbMu  sync.RWMutex // write-held only while Restore swaps db
	db    *badger.DB
	snaps *sync.WaitGroup // open snapshot transactions on db
	// retired counts databases replaced by Restore that wait for their
	// snapshots to be released before they are closed and removed.
	retired sync.WaitGroup

	// Owned by the apply goroutine.
	rng       *compact.Range
	pendingCP uint64 // size of the newest checkpoint applied, published after commit
	// lastCommit is the newest leaf's commit time (Unix seconds): the
	// largest stamp of the envelope commands applied so far.
	lastCommit int64

	// busy is the time spent in ApplyBatch, and batches its calls (metrics).
	busy    atomic.Int64
	batches atomic.Int64

	mu      sync.Mutex // guards the published fields below
	applied uint64
	size    uint64
	root    []byte
	cpSize  uint64
	changed chan struct{}
	ts      *certs.TrustStore
}

const currentFile = "CURRENT"

func openFSM(dir string, rootDER []byte, log *slog.Logger, cpEvery uint64) (*fsm, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f := &fsm{log: log, dir: dir, rootDER: rootDER, cpEvery: cpEvery, cpKick: make(chan struct{}, 1), trustKick: make(chan struct{}, 1), changed: make(chan struct{}), snaps: new(sync.WaitGroup)}
	f.rf = &compact.RangeFactory{Hash: f.hasher.HashChildren}
	name := "fsm-0"
	if b, err := os.ReadFile(filepath.Join(dir, currentFile)); err == nil {
		name = strings.TrimSpace(string(b))
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	removeStaleStates(dir, name, log)
	db, err := openBadger(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if err := f.load(db); err != nil {
		db.Close()
		return nil, err
	}
	f.db = db
	return f, nil
}

// removeStaleStates deletes state directories other than the current one: a
// state replaced by a snapshot is removed once its readers are done, and a
// crash in between leaves it behind; so does a crash during a restore.
func removeStaleStates(dir, current string, log *slog.Logger) {
	names, _ := filepath.Glob(filepath.Join(dir, "fsm-*"))
	for _, p := range names {
		if filepath.Base(p) == current {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			log.Warn("could not remove a stale hub state directory", "dir", p, "err", err)
			continue
		}
		log.Info("removed a stale hub state directory", "dir", p)
	}
}

func openBadger(path string) (*badger.DB, error) {
	opts := badger.DefaultOptions(path).
		WithLogger(nil).
		WithSyncWrites(false). // the Raft log is the durable record; see DESIGN.md
		WithValueThreshold(1 << 10).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false).
		WithNumCompactors(2).
		WithMemTableSize(128 << 20).
		WithNumLevelZeroTables(8).
		WithNumLevelZeroTablesStall(24).
		WithCompression(options.None) // leaves are base64 JSON; CPU matters more than disk here
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger %s: %w", path, err)
	}
	return db, nil
}

// load reads the durable state of db into memory: applied index, the
// compact range, the newest checkpoint size, and the trust store rebuilt by
// replaying the committed trust lists in version order.
func (f *fsm) load(db *badger.DB) error {
	ts, err := newTrustStore(f.rootDER)
	if err != nil {
		return err
	}
	var applied, cpSize, clock uint64
	rng := f.rf.NewEmptyRange(0)
	err = db.View(func(tx *badger.Txn) error {
		if v, err := getVal(tx, keyApplied); err != nil {
			return err
		} else if v != nil {
			if applied, err = getBE8(v); err != nil {
				return err
			}
		}
		if v, err := getVal(tx, keyClock); err != nil {
			return err
		} else if v != nil {
			if clock, err = getBE8(v); err != nil {
				return err
			}
		}
		if v, err := getVal(tx, keyRange); err != nil {
			return err
		} else if v != nil {
			if rng, err = f.decodeRange(v); err != nil {
				return err
			}
		}
		if v, err := getVal(tx, keyCP); err != nil {
			return err
		} else if v != nil {
			n, err := exchange.ParseCheckpoint(v)
			if err != nil {
				return fmt.Errorf("stored checkpoint: %w", err)
			}
			cpSize = n.Size
		}
		it := tx.NewIterator(badger.IteratorOptions{Prefix: []byte("t")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			idx, err := getBE8(v)
			if err != nil {
				return err
			}
			leaf, err := getVal(tx, keyLeaf(idx))
			if err != nil || leaf == nil {
				return fmt.Errorf("trust list leaf %d: missing (%v)", idx, err)
			}
			if _, err := exchange.ApplyTrustList(ts, string(leaf)); err != nil {
				return fmt.Errorf("replay trust list at leaf %d: %w", idx, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load hub state: %w", err)
	}
	root, err := f.rootOf(rng)
	if err != nil {
		return err
	}
	f.rng = rng
	f.lastCommit = int64(clock)
	f.mu.Lock()
	f.applied, f.size, f.root, f.cpSize, f.ts = applied, rng.End(), root, cpSize, ts
	f.mu.Unlock()
	f.pendingCP = cpSize
	return nil
}

// trustStore is the trust state after the entries applied so far: the root
// and what the log's trust lists added and revoked.
func (f *fsm) trustStore() *certs.TrustStore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ts
}

func newTrustStore(rootDER []byte) (*certs.TrustStore, error) {
	return certs.NewTrustStoreDER(rootDER)
}

func getVal(tx *badger.Txn, k []byte) ([]byte, error) {
	it, err := tx.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return it.ValueCopy(nil)
}

func (f *fsm) encodeRange(r *compact.Range) []byte {
	out := be8(r.End())
	for _, h := range r.Hashes() {
		out = append(out, h...)
	}
	return out
}

func (f *fsm) decodeRange(b []byte) (*compact.Range, error) {
	if len(b) < 8 || (len(b)-8)%32 != 0 {
		return nil, fmt.Errorf("stored compact range has %d bytes", len(b))
	}
	size, _ := getBE8(b[:8])
	var hs [][]byte
	for p := 8; p < len(b); p += 32 {
		hs = append(hs, append([]byte(nil), b[p:p+32]...))
	}
	return f.rf.NewRange(0, size, hs)
}

func (f *fsm) rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return f.hasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

// Apply applies one log entry.
func (f *fsm) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// txnLimit bounds one badger transaction; a larger ApplyBatch commits in
// pieces at log-entry boundaries, each piece recording its applied index.
const (
	txnMaxOps   = 30000
	txnMaxBytes = 4 << 20
)

type applyTxn struct {
	tx    *badger.Txn
	ops   int
	bytes int
}

func (a *applyTxn) set(k, v []byte) {
	a.ops++
	a.bytes += len(k) + min(len(v), 64)
	if err := a.tx.Set(k, v); err != nil {
		panic(fmt.Sprintf("hub fsm: badger set: %v", err)) // the batch is bounded, so this is a bug or a dead disk
	}
}

// ApplyBatch applies committed entries in one badger transaction (or a few,
// for very large batches). Entries at or below the durable applied index are
// skipped: the FSM is idempotent across restarts.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	t0 := time.Now()
	defer func() { f.busy.Add(int64(time.Since(t0))); f.batches.Add(1) }()
	out := make([]interface{}, len(logs))
	f.dbMu.RLock()
	db := f.db
	f.dbMu.RUnlock()
	f.mu.Lock()
	applied := f.applied
	ts := f.ts
	f.mu.Unlock()
	startSize := f.rng.End()
	pre := prepareAll(logs, applied)
	at := &applyTxn{tx: db.NewTransaction(true)}
	lastIdx := applied
	commit := func() {
		at.set(keyApplied, be8(lastIdx))
		at.set(keyRange, f.encodeRange(f.rng))
		if f.lastCommit > 0 {
			at.set(keyClock, be8(uint64(f.lastCommit)))
		}
		if err := at.tx.Commit(); err != nil {
			panic(fmt.Sprintf("hub fsm: commit applied state at %d: %v", lastIdx, err))
		}
	}
	for i, l := range logs {
		if l.Index <= applied {
			out[i] = applyResult{Err: nil}
			continue
		}
		if at.ops > txnMaxOps || at.bytes > txnMaxBytes {
			commit()
			at = &applyTxn{tx: db.NewTransaction(true)}
		}
		lastIdx = l.Index
		if l.Type != raft.LogCommand || len(l.Data) == 0 {
			continue
		}
		out[i] = f.applyOne(at, ts, l.Data, pre[i])
	}
	if lastIdx == applied {
		at.tx.Discard()
		return out
	}
	commit()
	root, err := f.rootOf(f.rng)
	if err != nil {
		panic(fmt.Sprintf("hub fsm: root: %v", err))
	}
	var cp uint64
	f.mu.Lock()
	f.applied, f.size, f.root = lastIdx, f.rng.End(), root
	if f.pendingCP > f.cpSize {
		f.cpSize = f.pendingCP
	}
	cp = f.cpSize
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	if f.cpEvery > 0 && f.rng.End() > startSize && f.rng.End()-cp >= f.cpEvery {
		select {
		case f.cpKick <- struct{}{}:
		default:
		}
	}
	return out
}

// prepareAll hashes and decodes the envelopes of a batch of entries on all
// cores; the results depend only on each entry's bytes.
func prepareAll(logs []*raft.Log, applied uint64) []*prepared {
	pre := make([]*prepared, len(logs))
	var todo []int
	for i, l := range logs {
		if l.Index > applied && l.Type == raft.LogCommand {
			if _, _, _, ok := envelopeOf(l.Data); ok {
				todo = append(todo, i)
			}
		}
	}
	prep := func(i int) {
		raw, _, _, _ := envelopeOf(logs[i].Data)
		pre[i] = prepare(raw)
	}
	if len(todo) == 1 {
		prep(todo[0])
		return pre
	}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(todo)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= len(todo) {
					return
				}
				prep(todo[j])
			}
		}()
	}
	wg.Wait()
	return pre
}
