package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

func sealVax(t *testing.T, pki *testPKI, signer, iss hcx.ProvinceCode, doses ...exchange.VaxDose) string {
	t.Helper()
	v := exchange.Vax{Typ: exchange.TypVax, Iss: iss, At: time.Now().Unix(), Doses: doses}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := jsonMarshal(&v)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pki.provs[signer].SignJWS(exchange.HdrVax, b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFollowerRecordsDosesFromOtherProvinces: doses in a vaccination
// envelope about a resident are recorded once and give the mark; doses
// about a subject not held are kept, at most MaxForeignDosesPerSubject,
// and become the history of the resident who registers with that subject;
// an envelope in another province's name is rejected.
func TestFollowerRecordsDosesFromOtherProvinces(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	ctx := context.Background()
	r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(1), Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	lateDoc := testIDNumber(2)
	late, err := n.SubjectOf(hcx.DocCNID, lateDoc)
	if err != nil {
		t.Fatal(err)
	}
	day := int64(86400)
	now := time.Now().Unix()
	doses := []exchange.VaxDose{
		{Sub: r.Subject, Dose: 1, Course: 2, Prod: "CoronaVac", At: now - 50*day, ID: "sc-1"},
		{Sub: r.Subject, Dose: 2, Course: 2, Prod: "CoronaVac", At: now - 20*day, ID: "sc-2"},
	}
	for i := range MaxForeignDosesPerSubject + 4 {
		doses = append(doses, exchange.VaxDose{Sub: late, Dose: 1 + i%10, Course: 1, Prod: "Ad5-nCoV", At: now - int64(60-i)*day, ID: fmt.Sprintf("late-%d", i)})
	}
	entries := []string{
		pki.trustList(t, 1),
		sealVax(t, pki, "510000", "510000", doses...),
		sealVax(t, pki, "510000", "510000", doses[1]), // the same dose again: counts once
		sealVax(t, pki, "440000", "510000", doses[0]), // Guangdong speaking for Sichuan
	}
	if err := n.apply(0, exchange.Entries{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	if got := n.metrics.followRejected.Load(); got != 1 {
		t.Errorf("%d entries rejected, want 1 (the envelope in another province's name)", got)
	}
	if got := countKeys(t, n, pForeignVax+string(late)+"/"); got != MaxForeignDosesPerSubject {
		t.Errorf("kept %d doses for the subject not held, want the bound %d", got, MaxForeignDosesPerSubject)
	}
	if got := n.metrics.vaxDropped.Load(); got != 4 {
		t.Errorf("dropped %d doses past the bound, want 4", got)
	}
	if empty, err := n.recordQueuedDoses(ctx, 100); err != nil || !empty {
		t.Fatalf("recording queued doses: %v (queue empty %v)", err, empty)
	}
	if got := countKeys(t, n, pVaxIn); got != 0 {
		t.Errorf("%d doses still queued", got)
	}
	got, err := n.Vaccinations(testCtx, r.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Vaccinated || len(got.Doses) != 2 || got.Doses[0].Province != "510000" || got.Doses[1].ID != "sc-2" {
		t.Errorf("the resident's vaccinations: %+v, want doses 1 and 2 from 510000 and the mark", got)
	}
	if n.metrics.vaxReceived.Load() != 2 {
		t.Errorf("recorded %d doses, want 2", n.metrics.vaxReceived.Load())
	}
	// The subject registers: the kept doses are theirs, and so is the mark.
	lr, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: lateDoc, Name: "李四"})
	if err != nil {
		t.Fatal(err)
	}
	if lr.Subject != late || !lr.Status.Vaccinated {
		t.Errorf("late registrant %s vaccinated=%v, want %s with the mark", lr.Subject, lr.Status.Vaccinated, late)
	}
	if got := countKeys(t, n, pForeignVax); got != 0 {
		t.Errorf("%d kept doses left after registration", got)
	}
}

// TestDoseForANonResidentIsForwardedOnce: a dose about a subject the node
// does not hold goes to the vaccination outbox once, with its record id
// and audit entry; other kinds are still refused; a dose without an id
// cannot travel.
func TestDoseForANonResidentIsForwardedOnce(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	sub := subjectOf(77)
	at := time.Now().Add(-time.Hour)
	v := func(id string, dose int) Event {
		return Event{Vaccination: &policy.Vaccination{At: at, Dose: dose, Product: "ZF2001", ID: id}}
	}
	for range 2 {
		st, err := n.Ingest(feedCtx, sub, v("gd-9", 1))
		if err != nil || !st.Forwarded {
			t.Fatalf("a dose for a non-resident: %v %+v, want forwarded", err, st)
		}
	}
	if got := countKeys(t, n, pVaxOut); got != 1 {
		t.Errorf("vaccination outbox holds %d doses, want 1", got)
	}
	var he *hcx.Error
	if _, err := n.Ingest(feedCtx, sub, v("gd-9", 2)); !errors.As(err, &he) || he.Code != "record_conflict" {
		t.Errorf("another dose under the id: %v, want record_conflict", err)
	}
	if _, err := n.Ingest(feedCtx, sub, v("", 1)); !errors.As(err, &he) || he.Field != "id" {
		t.Errorf("a dose without an id: %v, want a 400 naming id", err)
	}
	if _, err := n.Ingest(feedCtx, sub, Event{Lab: &policy.LabResult{Positive: true}}); !errors.As(err, &he) || he.Code != "unknown_resident" {
		t.Errorf("a lab result for a non-resident: %v, want unknown_resident", err)
	}
	if got := countKeys(t, n, pVaxOut); got != 1 {
		t.Errorf("vaccination outbox holds %d doses after the refusals, want 1", got)
	}
	actions := 0
	for _, e := range trail(t, n) {
		if e.Action == ActionVaccinationPost && e.Subject == sub {
			actions++
		}
	}
	if actions != 1 {
		t.Errorf("the trail holds %d vaccination.post entries, want 1 (a re-sent record writes nothing)", actions)
	}
}

// TestForwardedDoseSurvivesAFailedSubmissionAndARestart: the dose stays in
// the vaccination outbox until the hub acknowledges it, and the envelope
// signed for it is resubmitted byte for byte after a restart.
func TestForwardedDoseSurvivesAFailedSubmissionAndARestart(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	dir := t.TempDir()
	n := openTestNode(t, pki, "440000", dir, time.Now)
	sub := subjectOf(78)
	ev := Event{Vaccination: &policy.Vaccination{At: time.Now().Add(-time.Hour), Dose: 1, Product: "Ad5-nCoV", ID: "gd-10"}}
	if _, err := n.Ingest(feedCtx, sub, ev); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sent, err := n.publishVax(ctx); err == nil || sent {
		t.Fatalf("publishing to an unreachable hub: sent %v, err %v", sent, err)
	}
	var first pendingVax
	if err := n.db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, kVaxPending, &first); return err }); err != nil || first.JWS == "" {
		t.Fatalf("no pending envelope after a failed submission: %v", err)
	}
	n.Close()
	n = openTestNode(t, pki, "440000", dir, time.Now)
	defer n.Close()
	if got := countKeys(t, n, pVaxOut); got != 1 {
		t.Errorf("after a restart the vaccination outbox holds %d doses, want 1", got)
	}
	if sent, err := n.publishVax(ctx); err == nil || sent {
		t.Fatalf("publishing again: sent %v, err %v", sent, err)
	}
	var again pendingVax
	if err := n.db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, kVaxPending, &again); return err }); err != nil || again.JWS != first.JWS {
		t.Errorf("the envelope resubmitted after a restart differs from the one signed before it")
	}
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1)}}); err != nil {
		t.Fatal(err)
	}
	env, err := exchange.Open(n.trust, first.JWS)
	if err != nil {
		t.Fatal(err)
	}
	v, err := exchange.DecodeVax(env)
	if err != nil || v.Iss != "440000" || len(v.Doses) != 1 || v.Doses[0].Sub != sub || v.Doses[0].Course != 1 || v.Doses[0].ID != "gd-10" {
		t.Errorf("the envelope: %v %+v, want the one dose with the product's course", err, v)
	}
}

// TestBulkRegistrationAdoptsKeptDoses: a resident registered through the
// bulk path gets the doses other provinces reported before, as one
// registered alone does (RegisterBatch skipped them).
func TestBulkRegistrationAdoptsKeptDoses(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	doc := testIDNumber(3)
	sub, err := n.SubjectOf(hcx.DocCNID, doc)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	env := sealVax(t, pki, "510000", "510000", exchange.VaxDose{Sub: sub, Dose: 1, Course: 1, Prod: "Ad5-nCoV", At: now - 86400, ID: "sc-bulk-1"})
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1), env}}); err != nil {
		t.Fatal(err)
	}
	errs, err := n.RegisterBatch(testCtx, []RegisterRequest{{DocType: hcx.DocCNID, DocNumber: doc, Name: "王五"}})
	if err != nil || errs[0] != nil {
		t.Fatalf("bulk registration: %v %v", err, errs)
	}
	r, err := n.Resident(testCtx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Status.Vaccinated {
		t.Errorf("a resident registered in bulk lacks the mark of the dose kept for them")
	}
	if got := countKeys(t, n, pForeignVax); got != 0 {
		t.Errorf("%d kept doses left after bulk registration", got)
	}
}
