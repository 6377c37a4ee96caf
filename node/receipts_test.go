package node

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// pendingJWS is the envelopes waiting under prefix in n's outbox, oldest
// first.
func pendingJWS(t *testing.T, n *Node, prefix string) []string {
	t.Helper()
	var out []string
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var p struct {
				JWS string `json:"jws"`
			}
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				return err
			}
			out = append(out, p.JWS)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// applyNext appends entries to n's log view.
func applyNext(t *testing.T, n *Node, entries ...string) uint64 {
	t.Helper()
	start := n.applied.Load()
	if err := n.apply(start, exchange.Entries{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	return start
}

func countChecks(t *testing.T, n *Node, sub hcx.Subject) int {
	t.Helper()
	c := 0
	_ = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: checkPrefix(sub)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			c++
		}
		return nil
	})
	return c
}

// Guangdong's node publishes its box key; Sichuan's node, having read it
// from the log, seals the checks of Guangdong's codes to it; Guangdong's
// follower stores them as its residents' checks, once however often the
// entry is applied; a receipt for a subject it does not hold, or older
// than 30 days, is dropped; a box it cannot open is counted and skipped.
func TestReceiptsTravelHomeSealed(t *testing.T) {
	clock := newClock(time.Now())
	pki := newTestPKI(t, "440000", "510000")
	gd := checksNode(t, pki, "440000", t.TempDir(), clock)
	sc := checksNode(t, pki, "510000", t.TempDir(), clock)
	subs := registerN(t, gd, 2)
	gate := checkpointCtx("510000", "Chengdu East gate 3")

	boxKeys := pendingJWS(t, gd, pBoxPub)
	if len(boxKeys) != 1 || gd.BoxKID() == "" {
		t.Fatalf("box-key envelopes pending at the first start: %d, kid %q", len(boxKeys), gd.BoxKID())
	}
	// Before Sichuan knows the box key, its receipts are held.
	verifyAt(t, gd, testCtx, subs[0]) // a local check at Guangdong, for the count below
	code, err := gd.IssueCode(testCtx, subs[0], false)
	if err != nil {
		t.Fatal(err)
	}
	checkedAt := clock.now()
	if _, err := sc.Verify(gate, code.QR); err != nil {
		t.Fatal(err)
	}
	if got := sc.SendReceipts(); got != 0 || sc.ReceiptStats().Queued != 1 {
		t.Fatalf("sealed %d receipts without a box key; stats %+v", got, sc.ReceiptStats())
	}
	applyNext(t, sc, boxKeys[0])
	code1, _ := gd.IssueCode(testCtx, subs[1], false)
	if _, err := sc.Verify(gate, code1.QR); err != nil {
		t.Fatal(err)
	}
	if got := sc.SendReceipts(); got != 2 {
		t.Fatalf("sealed %d receipts, want 2 (one held, one new)", got)
	}
	envs := pendingJWS(t, sc, pRcptPub)
	if len(envs) != 1 {
		t.Fatalf("%d receipts envelopes, want 1 for one province in one interval", len(envs))
	}
	for _, s := range []string{string(subs[0]), string(subs[1]), "Chengdu", "gate 3"} {
		if strings.Contains(envs[0], s) {
			t.Errorf("%q in the envelope", s)
		}
	}

	// Guangdong applies the envelope, then applies it again (a replayed
	// log): the same keys are written.
	waitStored(t, gd, 1)
	idx := applyNext(t, gd, envs[0])
	for range 2 {
		w := &followTxn{db: gd.db, txn: gd.db.NewTransaction(true), stats: &gd.stats}
		if err := gd.applyEntry(w, idx, envs[0], time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := w.commit(); err != nil {
			t.Fatal(err)
		}
		w.txn.Discard()
	}
	// A replay writes nothing new, so it counts nothing new: two checks
	// of Guangdong's residents at Sichuan, not six.
	gd.flushStats()
	hour := checkedAt.UTC().Truncate(time.Hour)
	for _, g := range []string{StatAway, StatAwayCol} {
		rows, err := gd.CheckStats(hour.Add(-time.Hour), hour.Add(2*time.Hour), 24*time.Hour, time.UTC, g)
		if err != nil {
			t.Fatal(err)
		}
		sum := uint64(0)
		for _, r := range rows {
			for _, v := range r.Counts {
				sum += v
			}
		}
		if sum != 2 {
			t.Errorf("%s counts %d checks after a replay, want 2: %+v", g, sum, rows)
		}
	}
	if c := countChecks(t, gd, subs[0]); c != 2 {
		t.Errorf("subs[0] has %d stored checks, want 2 (one local, one from Sichuan) after a replay", c)
	}
	p, err := gd.Checks(testCtx, subs[0], "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var fromSC *Check
	for i := range p.Checks {
		if p.Checks[i].Province == "510000" {
			fromSC = &p.Checks[i]
		}
	}
	if fromSC == nil || fromSC.Unit != "Chengdu East gate 3" || fromSC.Role != "checkpoint" || fromSC.At.Unix() != checkedAt.Unix() || fromSC.Colour != code.Colour {
		t.Fatalf("Sichuan's check as Guangdong shows it: %+v in %+v", fromSC, p.Checks)
	}
	if q, err := gd.Checks(testCtx, subs[1], "", 10); err != nil || len(q.Checks) != 1 || q.Checks[0].Province != "510000" {
		t.Fatalf("subs[1]: %v %+v", err, q)
	}

	// A subject Guangdong does not hold, a check of 31 days ago, boxes
	// Guangdong cannot open: dropped or counted, and the follower goes on.
	gdKey, _ := gd.boxPeer(t, sc)
	stranger := hcx.Subject("abcdefghijklmnopqrstuvwxyz")
	old := exchange.Receipt{Sub: subs[0], At: clock.now().Add(-31 * 24 * time.Hour).Unix(), Unit: "old gate", Role: "checkpoint", Colour: hcx.Green}
	strange := exchange.Receipt{Sub: stranger, At: clock.now().Unix(), Unit: "gate", Role: "checkpoint", Colour: hcx.Green}
	mixed, err := exchange.SealReceipts(pki.provs["510000"], "440000", clock.now().Unix(), gdKey.KID, gdKey.Pub, []exchange.Receipt{old, strange})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := certs.GenerateBoxKey()
	wrongBox, err := exchange.SealReceipts(pki.provs["510000"], "440000", clock.now().Unix(), other.KID(), other.Public(), []exchange.Receipt{strange})
	if err != nil {
		t.Fatal(err)
	}
	// The same box under Guangdong's kid: the hub cannot tell, Guangdong
	// cannot open it.
	env, _ := exchange.Open(gd.trust, wrongBox)
	r, _ := exchange.DecodeReceipts(env)
	r.KID = gd.BoxKID()
	forgedKID, err := pki.provs["510000"].SignJWS(exchange.HdrReceipts, mustJSON(t, r))
	if err != nil {
		t.Fatal(err)
	}
	before := gd.ReceiptStats()
	applyNext(t, gd, mixed, wrongBox, forgedKID)
	after := gd.ReceiptStats()
	if after.Ignored-before.Ignored != 2 || after.Undecryptable-before.Undecryptable != 2 || after.Received != before.Received {
		t.Errorf("stats before %+v, after %+v: want 2 ignored, 2 undecryptable, none received", before, after)
	}
	if countChecks(t, gd, stranger) != 0 || countChecks(t, gd, subs[0]) != 2 {
		t.Error("a dropped receipt was stored")
	}
	if gd.applied.Load() != idx+4 {
		t.Errorf("the follower stopped at %d", gd.applied.Load())
	}
}

// boxPeer is the box key of n's province as other reads it from its log.
func (n *Node) boxPeer(t *testing.T, other *Node) (peerBoxKey, bool) {
	t.Helper()
	var p peerBoxKey
	found, err := other.readJSON(pBoxPeer+string(n.cfg.Province), &p)
	if err != nil || !found || p.KID != n.BoxKID() {
		t.Fatalf("%s's box key at %s: %v %v %+v", n.cfg.Province, other.cfg.Province, err, found, p)
	}
	return p, found
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Receipts for a province that has published no box key are held for an
// hour, then dropped and counted.
func TestReceiptsWithoutABoxKeyAreDroppedAfterTheHold(t *testing.T) {
	clock := newClock(time.Now())
	pki := newTestPKI(t, "440000", "510000")
	gd := checksNode(t, pki, "440000", t.TempDir(), clock)
	sc := checksNode(t, pki, "510000", t.TempDir(), clock)
	sub := registerN(t, gd, 1)[0]
	code, _ := gd.IssueCode(testCtx, sub, false)
	if _, err := sc.Verify(checkpointCtx("510000", "gate"), code.QR); err != nil {
		t.Fatal(err)
	}
	sc.SendReceipts()
	clock.add(ReceiptHold - time.Minute)
	if sc.SendReceipts() != 0 || sc.ReceiptStats().Dropped != 0 {
		t.Fatalf("within the hold: %+v", sc.ReceiptStats())
	}
	clock.add(2 * time.Minute)
	if sc.SendReceipts() != 0 || sc.ReceiptStats().Dropped != 1 {
		t.Fatalf("after the hold: %+v", sc.ReceiptStats())
	}
	if len(pendingJWS(t, sc, pRcptPub)) != 0 {
		t.Error("an envelope was sealed")
	}
}

// The box key's private half is at rest only sealed; a restart keeps the
// key; a rotated key is published and the old one still opens receipts
// sealed to it.
func TestBoxKeyIsSealedAtRestKeptAndRotated(t *testing.T) {
	clock := newClock(time.Now())
	pki := newTestPKI(t, "440000", "510000")
	dir := t.TempDir()
	gd := openTestNode(t, pki, "440000", dir, clock.now)
	kid := gd.BoxKID()
	priv := gd.boxKey(kid).Bytes()
	old := gd.boxKey(kid)
	if kid2, err := gd.RotateBoxKey(); err != nil || kid2 == kid {
		t.Fatalf("rotate: %v %s", err, kid2)
	}
	if got := len(pendingJWS(t, gd, pBoxPub)); got != 2 {
		t.Errorf("%d box-key envelopes pending, want 2", got)
	}
	newKID := gd.BoxKID()
	var rec ownBoxKey
	if found, err := gd.readJSON(pBoxKey+kid, &rec); err != nil || !found || bytes.Contains(rec.Sealed, priv) {
		t.Fatalf("the stored box key: %v %v", err, found)
	}
	if got, err := gd.fields.Open(rec.Sealed, boxKeyAAD(kid)); err != nil || !bytes.Equal(got, priv) {
		t.Fatalf("the stored box key does not open with the field key: %v", err)
	}
	gd.Close()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, priv) {
			t.Errorf("the box key's private scalar in the clear in %s", p)
		}
		return nil
	})
	gd = checksNode(t, pki, "440000", dir, clock)
	if gd.BoxKID() != newKID || gd.boxKey(kid) == nil {
		t.Fatalf("after a restart: kid %s (want %s), old key kept: %v", gd.BoxKID(), newKID, gd.boxKey(kid) != nil)
	}
	sub := registerN(t, gd, 1)[0]
	late, err := exchange.SealReceipts(pki.provs["510000"], "440000", clock.now().Unix(), kid, old.Public(),
		[]exchange.Receipt{{Sub: sub, At: clock.now().Unix(), Unit: "late gate", Role: "checkpoint", Colour: hcx.Green}})
	if err != nil {
		t.Fatal(err)
	}
	applyNext(t, gd, late)
	if p, err := gd.Checks(testCtx, sub, "", 10); err != nil || len(p.Checks) != 1 || p.Checks[0].Unit != "late gate" {
		t.Fatalf("a receipt sealed to the old key: %v %+v", err, p)
	}
}

