package node

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// testIDNumber is the i-th valid mainland ID number of a Tianhe resident.
func testIDNumber(i int) string {
	birth := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i/900)
	first17 := fmt.Sprintf("440106%s%03d", birth.Format("20060102"), 100+i%900)
	return first17 + string(hcx.CNIDCheckDigit(first17))
}

func registerN(t testing.TB, n *Node, count int) []hcx.Subject {
	t.Helper()
	subs := make([]hcx.Subject, count)
	for i := range subs {
		r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(i), Name: "张三"})
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = r.Subject
	}
	return subs
}

// ingestLongHistory gives a resident 1,500 lab results, one a minute up to
// now, every hundredth positive.
func ingestLongHistory(t testing.TB, n *Node, sub hcx.Subject, now time.Time) {
	t.Helper()
	for i := range 1500 {
		at := now.Add(-time.Duration(1500-i) * time.Minute)
		if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Positive: i%100 == 0, Kind: "pcr", At: at}}); err != nil {
			t.Fatal(err)
		}
	}
}

// storedFacts reads the facts the node decides a resident's colour from.
func storedFacts(t testing.TB, n *Node, sub hcx.Subject) *policy.Facts {
	t.Helper()
	var f *policy.Facts
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		f, err = loadFacts(txn, sub)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// outboxOf reads the outbox in order.
func outboxOf(t testing.TB, n *Node) (seqs []string, atts []hcx.Attestation) {
	t.Helper()
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOutbox), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a hcx.Attestation
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &a) }); err != nil {
				return err
			}
			seqs = append(seqs, string(it.Item().Key()))
			atts = append(atts, a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs, atts
}

// releaseSequence is one resident's events that turn them red, release them
// to green and turn them red again: three attestations.
func releaseSequence(now time.Time) []Event {
	evs := []Event{{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: now.Add(-20 * 24 * time.Hour)}}}
	for d := range 5 {
		evs = append(evs, Event{Lab: &policy.LabResult{Kind: "pcr", At: now.Add(time.Duration(-19+d) * 24 * time.Hour)}})
	}
	return append(evs, Event{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: now.Add(-time.Minute)}})
}

func TestConcurrentIngestForManyResidentsLosesNothing(t *testing.T) {
	pki := newTestPKI(t, "440000")
	now := time.Now().UTC().Truncate(time.Second)
	n := openTestNode(t, pki, "440000", t.TempDir(), func() time.Time { return now })
	defer n.Close()
	const residents, workers = 24, 8
	subs := registerN(t, n, residents)
	seq := releaseSequence(now)

	// Workers feed each resident's events in order, interleaved with every
	// other resident's. Then eight goroutines at once add three negative
	// antigen results each to every resident, which loses events unless a
	// resident's writes are serialised.
	type job struct {
		sub hcx.Subject
		ev  Event
	}
	jobs := make(chan []job)
	var wg sync.WaitGroup
	errs := make(chan error, workers+8*residents)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for js := range jobs {
				for _, j := range js {
					if _, err := n.Ingest(testCtx, j.sub, j.ev); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	// Meanwhile the publisher seals batches from the outbox and records
	// their acknowledgement, as it does when the hub answers.
	ts, err := certs.NewTrustStoreDER(pki.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange.ApplyTrustList(ts, pki.trustList(t, 1)); err != nil {
		t.Fatal(err)
	}
	var published []hcx.Attestation
	publish := func() (bool, error) {
		p, err := n.nextBatch()
		if err != nil || p == nil {
			return false, err
		}
		env, err := exchange.Open(ts, p.JWS)
		if err != nil {
			return false, err
		}
		b, err := exchange.DecodeBatch(env)
		if err != nil {
			return false, err
		}
		published = append(published, b.Atts...)
		return true, n.recordAck(p)
	}
	ingested := make(chan struct{})
	published1 := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ingested:
				published1 <- nil
				return
			default:
			}
			if _, err := publish(); err != nil {
				published1 <- err
				return
			}
		}
	}()
	for _, sub := range subs {
		js := make([]job, 0, len(seq))
		for _, ev := range seq {
			ev := cloneEvent(ev)
			js = append(js, job{sub, ev})
		}
		jobs <- js
	}
	close(jobs)
	wg.Wait()
	for _, sub := range subs {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Kind: "antigen", At: now}}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(ingested)
	if err := <-published1; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for {
		more, err := publish()
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	if keys, _ := outboxOf(t, n); len(keys) != 0 {
		t.Errorf("%d attestations left in the outbox after it was drained", len(keys))
	}
	lastN := map[hcx.Subject]uint64{}
	for i, a := range published {
		if a.N != lastN[a.Subject]+1 {
			t.Fatalf("published attestation %d: subject %s has n=%d after n=%d; want every n once, in order", i, a.Subject, a.N, lastN[a.Subject])
		}
		lastN[a.Subject] = a.N
	}
	for _, sub := range subs {
		f := storedFacts(t, n, sub)
		if got, want := len(f.Labs), len(seq)+8*3; got != want {
			t.Errorf("resident %s: %d lab results stored, want %d", sub, got, want)
		}
		if got := lastN[sub]; got != 3 {
			t.Errorf("resident %s: %d attestations in the outbox, want 3 (red, green, red)", sub, got)
		}
		var st colourState
		if err := n.db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, pState+string(sub), &st); return err }); err != nil {
			t.Fatal(err)
		}
		if st.N != lastN[sub] || st.Colour != hcx.Red {
			t.Errorf("resident %s: state n=%d colour %s, want n=%d red", sub, st.N, st.Colour, lastN[sub])
		}
	}
	if got, want := n.metrics.events.Load(), uint64(residents*(len(seq)+8*3)); got != want {
		t.Errorf("events metric %d, want %d", got, want)
	}
}

