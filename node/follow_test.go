package node

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// subjectOf is the subject of a made-up document number i.
func subjectOf(i int) hcx.Subject {
	return subjectKey.Subject(hcx.DocCNID, strconv.Itoa(i))
}

// batch seals a colour batch of n red attestations for subjects first..first+n-1.
func (p *testPKI) batch(t testing.TB, prov hcx.ProvinceCode, seq uint64, n, first int) string {
	t.Helper()
	now := time.Now().Unix()
	b := &exchange.Batch{Iss: prov, Seq: seq, At: now, SKV: 1}
	for i := 0; i < n; i++ {
		b.Atts = append(b.Atts, hcx.Attestation{Subject: subjectOf(first + i), Colour: hcx.Red, Reasons: []hcx.Reason{hcx.ReasonLabPositive},
			Eff: now - 10, Exp: now + 3600, PolicyV: "00112233445566778899aabbccddeeff", N: 1})
	}
	s, err := exchange.SealBatch(p.provs[prov], b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func countForeign(t *testing.T, n *Node) int {
	t.Helper()
	count := 0
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pForeign)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			count++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

// Finding 4: when the follower's transaction filled up, the entry being
// applied kept reading the old, committed transaction; the rest of its batch
// was counted as rejected and the follow position moved past it.
func TestFollowerAppliesEveryAttestationOfLargePages(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 attestations")
	}
	pki := newTestPKI(t, "440000", "510000")
	sc := openTestNode(t, pki, "510000", t.TempDir(), time.Now)
	defer sc.Close()
	const batches, per = 100, 1000
	entries := []string{pki.trustList(t, 1)}
	for i := 0; i < batches; i++ {
		entries = append(entries, pki.batch(t, "440000", uint64(i+1), per, i*per))
	}
	if err := sc.apply(0, exchange.Entries{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if got := sc.metrics.followRejected.Load(); got != 0 {
		t.Errorf("%d log entries rejected, want 0", got)
	}
	if got, want := countForeign(t, sc), batches*per; got != want {
		t.Errorf("foreign cache holds %d attestations, want %d", got, want)
	}
	if got, want := sc.Applied(), uint64(len(entries)); got != want {
		t.Errorf("applied = %d, want %d", got, want)
	}
}

// A storage failure is not a verdict on the entry: the follow position must
// not move past an entry that could not be stored, and it is not counted as
// rejected.
func TestFollowerStopsAtAStorageErrorWithoutSkipping(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	sc := openTestNode(t, pki, "510000", t.TempDir(), time.Now)
	defer sc.Close()
	if err := sc.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1)}}); err != nil {
		t.Fatal(err)
	}
	// The node's own cache entry for subject 5 is unreadable.
	bad := pForeign + string(subjectOf(5)) + "/440000"
	if err := sc.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(bad), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	err := sc.apply(1, exchange.Entries{Entries: []string{pki.batch(t, "440000", 1, 10, 0), pki.batch(t, "440000", 2, 10, 100)}})
	if err == nil {
		t.Fatal("apply over an unreadable cache entry succeeded; want a storage error")
	}
	if got := sc.Applied(); got != 1 {
		t.Errorf("applied = %d after a storage error in entry 1, want 1", got)
	}
	if got := sc.metrics.followRejected.Load(); got != 0 {
		t.Errorf("a storage error was counted as %d rejected entries, want 0", got)
	}
	var next uint64
	if err := sc.db.View(func(txn *badger.Txn) (err error) { next, err = getU64(txn, kFollowNext); return err }); err != nil {
		t.Fatal(err)
	}
	if next != 1 {
		t.Errorf("stored follow position = %d, want 1", next)
	}
}

// The tree is stored with the follow position: a restarted node has the
// same tree, page boundaries do not change it, and a store from before the
// tree existed starts following again from leaf 0.
func TestFollowerTreeSurvivesRestartAndDoesNotDependOnPages(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	entries := []string{pki.trustList(t, 1)}
	for i := 0; i < 6; i++ {
		entries = append(entries, pki.batch(t, "440000", uint64(i+1), 3, i*3))
	}
	whole := openTestNode(t, pki, "510000", t.TempDir(), time.Now)
	defer whole.Close()
	if err := whole.apply(0, exchange.Entries{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	wantSize, wantRoot := whole.LogTree()

	dir := t.TempDir()
	paged := openTestNode(t, pki, "510000", dir, time.Now)
	for _, r := range [][2]int{{0, 1}, {1, 4}, {4, 7}} {
		if err := paged.apply(uint64(r[0]), exchange.Entries{Entries: entries[r[0]:r[1]]}); err != nil {
			t.Fatal(err)
		}
	}
	if size, root := paged.LogTree(); size != wantSize || !bytes.Equal(root, wantRoot) {
		t.Errorf("tree applied in pages: size %d root %x; in one page: size %d root %x", size, root, wantSize, wantRoot)
	}
	paged.Close()

	paged = openTestNode(t, pki, "510000", dir, time.Now)
	if size, root := paged.LogTree(); size != wantSize || !bytes.Equal(root, wantRoot) || paged.Applied() != wantSize {
		t.Errorf("after restart: tree size %d root %x applied %d; want size %d root %x", size, root, paged.Applied(), wantSize, wantRoot)
	}
	if err := paged.apply(3, exchange.Entries{Entries: entries[3:]}); err == nil {
		t.Error("a page that does not start at the tree's size was applied")
	}
	// A store from before the tree: follow position, no tree.
	if err := paged.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(kFollowTree)) }); err != nil {
		t.Fatal(err)
	}
	paged.Close()
	paged = openTestNode(t, pki, "510000", dir, time.Now)
	defer paged.Close()
	if got := paged.Applied(); got != 0 {
		t.Errorf("a store without a tree follows from %d, want 0", got)
	}
	if err := paged.apply(0, exchange.Entries{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if size, root := paged.LogTree(); size != wantSize || !bytes.Equal(root, wantRoot) {
		t.Errorf("rebuilt tree: size %d root %x; want size %d root %x", size, root, wantSize, wantRoot)
	}
}
