package consensus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Snapshot format: "hcxsnap1", applied(8), size(8), then records
// uvarint(len key) key uvarint(len value) value, ended by a zero-length key.
const snapMagic = "hcxsnap1"

// Snapshot takes a badger read transaction: a consistent view at one read
// timestamp, which Persist streams while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.dbMu.RLock()
	defer f.dbMu.RUnlock()
	f.mu.Lock()
	applied, size := f.applied, f.size
	f.mu.Unlock()
	wg := f.snaps
	wg.Add(1)
	return &fsmSnapshot{tx: f.db.NewTransaction(false), applied: applied, size: size, done: wg.Done}, nil
}

type fsmSnapshot struct {
	tx            *badger.Txn
	applied, size uint64
	done          func()
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	err := func() error {
		w.WriteString(snapMagic)
		w.Write(be8(s.applied))
		w.Write(be8(s.size))
		var lb [binary.MaxVarintLen64]byte
		it := s.tx.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			w.Write(lb[:binary.PutUvarint(lb[:], uint64(len(k)))])
			w.Write(k)
			if err := item.Value(func(v []byte) error {
				w.Write(lb[:binary.PutUvarint(lb[:], uint64(len(v)))])
				_, err := w.Write(v)
				return err
			}); err != nil {
				return err
			}
		}
		w.WriteByte(0)
		return w.Flush()
	}()
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist hub snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {
	s.tx.Discard()
	s.done()
}

// Restore installs a snapshot sent by the leader (or found at start while the
// local state is behind it). It never rolls the tree back: a snapshot at or
// below the applied index is read and dropped. A newer one is loaded into a
// fresh badger directory, checked to extend the local tree (same root at the
// local size), and only then made current.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	head := make([]byte, len(snapMagic)+16)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("restore: read header: %w", err)
	}
	if string(head[:len(snapMagic)]) != snapMagic {
		return fmt.Errorf("restore: not an hcx hub snapshot")
	}
	applied, _ := getBE8(head[len(snapMagic) : len(snapMagic)+8])
	size, _ := getBE8(head[len(snapMagic)+8:])
	f.mu.Lock()
	curApplied, curSize, curRoot := f.applied, f.size, f.root
	f.mu.Unlock()
	if applied <= curApplied {
		f.log.Info("snapshot is not ahead of the durable state; kept the state", "snapshot_applied", applied, "applied", curApplied)
		_, err := io.Copy(io.Discard, r)
		return err
	}
	if size < curSize {
		return fmt.Errorf("restore: snapshot tree size %d is below the local %d: refusing to roll back", size, curSize)
	}
	name := fmt.Sprintf("fsm-%d", applied)
	path := filepath.Join(f.dir, name)
	os.RemoveAll(path)
	db, err := openBadger(path)
	if err != nil {
		return err
	}
	fail := func(err error) error { db.Close(); os.RemoveAll(path); return fmt.Errorf("restore: %w", err) }
	wb := db.NewWriteBatch()
	for {
		kl, err := binary.ReadUvarint(r)
		if err != nil {
			wb.Cancel()
			return fail(err)
		}
		if kl == 0 {
			break
		}
		k := make([]byte, kl)
		if _, err := io.ReadFull(r, k); err != nil {
			wb.Cancel()
			return fail(err)
		}
		vl, err := binary.ReadUvarint(r)
		if err != nil {
			wb.Cancel()
			return fail(err)
		}
		v := make([]byte, vl)
		if _, err := io.ReadFull(r, v); err != nil {
			wb.Cancel()
			return fail(err)
		}
		if err := wb.Set(k, v); err != nil {
			wb.Cancel()
			return fail(err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fail(err)
	}
	if err := db.Sync(); err != nil {
		return fail(err)
	}
	var rootAtCur []byte
	if err := db.View(func(tx *badger.Txn) error {
		var err error
		rootAtCur, err = f.rootAtTx(tx, curSize)
		return err
	}); err != nil {
		return fail(err)
	}
	if !bytes.Equal(rootAtCur, curRoot) {
		return fail(errors.New("the snapshot's tree does not extend the local tree (roots differ at the local size): refusing it"))
	}
	// Restore must not wait here for open snapshots: Raft releases a
	// snapshot only after its main loop answers a configuration request,
	// and the main loop is waiting for this restore. The old state is
	// closed once its own snapshots are released (below).
	f.dbMu.Lock()
	old := f.db
	if err := f.load(db); err != nil {
		f.dbMu.Unlock()
		return fail(err)
	}
	// Name the new state on disk before anyone can read it: whatever a
	// reader sees is what a restart would open.
	if err := writeFileAtomic(filepath.Join(f.dir, currentFile), []byte(name+"\n")); err != nil {
		lerr := f.load(old)
		f.dbMu.Unlock()
		return fail(fmt.Errorf("switch to the new state: %w", errors.Join(err, lerr)))
	}
	f.db = db
	oldSnaps := f.snaps
	f.snaps = new(sync.WaitGroup)
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.pendingCP = f.cpSize
	f.mu.Unlock()
	f.dbMu.Unlock()
	f.retired.Add(1)
	go func() {
		defer f.retired.Done()
		oldSnaps.Wait()
		// Never the new directory: its name is the snapshot's applied
		// index, above anything the old state was named after.
		oldPath := old.Opts().Dir
		old.Close()
		os.RemoveAll(oldPath)
	}()
	f.log.Info("restored hub state from a snapshot", "applied", applied, "size", size)
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (f *fsm) close() error {
	f.retired.Wait()
	f.dbMu.RLock()
	wg := f.snaps
	f.dbMu.RUnlock()
	wg.Wait()
	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	return f.db.Close()
}
