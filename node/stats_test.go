package node

import (
	"bytes"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// Verifications of own and other provinces' codes and refusals land in
// the right hourly buckets, survive a restart (flushed at close), and the
// stored statistics hold no subject, name or document.
func TestCheckStatsCountAndSurviveRestart(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	// Inside the test certificates' validity (now ± 1 h) for the whole hour it spans.
	start := time.Now().UTC().Add(-30 * time.Minute)
	clock := newClock(start)
	dirB := t.TempDir()
	a := checksNode(t, pki, "440000", t.TempDir(), clock)
	b := checksNode(t, pki, "510000", dirB, clock)
	own := registerN(t, b, 1)[0]
	away := registerN(t, a, 1)[0]
	gate := checkpointCtx("510000", "Chengdu East gate")
	verifyAt(t, b, gate, own)
	verifyAt(t, b, gate, own)
	c, err := a.IssueCode(testCtx, away, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(gate, c.QR); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(gate, c.QR[:len(c.QR)-4]+"AAAA"); err == nil {
		t.Fatal("a forged code verified")
	}
	clock.add(time.Hour)
	verifyAt(t, b, gate, own)
	b.Close()

	b = openTestNode(t, pki, "510000", dirB, clock.now)
	t.Cleanup(func() { b.Close() })
	from := start.Truncate(time.Hour)
	rows, err := b.CheckStats(from, from.Add(24*time.Hour), time.Hour, time.UTC, StatIssuer)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Counts["510000"] != 2 || rows[0].Counts["440000"] != 1 || rows[1].Counts["510000"] != 1 {
		t.Fatalf("by issuer and hour: %+v", rows)
	}
	shanghai := time.FixedZone("CST", 8*3600)
	rows, err = b.CheckStats(from, from.Add(2*time.Hour), 24*time.Hour, shanghai, StatColour)
	if err != nil {
		t.Fatal(err)
	}
	green := uint64(0)
	for _, r := range rows {
		green += r.Counts[string(hcx.Green)]
	}
	if len(rows) == 0 || green != 4 || !rows[0].Start.Equal(dayIn(start, shanghai)) {
		t.Fatalf("by colour and day: %+v", rows)
	}
	rows, _ = b.CheckStats(from, from.Add(time.Hour), time.Hour, time.UTC, StatError)
	if len(rows) != 1 || rows[0].Counts["token_signature"] != 1 {
		t.Fatalf("refusals: %+v", rows)
	}
	rows, _ = b.CheckStats(from, from.Add(24*time.Hour), time.Hour, time.UTC, StatUnit)
	if len(rows) != 2 || rows[0].Counts["Chengdu East gate"]+rows[1].Counts["Chengdu East gate"] != 4 {
		t.Fatalf("by unit: %+v", rows)
	}

	err = b.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(pStats)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			for _, bad := range [][]byte{[]byte(own), []byte(away), []byte("张三"), []byte(testIDNumber(0))} {
				if bytes.Contains(k, bad) {
					t.Errorf("stats key %q holds identity %q", k, bad)
				}
			}
			if want := uint64(time.Unix(int64(bytesHour(k))*3600, 0).Add(StatsRetention).Unix()); it.Item().ExpiresAt() != want {
				t.Errorf("stats key expires at %d, want %d", it.Item().ExpiresAt(), want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Retention: kept through 399 days, pruned after 400.
	clock.add(399 * 24 * time.Hour)
	if k, err := b.PruneStats(); err != nil || k != 0 {
		t.Fatalf("pruned %d at 399 days, %v", k, err)
	}
	clock.add(2 * 24 * time.Hour)
	if k, err := b.PruneStats(); err != nil || k == 0 {
		t.Fatalf("pruned %d past 400 days, %v", k, err)
	}
	if rows, _ := b.CheckStats(from, from.Add(24*time.Hour), time.Hour, time.UTC, StatIssuer); len(rows) != 0 {
		t.Fatalf("after pruning: %+v", rows)
	}
}

func dayIn(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

func bytesHour(k []byte) int64 {
	c, _ := parseStatKey(k)
	return c.hour
}

// Units beyond the hourly cap fold into "other" instead of growing the map.
func TestCheckStatsUnitsAreBounded(t *testing.T) {
	var s statState
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range maxStatUnitsPerHour + 10 {
		s.count(at, StatUnit, "gate "+string(rune('A'+i%26))+time.Duration(i).String())
	}
	cells := s.take()
	if len(cells) != maxStatUnitsPerHour+1 || cells[statCell{at.Unix() / 3600, StatUnit, statOther}] != 10 {
		t.Fatalf("%d cells, other=%d", len(cells), cells[statCell{at.Unix() / 3600, StatUnit, statOther}])
	}
}
