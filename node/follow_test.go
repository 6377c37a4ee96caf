package node

import (
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
	if err := sc.apply(0, entries); err != nil {
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
	if err := sc.apply(0, []string{pki.trustList(t, 1)}); err != nil {
		t.Fatal(err)
	}
	// The node's own cache entry for subject 5 is unreadable.
	bad := pForeign + string(subjectOf(5)) + "/440000"
	if err := sc.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(bad), []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	err := sc.apply(1, []string{pki.batch(t, "440000", 1, 10, 0), pki.batch(t, "440000", 2, 10, 100)})
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
