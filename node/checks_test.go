package node

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/exchange"
)

func checkpointCtx(prov hcx.ProvinceCode, name string) context.Context {
	return auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleCheckpoint, Actor: "cert:" + name,
		Name: name, Province: prov, Method: auth.MethodRequestToken})
}

// checksNode is a node of prov on a movable clock that knows the trust
// list, closed at the end.
func checksNode(t *testing.T, pki *testPKI, prov hcx.ProvinceCode, dir string, clock *movableClock) *Node {
	t.Helper()
	n := openTestNode(t, pki, prov, dir, clock.now)
	t.Cleanup(func() { n.Close() })
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1)}}); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitStored waits until the background writer has stored want checks.
func waitStored(t *testing.T, n *Node, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.checks.stored.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d checks, want %d", n.checks.stored.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// verifyAt issues sub's code and has a checkpoint verify it.
func verifyAt(t *testing.T, n *Node, ctx context.Context, sub hcx.Subject) {
	t.Helper()
	c, err := n.IssueCode(testCtx, sub, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Verify(ctx, c.QR); err != nil {
		t.Fatal(err)
	}
}

func TestChecksAreRecordedNewestFirstAndPaged(t *testing.T) {
	clock := newClock(time.Now())
	n := checksNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock)
	subs := registerN(t, n, 2)
	gate := checkpointCtx("440000", "Guangzhou South Station gate 3")
	start := clock.now()
	for i := range 5 {
		verifyAt(t, n, gate, subs[0])
		if i == 2 {
			verifyAt(t, n, testCtx, subs[0]) // an operator's verification
		}
		clock.add(time.Second)
	}
	verifyAt(t, n, gate, subs[1])
	waitStored(t, n, 7)

	var all []Check
	after := ""
	for pages := 0; ; pages++ {
		p, err := n.Checks(testCtx, subs[0], after, 4)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Checks...)
		if p.RetentionDays != 30 {
			t.Errorf("retention days %d", p.RetentionDays)
		}
		if p.Next == "" {
			if pages != 1 {
				t.Errorf("%d pages, want 2 of 4 and 2", pages+1)
			}
			break
		}
		after = p.Next
	}
	if len(all) != 6 {
		t.Fatalf("%d checks of subs[0], want 6: %+v", len(all), all)
	}
	for i, c := range all {
		if i > 0 && c.At.After(all[i-1].At) {
			t.Errorf("check %d at %s is newer than check %d at %s", i, c.At, i-1, all[i-1].At)
		}
		if c.Province != "440000" || c.Colour != hcx.Green {
			t.Errorf("check %d: %+v", i, c)
		}
	}
	if c := all[0]; c.Unit != "Guangzhou South Station gate 3" || c.Role != "checkpoint" || !c.At.Equal(start.Add(4*time.Second).UTC()) {
		t.Errorf("newest check %+v, want the gate at %s", c, start.Add(4*time.Second))
	}
	ops := 0
	for _, c := range all {
		if c.Role == "operator" {
			ops++
			if c.Unit != "operator" {
				t.Errorf("an operator's check names them: %+v", c)
			}
		}
	}
	if ops != 1 {
		t.Errorf("%d operator checks, want 1", ops)
	}
	if p, err := n.Checks(testCtx, subs[1], "", 10); err != nil || len(p.Checks) != 1 || p.Next != "" {
		t.Fatalf("subs[1]: %+v, %v", p, err)
	}
	for _, bad := range []struct {
		after string
		limit int
		field string
	}{{"", 0, "limit"}, {"", MaxChecksPage + 1, "limit"}, {"zz", 10, "after"}, {"00ff", 10, "after"}} {
		_, err := n.Checks(testCtx, subs[0], bad.after, bad.limit)
		wantField(t, err, bad.field)
	}
}

