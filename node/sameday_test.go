package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

const day = 24 * time.Hour

// runNode runs a node (against an unreachable hub: nothing is published)
// until the test ends.
func runNode(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitFor polls cond until it holds or 15 s pass (a loaded machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outbox reads the attestations waiting in a node's outbox, in order.
func outbox(t *testing.T, n *Node) []hcx.Attestation {
	t.Helper()
	var out []hcx.Attestation
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pOutbox), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a hcx.Attestation
			if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &a) }); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func register(t *testing.T, n *Node, doc string) hcx.Subject {
	t.Helper()
	r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	return r.Subject
}

func lab(t *testing.T, n *Node, sub hcx.Subject, positive bool, at time.Time) {
	t.Helper()
	if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Positive: positive, At: at, Kind: "pcr"}}); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, n *Node, sub hcx.Subject) Status {
	t.Helper()
	r, err := n.Resident(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

// positiveOnDay0 is a Guangdong node on a clock the test moves, with a
// resident whose PCR test was positive on day 0.
func positiveOnDay0(t *testing.T) (*Node, hcx.Subject, time.Time, *testClock) {
	t.Helper()
	day0 := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	clock := newTestClock(day0)
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock.Now)
	t.Cleanup(func() { n.Close() })
	sub := register(t, n, "440106199003070028")
	lab(t, n, sub, true, day0)
	return n, sub, day0, clock
}

// Finding 7(a): a red that the rules still hold must keep counting in other
// provinces after the attestation's 7 days: the node re-attests it before it
// lapses, with a higher n and the same colour.
func TestRedIsReattestedBeforeItsAttestationLapses(t *testing.T) {
	n, sub, day0, clock := positiveOnDay0(t)
	first := outbox(t, n)
	if len(first) != 1 || first[0].Colour != hcx.Red || first[0].Exp != day0.Add(7*day).Unix() {
		t.Fatalf("outbox after the positive result = %+v, want one red attestation for 7 days", first)
	}
	clock.Set(day0.Add(6 * day)) // the red holds (14 days), the attestation has a day left
	runNode(t, n)
	waitFor(t, "a re-attestation in the outbox", func() bool { return len(outbox(t, n)) == 2 })
	again := outbox(t, n)[1]
	if again.Colour != hcx.Red || again.N != 2 || again.Exp <= day0.Add(7*day).Unix() ||
		again.Subject != sub || len(again.Reasons) != 1 || again.Reasons[0] != hcx.ReasonLabPositive {
		t.Errorf("re-attestation = %+v, want red lab.positive with n 2 counting beyond day 7", again)
	}
	if !again.Counts(day0.Add(7*day+time.Hour)) || again.Counts(day0.Add(-time.Hour)) {
		t.Errorf("re-attestation %+v must count on day 7 and take effect when the red began", again)
	}
}

// Finding 7(b): a release that becomes due with the passing of time (14 days
// and 5 negative PCR tests) happens without any new event.
func TestReleaseComesWhenTheWaitEndsWithoutANewEvent(t *testing.T) {
	n, sub, day0, clock := positiveOnDay0(t)
	for d := 9; d <= 13; d++ {
		clock.Set(day0.Add(time.Duration(d) * day))
		lab(t, n, sub, false, clock.Now())
	}
	if st := status(t, n, sub); st.Colour != hcx.Red {
		t.Fatalf("day 13 with 5 negatives: %s, want red until day 14", st.Colour)
	}
	clock.Set(day0.Add(14 * day))
	runNode(t, n)
	waitFor(t, "the release on day 14", func() bool { return status(t, n, sub).Colour == hcx.Green })
	st := status(t, n, sub)
	if len(st.Reasons) != 1 || st.Reasons[0].Code != hcx.ReasonReleased {
		t.Errorf("status after release = %+v, want green, released", st)
	}
	waitFor(t, "the green attestation", func() bool {
		out := outbox(t, n)
		return len(out) > 0 && out[len(out)-1].Colour == hcx.Green
	})
}

// Finding 7(c): a rule change re-decides every resident and publishes the
// changes; nobody stays under the old policy version.
func TestRuleChangeRedecidesEveryResident(t *testing.T) {
	now := time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC)
	clock := newTestClock(now)
	n, rules, good := openNodeWithOwnRules(t, clock.Now)
	defer n.Close()
	// Released early under the new rules: positive 11 days ago, 5 negatives since.
	early := register(t, n, "440106199003070028")
	lab(t, n, early, true, now.Add(-11*day))
	for d := 10; d >= 6; d-- {
		lab(t, n, early, false, now.Add(-time.Duration(d)*day))
	}
	// Red under both: positive yesterday.
	still := register(t, n, "11010519491231002X")
	lab(t, n, still, true, now.Add(-day))
	old := n.PolicyVersion()
	if st := status(t, n, early); st.Colour != hcx.Red || st.Policy != old {
		t.Fatalf("before the change: %+v, want red under %s", st, old)
	}
	runNode(t, n)
	if err := os.WriteFile(rules, bytes.Replace(good, []byte("days: 14"), []byte("days: 10"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadRules(); err != nil {
		t.Fatal(err)
	}
	neu := n.PolicyVersion()
	waitFor(t, "every resident under the new policy", func() bool {
		return status(t, n, early).Policy == neu && status(t, n, still).Policy == neu
	})
	if st := status(t, n, early); st.Colour != hcx.Green {
		t.Errorf("resident released under the new rules: %+v, want green", st)
	}
	if st := status(t, n, still); st.Colour != hcx.Red {
		t.Errorf("resident red under both: %+v, want red", st)
	}
	out := outbox(t, n)
	last := out[len(out)-1]
	if last.Subject != early || last.Colour != hcx.Green || last.PolicyV != neu {
		t.Errorf("last outbox attestation = %+v, want green for the released resident under %s", last, neu)
	}
}

// Finding 7(d): a person red at Guangdong is red at Sichuan's node too, and
// Sichuan's codes say red; the status says which province decided it.
func TestOwnStatusAndCodesIncludeOtherProvincesAttestations(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	ctx := testCtx
	now := time.Now().UTC().Truncate(time.Second)
	sc := openTestNode(t, pki, "510000", t.TempDir(), func() time.Time { return now })
	defer sc.Close()
	sub := register(t, sc, "440106199003070028")
	batch, err := exchange.SealBatch(pki.provs["440000"], &exchange.Batch{Iss: "440000", Seq: 1, At: now.Unix(), SKV: 1,
		Atts: []hcx.Attestation{{Subject: sub, Colour: hcx.Red, Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: now.Unix() - 1, Exp: now.Unix() + 3600, PolicyV: "00", N: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1), batch}}); err != nil {
		t.Fatal(err)
	}
	st := status(t, sc, sub)
	if st.Colour != hcx.Red || len(st.Reasons) != 1 || st.Reasons[0].Code != hcx.ReasonLabPositive {
		t.Fatalf("Sichuan's status = %+v, want red for lab.positive", st)
	}
	if len(st.DecidedBy) != 1 || st.DecidedBy[0] != "440000" || len(st.Attestations) != 1 || st.Attestations[0].Province != "440000" {
		t.Errorf("status names %v / %+v, want Guangdong's attestation as the decider", st.DecidedBy, st.Attestations)
	}
	// The status an event answers with is the combined one too.
	ingested, err := sc.Ingest(ctx, sub, Event{Lab: &policy.LabResult{Positive: false, At: now, Kind: "pcr"}})
	if err != nil || ingested.Colour != hcx.Red {
		t.Errorf("status after a negative test at Sichuan = %+v, %v; want red from Guangdong", ingested, err)
	}
	code, err := sc.IssueCode(ctx, sub, false)
	if err != nil {
		t.Fatal(err)
	}
	if code.Colour != hcx.Red {
		t.Errorf("Sichuan's code says %s, want red", code.Colour)
	}
	claims, _, err := exchange.VerifyCode(sc.trust, code.QR, now)
	if err != nil || claims.Col != hcx.Red {
		t.Errorf("the token's colour = %v (%v), want red", claims, err)
	}
	// Once Guangdong's attestation stops counting, Sichuan's own green is back.
	now = now.Add(2 * time.Hour)
	if st := status(t, sc, sub); st.Colour != hcx.Green || len(st.DecidedBy) != 1 || st.DecidedBy[0] != "510000" {
		t.Errorf("after Guangdong's attestation expired: %+v, want Sichuan's own green", st)
	}
}

// A bulk re-decision is durable: a node that starts with rules its residents
// were not decided with plans one, and one that stopped half-way goes on
// from its stored cursor instead of starting over.
func TestRedecisionResumesFromItsCursorAfterARestart(t *testing.T) {
	now := time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC)
	clock := newTestClock(now)
	n, rules, good := openNodeWithOwnRules(t, clock.Now)
	var subs []hcx.Subject
	for _, doc := range []string{"440106199003070028", "11010519491231002X", "51010719850612004X"} {
		sub := register(t, n, doc)
		lab(t, n, sub, true, now.Add(-11*day))
		for d := 10; d >= 6; d-- {
			lab(t, n, sub, false, now.Add(-time.Duration(d)*day))
		}
		subs = append(subs, sub)
	}
	slices.Sort(subs)
	old := n.PolicyVersion()
	dir, cfg := n.cfg.Dir, n.cfg
	n.Close()

	// The rules change while the node is down.
	if err := os.WriteFile(rules, bytes.Replace(good, []byte("days: 14"), []byte("days: 10"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	reopen := func() *Node {
		t.Helper()
		cfg.Dir = dir
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n = reopen()
	neu := n.PolicyVersion()
	// As if it had stopped after the first two residents.
	err := n.db.Update(func(txn *badger.Txn) error {
		var job redecideJob
		if found, err := getJSON(txn, kRedecide, &job); err != nil || !found {
			return fmt.Errorf("no re-decision planned at start with new rules (found %v, err %v)", found, err)
		}
		job.Cursor, job.Done = subs[1], 2
		return setJSON(txn, kRedecide, &job)
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.Redecide(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Done != 3 || p.Total != 3 || p.Attested != 1 || p.Incomplete {
		t.Errorf("progress = %+v, want 3 of 3 done, 1 attestation", p)
	}
	for i, sub := range subs {
		st := status(t, n, sub)
		want, wantPolicy := hcx.Red, old // before the cursor: left as they were
		if i == 2 {
			want, wantPolicy = hcx.Green, neu
		}
		if st.Colour != want || st.Policy != wantPolicy {
			t.Errorf("resident %d: %s under %s, want %s under %s", i, st.Colour, st.Policy, want, wantPolicy)
		}
	}
	n.Close()
	n = reopen()
	defer n.Close()
	if p, err := n.Redecide(context.Background()); err != nil || p.Done != 0 {
		t.Errorf("after the job ended, a restart re-decided %d residents (err %v), want none", p.Done, err)
	}
}

// A green that ended a red keeps superseding it after it expires: the issuer
// then has no attestation in force, and its older red does not come back.
func TestAnExpiredGreenLeavesTheRedItEndedSuperseded(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	now := time.Now().UTC().Truncate(time.Second)
	clock := newTestClock(now)
	sc := openTestNode(t, pki, "510000", t.TempDir(), clock.Now)
	defer sc.Close()
	sub := register(t, sc, "440106199003070028")
	batch, err := exchange.SealBatch(pki.provs["440000"], &exchange.Batch{Iss: "440000", Seq: 1, At: now.Unix(), SKV: 1,
		Atts: []hcx.Attestation{
			{Subject: sub, Colour: hcx.Red, Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: now.Unix() - 100, Exp: now.Unix() + 7200, PolicyV: "00", N: 1},
			{Subject: sub, Colour: hcx.Green, Reasons: []hcx.Reason{hcx.ReasonReleased}, Eff: now.Unix() - 10, Exp: now.Unix() + 60, PolicyV: "00", N: 2},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1), batch}}); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{now, now.Add(10 * time.Minute)} { // the green in force, then expired
		clock.Set(at)
		if st := status(t, sc, sub); st.Colour != hcx.Green {
			t.Errorf("at +%s: Sichuan's status is %s, want green", at.Sub(now), st.Colour)
		}
		code, err := sc.IssueCode(context.Background(), sub, false)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := sc.Verify(context.Background(), code.QR); err != nil || v.Colour != hcx.Green {
			t.Errorf("at +%s: verify = %+v, %v; want green", at.Sub(now), v, err)
		}
	}
}
