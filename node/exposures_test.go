package node

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// exposureEnvelope is an exposure envelope of prov at at.
func (p *testPKI) exposureEnvelope(t testing.TB, prov hcx.ProvinceCode, at time.Time, exps ...exchange.Exposure) string {
	t.Helper()
	jws, err := exchange.SealExposures(p.provs[prov], &exchange.Exposures{Iss: prov, At: at.Unix(), Exps: exps})
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

func histBytes(t *testing.T, n *Node, sub hcx.Subject) []byte {
	t.Helper()
	var b []byte
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(histKey(sub)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		b, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExposureJobResumesAfterRestartAndReplaysIdempotently: a Sichuan
// exposure read from the log is matched at a Shanghai node against its
// scans one chunk per commit; the node stops after the first chunk (as a
// crash would) and, reopened, resumes the job from its cursor. Each
// resident gets one venue exposure at their latest scan inside the window;
// those who scanned outside it or another venue get none; the same
// envelope logged again, or the job run again, changes no byte; a later
// withdrawal takes the exposures away and the colour with them.
func TestExposureJobResumesAfterRestartAndReplaysIdempotently(t *testing.T) {
	pki := newTestPKI(t, "310000", "510000")
	clock := newClock(time.Now().Add(-time.Hour))
	dir := t.TempDir()
	n := openTestNode(t, pki, "310000", dir, clock.now)
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1)}}); err != nil {
		t.Fatal(err)
	}
	subs := registerN(t, n, 5)
	venue := venueCode(t, pki.provs["510000"], "510000", "cd/taikoo-li", "510104", "太古里", clock.now())
	other := venueCode(t, pki.provs["510000"], "510000", "cd-002", "510104", "IFS", clock.now())
	scan := func(sub hcx.Subject, code string) time.Time {
		t.Helper()
		r, err := n.Scan(testCtx, sub, &ScanRequest{Code: code})
		if err != nil {
			t.Fatal(err)
		}
		clock.add(time.Minute)
		return r.EnteredAt
	}
	scan(subs[4], venue) // before the window
	clock.add(time.Minute)
	from := clock.now().Truncate(time.Second)
	scan(subs[0], venue)
	scan(subs[1], venue)
	scan(subs[2], venue)
	last0 := scan(subs[0], venue) // the latest of two
	scan(subs[3], other)
	to := clock.now().Truncate(time.Second)
	clock.add(time.Minute)
	scan(subs[3], venue) // after the window

	x := exchange.Exposure{Vid: "cd/taikoo-li", Div: "510104", Level: exchange.ExposureHigh, From: from.Unix(), To: to.Unix()}
	marked := pki.exposureEnvelope(t, "510000", clock.now(), x)
	if err := n.apply(1, exchange.Entries{Entries: []string{marked}}); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Exposures(testCtx, "510000"); err != nil || len(got) != 1 || got[0].Level != "high" || !got[0].From.Equal(from) {
		t.Fatalf("exposures: %+v %v", got, err)
	}
	// Two scans per commit; the node "crashes" after the first commit.
	n.expoChunk = 2
	crash := errors.New("crash")
	n.afterExposureChunk = func() error { return crash }
	if _, err := n.RunExposureJobs(testCtx); !errors.Is(err, crash) {
		t.Fatalf("first run: %v", err)
	}
	if got := n.PendingExposureJobs(); got != 1 {
		t.Fatalf("jobs after the first chunk: %d, want 1 (with its cursor)", got)
	}
	if c := colourOf(t, n, subs[1]); c != hcx.Yellow {
		t.Fatalf("a resident of the first chunk is %s, want yellow at once", c)
	}
	n.Close()

	n = openTestNode(t, pki, "310000", dir, clock.now)
	defer n.Close()
	n.expoChunk = 2
	if _, err := n.RunExposureJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	if got := n.PendingExposureJobs(); got != 0 {
		t.Fatalf("jobs left: %d", got)
	}
	want := map[hcx.Subject]time.Time{subs[0]: last0}
	for i, sub := range subs {
		f := storedFacts(t, n, sub)
		if i >= 3 {
			if len(f.Venues) != 0 || colourOf(t, n, sub) != hcx.Green {
				t.Errorf("resident %d (outside the window or at another venue): %+v", i, f.Venues)
			}
			continue
		}
		if len(f.Venues) != 1 {
			t.Fatalf("resident %d: %+v, want one venue exposure", i, f.Venues)
		}
		v := f.Venues[0]
		if v.VenueID != "cd/taikoo-li" || v.Div != "510104" || v.Level != "high" || v.Issuer != "510000" || v.ID == "" {
			t.Errorf("resident %d: %+v", i, v)
		}
		if at, ok := want[sub]; ok && !v.At.Equal(at) {
			t.Errorf("resident 0's exposure at %s, want their latest scan %s", v.At, at)
		}
		if c := colourOf(t, n, sub); c != hcx.Yellow {
			t.Errorf("resident %d is %s, want yellow (Shanghai's venue rule)", i, c)
		}
	}

	// Replays: the same envelope logged again stores no job; a job run
	// again changes no byte.
	before := make([][]byte, len(subs))
	for i, sub := range subs {
		before[i] = histBytes(t, n, sub)
	}
	if err := n.apply(2, exchange.Entries{Entries: []string{marked}}); err != nil {
		t.Fatal(err)
	}
	if got := n.PendingExposureJobs(); got != 0 {
		t.Fatalf("the same envelope again stored %d jobs", got)
	}
	cur, _ := n.Exposures(testCtx, "")
	w := &write{system: "exposure"}
	if err := w.setJSON(exposureJobKey(), &exposureJob{Exp: cur[0]}); err != nil {
		t.Fatal(err)
	}
	if err := n.write(w); err != nil {
		t.Fatal(err)
	}
	if changed, err := n.RunExposureJobs(testCtx); err != nil || changed != 0 {
		t.Fatalf("replayed job: %d changed, %v", changed, err)
	}
	for i, sub := range subs {
		if got := histBytes(t, n, sub); string(got) != string(before[i]) {
			t.Errorf("resident %d's history changed on replay", i)
		}
	}

	// An older envelope with the key changes nothing; a later withdrawal
	// takes it back.
	low := x
	low.Level = exchange.ExposureLow
	x.Withdrawn = true
	if err := n.apply(3, exchange.Entries{Entries: []string{
		pki.exposureEnvelope(t, "510000", clock.now().Add(-time.Hour), low),
		pki.exposureEnvelope(t, "510000", clock.now().Add(time.Second), x)}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.Exposures(testCtx, "510000"); len(got) != 1 || !got[0].Withdrawn || got[0].Level != "high" {
		t.Fatalf("after the withdrawal: %+v", got)
	}
	if _, err := n.RunExposureJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		if f := storedFacts(t, n, sub); len(f.Venues) != 0 {
			t.Errorf("resident %d keeps %+v after the withdrawal", i, f.Venues)
		}
		if c := colourOf(t, n, sub); c != hcx.Green {
			t.Errorf("resident %d is %s after the withdrawal", i, c)
		}
	}
}