func TestChecksOfOtherProvincesCodesAreNotKeptHere(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	clock := newClock(time.Now())
	a := checksNode(t, pki, "440000", t.TempDir(), clock)
	b := checksNode(t, pki, "510000", t.TempDir(), clock)
	sub := registerN(t, a, 1)[0]
	c, err := a.IssueCode(testCtx, sub, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(checkpointCtx("510000", "Chengdu East gate"), c.QR); err != nil {
		t.Fatal(err)
	}
	b.checks.stop() // writes what is queued
	b.checks.start(b)
	if got := b.checks.stored.Load(); got != 0 {
		t.Fatalf("510000 stored %d checks of a 440000 code", got)
	}
}

// The retention test looks at the bytes at rest: after 30 days by the
// node's clock the checks are gone from the API, pruned, and once badger
// compacts, no version of any check key is left in any file of the store.
func TestChecksAreGoneAtRestAfter30Days(t *testing.T) {
	clock := newClock(time.Now())
	dir := t.TempDir()
	pki := newTestPKI(t, "440000")
	n := checksNode(t, pki, "440000", dir, clock)
	sub := registerN(t, n, 1)[0]
	at := clock.now()
	verifyAt(t, n, checkpointCtx("440000", "Shenzhen Bay port"), sub)
	waitStored(t, n, 1)
	err := n.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = checkPrefix(sub)
		it := txn.NewIterator(opts)
		defer it.Close()
		k := 0
		for it.Rewind(); it.Valid(); it.Next() {
			k++
			if want := uint64(at.Add(CheckRetention).Unix()); it.Item().ExpiresAt() != want {
				t.Errorf("check expires at %d, want %d", it.Item().ExpiresAt(), want)
			}
		}
		if k != 1 {
			t.Errorf("%d check keys, want 1", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clock.add(29 * 24 * time.Hour)
	if k, err := n.PruneChecks(); err != nil || k != 0 {
		t.Fatalf("pruned %d at 29 days, %v", k, err)
	}
	if p, _ := n.Checks(testCtx, sub, "", 10); len(p.Checks) != 1 {
		t.Fatalf("at 29 days: %+v", p)
	}
	clock.add(24*time.Hour + time.Second)
	if p, _ := n.Checks(testCtx, sub, "", 10); len(p.Checks) != 0 {
		t.Fatalf("past 30 days the API still shows %+v", p)
	}
	if k, err := n.PruneChecks(); err != nil || k != 1 {
		t.Fatalf("pruned %d past 30 days, %v", k, err)
	}
	// The province's statistics count by unit (a device name, no personal
	// data) for StatsRetention: past it, they go too.
	n.flushStats()
	clock.add(StatsRetention - 30*24*time.Hour + time.Hour) // a bucket goes once its whole hour is past
	if k, err := n.PruneStats(); err != nil || k == 0 {
		t.Fatalf("pruned %d statistics past %s, %v", k, StatsRetention, err)
	}
	n.Close()

	// The store at rest: compaction is what removes a deleted key's bytes;
	// badger runs it as data flows. Here the store is opened again without
	// compactors of its own and closed compacting level 0 into the tree,
	// deterministically (as the scans' retention test does), twice, so that
	// the tombstone and the value it hides meet in one compaction.
	opts := badger.DefaultOptions(dir).WithLogger(nil).WithNumCompactors(0).WithCompactL0OnClose(true)
	for range 2 {
		db, err := badger.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.AllVersions = true
		opts.Prefix = []byte(pCheck)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			it.Item().Value(func(v []byte) error {
				if len(v) > 0 {
					t.Errorf("a version of %q is still stored with %d bytes (deleted %v)", it.Item().Key(), len(v), it.Item().IsDeletedOrExpired())
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	unit := []byte("Shenzhen Bay port")
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, unit) {
			t.Errorf("%s still holds the check's unit", filepath.Base(p))
		}
		return nil
	})
}

// A full queue drops receipts and counts them; the verification is not
// held up, and the queued ones are written once the writer runs again.
func TestChecksBeyondTheQueueAreDroppedAndCounted(t *testing.T) {
	clock := newClock(time.Now())
	n := checksNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock)
	sub := registerN(t, n, 1)[0]
	n.checks.stop() // the writer is away: nothing drains the queue
	ctx := checkpointCtx("440000", "gate")
	for range checkQueueLen + 5 {
		n.recordCheck(ctx, sub, clock.now(), hcx.Green)
	}
	if got := n.checks.dropped.Load(); got != 5 {
		t.Fatalf("dropped %d, want 5", got)
	}
	var m bytes.Buffer
	n.WriteMetrics(&m)
	if !bytes.Contains(m.Bytes(), []byte(`hcx_node_checks_dropped_total{province="440000"} 5`)) {
		t.Errorf("metrics do not count the drops:\n%s", m.String())
	}
	n.checks.start(n)
	waitStored(t, n, checkQueueLen)
	p, err := n.Checks(testCtx, sub, "", MaxChecksPage)
	if err != nil || len(p.Checks) != MaxChecksPage || p.Next == "" {
		t.Fatalf("%d checks, next %q, %v", len(p.Checks), p.Next, err)
	}
}