func cloneEvent(ev Event) Event {
	if ev.Lab != nil {
		l := *ev.Lab
		return Event{Lab: &l}
	}
	c := *ev.Contact
	return Event{Contact: &c}
}

// TestResidentHistoryIsBounded: a resident with a long history costs the
// store, and every later decision, a bounded amount.
func TestResidentHistoryIsBounded(t *testing.T) {
	pki := newTestPKI(t, "440000")
	now := time.Now().UTC().Truncate(time.Second)
	n := openTestNode(t, pki, "440000", t.TempDir(), func() time.Time { return now })
	defer n.Close()
	subs := registerN(t, n, 2)
	ingestLongHistory(t, n, subs[0], now)
	keys, bytes := 0, 0
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if strings.Contains(string(it.Item().Key()), string(subs[0])) {
				keys++
				bytes += int(it.Item().ValueSize())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys > 4 || bytes > 16<<10 {
		t.Errorf("after 1,500 events the resident holds %d keys and %d bytes; want at most 4 keys and 16 KiB", keys, bytes)
	}
	f := storedFacts(t, n, subs[0])
	if len(f.Labs) > 4*32 {
		t.Errorf("decisions read %d lab results; want at most %d", len(f.Labs), 4*32)
	}
	// What the rules read is kept: the latest positive result, and the
	// negatives after it.
	d, err := n.rules.Load().rs.Decide(f, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Colour != hcx.Red || d.Rule != "positive-lab-result" {
		t.Errorf("decision %s by %s; want red by positive-lab-result", d.Colour, d.Rule)
	}
}

// TestAcknowledgedEventsSurviveACrash runs a node in a child process, kills
// it with SIGKILL while it is acknowledging lab results, and finds every
// acknowledged result in the store it left.
func TestAcknowledgedEventsSurviveACrash(t *testing.T) {
	if dir := os.Getenv("HCX_CRASH_CHILD_DIR"); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	acked := map[hcx.Subject][]time.Time{}
	count := 0
	if !killChildAfter(t, "TestAcknowledgedEventsSurviveACrash", "HCX_CRASH_CHILD_DIR", dir, func(line string) bool {
		var sub string
		var at int64
		if _, err := fmt.Sscanf(line, "ack %s %d", &sub, &at); err == nil {
			acked[hcx.Subject(sub)] = append(acked[hcx.Subject(sub)], time.Unix(0, at).UTC())
			count++
		}
		return count >= 300
	}) {
		t.Fatalf("the child acknowledged only %d results before it ended", count)
	}

	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", dir, time.Now)
	defer n.Close()
	for sub, ats := range acked {
		have := map[time.Time]bool{}
		for _, l := range storedFacts(t, n, sub).Labs {
			have[l.At.UTC()] = true
		}
		for _, at := range ats {
			if !have[at] {
				t.Errorf("resident %s: the result at %s was acknowledged but is gone after the crash", sub, at)
			}
		}
	}
}

// crashChild ingests lab results from several goroutines and prints one line
// per acknowledgement until it is killed.
func crashChild(t *testing.T, dir string) {
	pki := newTestPKI(t, "440000")
	now := time.Now().UTC()
	n := openTestNode(t, pki, "440000", dir, time.Now)
	subs := registerN(t, n, 64)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				sub := subs[(w*8+i)%len(subs)]
				at := now.Add(-time.Duration(w*1000000+i) * time.Millisecond)
				if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Kind: "pcr", At: at}}); err != nil {
					fmt.Fprintln(os.Stderr, "ingest:", err)
					return
				}
				mu.Lock()
				fmt.Printf("ack %s %d\n", sub, at.UnixNano())
				mu.Unlock()
				if i > 20000 {
					return
				}
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// TestEventsOfEarlierVersionsAreFolded: a store written by a version that
// kept one key per event opens with those events in the residents' bounded
// histories, and decides as before.
func TestEventsOfEarlierVersionsAreFolded(t *testing.T) {
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	n := openTestNode(t, pki, "440000", dir, clock)
	subs := registerN(t, n, 3)
	// What the earlier version wrote: ev/<sub>/<nanos>/<seq> and a counter.
	seq := uint64(0)
	err := n.db.Update(func(txn *badger.Txn) error {
		for i, sub := range subs {
			for j := range 40 * i {
				ev := Event{Lab: &policy.LabResult{Positive: j == 0, Kind: "pcr", At: now.Add(-time.Duration(40*i-j) * time.Hour)}}
				if err := setJSON(txn, fmt.Sprintf("%s%s/%020d/%020d", pEvent, sub, ev.Lab.At.UnixNano(), seq), &ev); err != nil {
					return err
				}
				seq++
			}
		}
		return setU64(txn, kEventNext, seq)
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()

	n = openTestNode(t, pki, "440000", dir, clock)
	defer n.Close()
	for i, sub := range subs {
		f := storedFacts(t, n, sub)
		want := min(40*i, 1+maxEventsPerClass) // one positive, the newest negatives
		if i == 0 {
			want = 0
		}
		if len(f.Labs) != want {
			t.Errorf("resident %d: %d lab results after the upgrade, want %d", i, len(f.Labs), want)
		}
	}
	err = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pEvent)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t.Errorf("key %s left behind", it.Item().Key())
		}
		if _, err := txn.Get([]byte(kEventNext)); err != badger.ErrKeyNotFound {
			t.Errorf("%s left behind: %v", kEventNext, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The positive result 80 hours ago still holds resident 2 red.
	st, err := n.Ingest(testCtx, subs[2], Event{Lab: &policy.LabResult{Kind: "pcr", At: now}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Colour != hcx.Red {
		t.Errorf("resident 2 is %s after the upgrade, want red", st.Colour)
	}
}

// TestBoundedHistoryDecidesAsTheFullHistory: for every sample province's
// rules, deciding from the bounded history gives the colour, reasons and rule
// that the full history gives, over random histories of up to 200 events.
func TestBoundedHistoryDecidesAsTheFullHistory(t *testing.T) {
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	rng := newRand(1)
	for _, prov := range []string{"110000", "310000", "440000", "510000"} {
		rs, err := LoadRules("../configs/rules/" + prov + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		for trial := range 300 {
			full := &policy.Facts{}
			h := &history{}
			events := rng.intn(200)
			for range events {
				var ev Event
				at := now.Add(-time.Duration(rng.intn(90*24*60)) * time.Minute)
				if rng.intn(10) == 0 {
					ev.Contact = &policy.ContactFlag{Issuer: "440000", At: at}
					full.Contacts = append(full.Contacts, *ev.Contact)
				} else {
					kind := "pcr"
					if rng.intn(4) == 0 {
						kind = "antigen"
					}
					ev.Lab = &policy.LabResult{Positive: rng.intn(30) == 0, Kind: kind, At: at}
					full.Labs = append(full.Labs, *ev.Lab)
				}
				h.add(&ev)
			}
			want, err := rs.Decide(full, now)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rs.Decide(h.facts(), now)
			if err != nil {
				t.Fatal(err)
			}
			if got.Colour != want.Colour || got.Rule != want.Rule || fmt.Sprint(got.Reasons) != fmt.Sprint(want.Reasons) {
				t.Fatalf("%s trial %d (%d events): bounded history decides %s by %s %v, the full one %s by %s %v",
					prov, trial, events, got.Colour, got.Rule, got.Reasons, want.Colour, want.Rule, want.Reasons)
			}
		}
	}
}

// rnd is a small deterministic generator, so that a failure repeats.
type rnd struct{ s uint64 }

func newRand(seed uint64) *rnd { return &rnd{seed} }

func (r *rnd) intn(n int) int {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return int(r.s % uint64(n))
}

// ingestHeldAtTheLock starts an ingest for sub while holding sub's lock, and
// returns once the ingest has taken its write slot and waits for the lock;
// unlock the lock to let it go on, and read its result from the channel.
func ingestHeldAtTheLock(n *Node, sub hcx.Subject) (*sync.Mutex, <-chan error) {
	mu := n.locks.of(sub)
	mu.Lock()
	res := make(chan error, 1)
	go func() {
		_, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Kind: "pcr"}})
		res <- err
	}()
	for len(n.slots) == 0 {
		time.Sleep(time.Millisecond)
	}
	return mu, res
}

// TestIngestPushesBackWhenTheDiskFallsBehind: with every write slot taken, a
// further ingest waits, then answers busy and writes nothing.
func TestIngestPushesBackWhenTheDiskFallsBehind(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n, err := New(Config{
		Province: "440000", Dir: t.TempDir(), Signer: pki.provs["440000"], RootDER: pki.root.Cert.Raw,
		SubjectKey: subjectKey, FieldKeys: map[int][]byte{1: make([]byte, 16)}, FieldKeyVersion: 1,
		RulesPath: "../configs/rules/440000.yaml", Hub: exchange.NewHubClient([]string{"http://127.0.0.1:1"}, nil),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxPendingWrites: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	subs := registerN(t, n, 2)
	// The first ingest takes the only slot and waits for its resident.
	mu, first := ingestHeldAtTheLock(n, subs[0])
	before := n.StoreVersion()
	_, err = n.Ingest(testCtx, subs[1], Event{Lab: &policy.LabResult{Kind: "pcr"}})
	if err != ErrBusy || hcx.ClassOf(err) != hcx.EUnavailable {
		t.Errorf("ingest with no free slot: err = %v, want busy (unavailable)", err)
	}
	if n.StoreVersion() != before {
		t.Error("a refused ingest wrote to the store")
	}
	mu.Unlock()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(testCtx, subs[1], Event{Lab: &policy.LabResult{Kind: "pcr"}}); err != nil {
		t.Errorf("ingest once the slot is free: %v", err)
	}
}

// TestOutboxSequenceContinuesAfterRestart: outbox sequence numbers live in
// memory and are recovered at open, after a batch that is still pending and
// after an outbox that was emptied, so a new attestation is never numbered at
// or below one the publisher already sent (its acknowledgement deletes
// everything up to its last entry).
func TestOutboxSequenceContinuesAfterRestart(t *testing.T) {
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	ctx := testCtx
	n := openTestNode(t, pki, "440000", dir, clock)
	subs := registerN(t, n, 3)
	positive := func(n *Node, sub hcx.Subject) {
		t.Helper()
		if _, err := n.Ingest(ctx, sub, Event{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: now}}); err != nil {
			t.Fatal(err)
		}
	}
	positive(n, subs[0])
	p, err := n.nextBatch() // sealed, pending, outbox entry 0 still there
	if err != nil || p == nil || p.LastOutbox != 0 {
		t.Fatalf("nextBatch = %+v, %v; want a batch ending at outbox entry 0", p, err)
	}
	n.Close()

	n = openTestNode(t, pki, "440000", dir, clock)
	positive(n, subs[1])
	keys, _ := outboxOf(t, n)
	if len(keys) != 2 || keys[1] != string(seqKey(pOutbox, 1)) {
		t.Fatalf("outbox after restart with a pending batch: %v, want entries 0 and 1", keys)
	}
	if err := n.recordAck(p); err != nil {
		t.Fatal(err)
	}
	if p, err = n.nextBatch(); err != nil || p == nil {
		t.Fatal(p, err)
	}
	if err := n.recordAck(p); err != nil {
		t.Fatal(err)
	}
	if keys, _ := outboxOf(t, n); len(keys) != 0 {
		t.Fatalf("outbox after both acknowledgements: %v", keys)
	}
	n.Close()

	n = openTestNode(t, pki, "440000", dir, clock)
	defer n.Close()
	positive(n, subs[2])
	if keys, _ := outboxOf(t, n); len(keys) != 1 || keys[0] != string(seqKey(pOutbox, 2)) {
		t.Errorf("outbox after restart with an empty outbox: %v, want entry 2", keys)
	}
}

func TestHistoryValueRoundTripsAndRejectsDamage(t *testing.T) {
	now := time.Date(2026, 11, 24, 8, 0, 0, 123456789, time.UTC)
	h := &history{}
	for i := range 80 {
		at := now.Add(-time.Duration(i) * time.Hour)
		h.add(&Event{Lab: &policy.LabResult{Positive: i%7 == 0, Kind: []string{"pcr", "antigen"}[i%2], At: at}})
		if i%5 == 0 {
			h.add(&Event{Contact: &policy.ContactFlag{Issuer: "510000", At: at}})
		}
	}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got history
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(*h) {
		t.Errorf("round trip changed the history:\n got %v\nwant %v", got, *h)
	}
	for cut := range len(b) {
		var x history
		if err := x.UnmarshalBinary(b[:cut]); err == nil {
			t.Fatalf("a history cut to %d of %d bytes decoded", cut, len(b))
		}
	}
	if err := (&history{}).UnmarshalBinary(append(b, 0)); err == nil {
		t.Error("a history with a trailing byte decoded")
	}
	if _, err := (&history{Labs: []policy.LabResult{{Kind: "serology", At: now}}}).MarshalBinary(); err == nil {
		t.Error("a lab kind the format cannot hold was stored")
	}
}

// TestCloseFinishesWritesInFlightAndRefusesNewOnes: an ingest under way when
// the node closes is committed and answered; one after Close gets ErrClosed.
func TestCloseFinishesWritesInFlightAndRefusesNewOnes(t *testing.T) {
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	n := openTestNode(t, pki, "440000", dir, time.Now)
	subs := registerN(t, n, 1)
	mu, inFlight := ingestHeldAtTheLock(n, subs[0])
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an ingest was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	mu.Unlock()
	if err := <-inFlight; err != nil {
		t.Errorf("the ingest in flight at Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(testCtx, subs[0], Event{Lab: &policy.LabResult{Kind: "pcr"}}); err != ErrClosed {
		t.Errorf("ingest after Close: err = %v, want ErrClosed", err)
	}
	n = openTestNode(t, pki, "440000", dir, time.Now)
	defer n.Close()
	if got := len(storedFacts(t, n, subs[0]).Labs); got != 1 {
		t.Errorf("%d lab results after reopening, want the 1 acknowledged at Close", got)
	}
}