// TestBoxKeysRotateWeeklyAndAreDestroyedAfterTheirChecks: sealed receipts
// stay in the hub's log for good, so the check history's 30 days are kept
// by destroying the keys they were sealed to. The node rotates its box key
// after BoxKeyLifetime and destroys a superseded key BoxKeyKeep after its
// successor appeared: a receipt sealed to it opens until then, and after
// that it opens nowhere (counted undecryptable), and the key is gone from
// the store.
func TestBoxKeysRotateWeeklyAndAreDestroyedAfterTheirChecks(t *testing.T) {
	clock := newClock(time.Now())
	pki := newTestPKI(t, "440000", "510000")
	gd := checksNode(t, pki, "440000", t.TempDir(), clock)
	first := gd.BoxKID()
	old := gd.boxKey(first)
	if _, err := gd.MaintainBoxKeys(); err != nil || gd.BoxKID() != first {
		t.Fatalf("a fresh key rotated: %v %s", err, gd.BoxKID())
	}
	clock.add(BoxKeyLifetime)
	if n, err := gd.MaintainBoxKeys(); err != nil || n != 0 || gd.BoxKID() == first || gd.boxKey(first) == nil {
		t.Fatalf("after a week: destroyed %d, %v; kid %s, old kept %v", n, err, gd.BoxKID(), gd.boxKey(first) != nil)
	}
	sub := registerN(t, gd, 1)[0]
	late := func() string {
		t.Helper()
		env, err := exchange.SealReceipts(pki.provs["510000"], "440000", time.Now().Unix(), first, old.Public(),
			[]exchange.Receipt{{Sub: sub, At: clock.now().Unix(), Unit: "late gate", Role: "checkpoint", Colour: hcx.Green}})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	clock.add(BoxKeyKeep - time.Minute)
	if n, err := gd.MaintainBoxKeys(); err != nil || n != 0 {
		t.Fatalf("destroyed %d before its time: %v", n, err)
	}
	applyNext(t, gd, late())
	if p, err := gd.Checks(testCtx, sub, "", 10); err != nil || len(p.Checks) != 1 {
		t.Fatalf("a receipt sealed to the superseded key within its keep: %v %+v", err, p)
	}
	clock.add(time.Minute)
	if n, err := gd.MaintainBoxKeys(); err != nil || n != 1 || gd.boxKey(first) != nil {
		t.Fatalf("after the keep: destroyed %d, %v", n, err)
	}
	if found, err := gd.readJSON(pBoxKey+first, &ownBoxKey{}); err != nil || found {
		t.Fatalf("the destroyed key is still stored: %v %v", found, err)
	}
	before := gd.ReceiptStats().Undecryptable
	applyNext(t, gd, late())
	if got := gd.ReceiptStats().Undecryptable; got != before+1 {
		t.Errorf("a receipt sealed to a destroyed key: undecryptable %d -> %d, want one more", before, got)
	}
}