// TestVenueExposuresAreBounded: a resident keeps the newest
// maxVenueExposures, the oldest dropped and counted.
func TestVenueExposuresAreBounded(t *testing.T) {
	h := &history{}
	base := time.Unix(1_790_000_000, 0).UTC()
	for i := range maxVenueExposures + 3 {
		x := &Exposure{Iss: "510000", Vid: "v", Div: "510104", Level: "low", From: base.Add(time.Duration(i) * time.Hour), To: base.Add(time.Duration(i+1) * time.Hour)}
		if !h.expose(x, x.From.Add(time.Minute)) {
			t.Fatalf("exposure %d changed nothing", i)
		}
	}
	if len(h.Venues) != maxVenueExposures || h.Dropped != 3 || !h.Venues[0].At.Equal(base.Add(3*time.Hour+time.Minute)) {
		t.Fatalf("%d exposures, %d dropped, oldest %s", len(h.Venues), h.Dropped, h.Venues[0].At)
	}
	var _ policy.VenueExposure
}

// TestMarkExposureFollowsTheVenueState: only a venue of this province that
// passed can be marked; a retired one for a window that ended by its
// retirement; one under review, failed or unknown is refused naming vid,
// writing nothing. A marking waits in the outbox for the hub, and its
// withdrawal gets a later at even within the same second.
func TestMarkExposureFollowsTheVenueState(t *testing.T) {
	pki := newTestPKI(t, "440000")
	clock := newClock(time.Now().Add(-time.Hour))
	n := openTestNode(t, pki, "440000", t.TempDir(), clock.now)
	defer n.Close()
	manager := registerN(t, n, 1)[0]
	apply := func(name string) *Venue {
		v, err := n.ApplyVenue(managerCtx(manager), manager, VenueApplication{Name: name, Division: "440106", Category: "mall", USCC: testUSCC("9144010600000000")})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	review := func(v *Venue, decision string) {
		if _, err := n.ReviewVenue(testCtx, v.ID, VenueReview{Decision: decision, Reason: "checked"}); err != nil {
			t.Fatal(err)
		}
	}
	passed, retired, failed, pending := apply("天河城"), apply("正佳广场"), apply("太古汇"), apply("万菱汇")
	review(passed, VenuePassed)
	review(retired, VenuePassed)
	review(failed, VenueFailed)
	t0 := clock.now().Truncate(time.Second)
	clock.add(time.Hour)
	if _, err := n.RetireVenue(testCtx, retired.ID, "closed"); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour)
	before := n.PendingExposures()
	for _, c := range []struct {
		name string
		in   ExposureInput
		code string
	}{
		{"unknown", ExposureInput{Vid: "V440000-0000000000000000", Level: "high", From: t0, To: t0.Add(time.Minute)}, "unknown_venue"},
		{"under review", ExposureInput{Vid: pending.ID, Level: "high", From: t0, To: t0.Add(time.Minute)}, "venue_not_passed"},
		{"failed", ExposureInput{Vid: failed.ID, Level: "high", From: t0, To: t0.Add(time.Minute)}, "venue_not_passed"},
		{"retired before the window ended", ExposureInput{Vid: retired.ID, Level: "high", From: t0, To: t0.Add(90 * time.Minute)}, "venue_retired"},
	} {
		_, err := n.MarkExposure(testCtx, c.in)
		var he *hcx.Error
		if !errors.As(err, &he) || he.Code != c.code || he.Field != "vid" {
			t.Errorf("%s: %v, want %s naming vid", c.name, err, c.code)
		}
	}
	if got, _ := n.Exposures(testCtx, ""); len(got) != 0 || n.PendingExposures() != before {
		t.Fatalf("refused markings wrote %+v", got)
	}
	x, err := n.MarkExposure(testCtx, ExposureInput{Vid: retired.ID, Level: "low", From: t0, To: t0.Add(30 * time.Minute)})
	if err != nil {
		t.Fatalf("a retired venue, window before its retirement: %v", err)
	}
	if _, err := n.MarkExposure(testCtx, ExposureInput{Vid: passed.ID, Level: "high", From: t0, To: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	w, err := n.WithdrawExposure(testCtx, ExposureInput{Vid: retired.ID, From: t0, To: t0.Add(30 * time.Minute)})
	if err != nil || !w.Withdrawn || w.At <= x.At {
		t.Fatalf("withdrawal in the same second: %+v %v, want withdrawn with at > %d", w, err, x.At)
	}
	if got := n.PendingExposures(); got != before+3 {
		t.Errorf("%d envelopes wait for the hub, want %d", got, before+3)
	}
	if got, _ := n.Exposures(testCtx, "440000"); len(got) != 2 {
		t.Errorf("exposures: %+v", got)
	}
}

// TestExposuresExpire60DaysAfterTheirWindow: an exposure, marked here or
// read from the log, is kept until no scan it could match is left — 60
// days after its window ends — and then is gone from the store, so the
// exposures a node holds stay bounded. The node's clock runs 61 days behind
// the wall clock badger expires keys by.
func TestExposuresExpire60DaysAfterTheirWindow(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	clock := newClock(time.Now().Add(-61 * 24 * time.Hour))
	n := openTestNode(t, pki, "440000", t.TempDir(), clock.now)
	defer n.Close()
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1)}}); err != nil {
		t.Fatal(err)
	}
	manager := registerN(t, n, 1)[0]
	v, err := n.ApplyVenue(managerCtx(manager), manager, VenueApplication{Name: "天河城", Division: "440106", Category: "mall", USCC: testUSCC("9144010600000000")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ReviewVenue(testCtx, v.ID, VenueReview{Decision: VenuePassed, Reason: "checked"}); err != nil {
		t.Fatal(err)
	}
	t0 := clock.now().Truncate(time.Second)
	clock.add(time.Hour)
	if _, err := n.MarkExposure(testCtx, ExposureInput{Vid: v.ID, Level: "high", From: t0, To: t0.Add(30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	theirs := exchange.Exposure{Vid: "cd-001", Div: "510104", Level: exchange.ExposureHigh, From: t0.Unix(), To: t0.Add(time.Hour).Unix()}
	if err := n.apply(1, exchange.Entries{Entries: []string{pki.exposureEnvelope(t, "510000", time.Now(), theirs)}}); err != nil {
		t.Fatal(err)
	}
	// Today, by the node's clock, both are recent; by the wall clock both
	// windows ended more than 60 days ago.
	var left []string
	expired := 0
	err = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pExpo), AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if it.Item().IsDeletedOrExpired() {
				expired++
			} else {
				left = append(left, string(it.Item().KeyCopy(nil)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 || expired != 2 {
		t.Errorf("exposures kept past 60 days after their window: %q (%d expired, want both, ours and the log's)", left, expired)
	}
	if got, err := n.Exposures(testCtx, ""); err != nil || len(got) != 0 {
		t.Errorf("listed: %+v %v", got, err)
	}
}
