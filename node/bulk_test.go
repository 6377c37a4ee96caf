package node

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

func codeOf(err error) string {
	var he *hcx.Error
	if errors.As(err, &he) {
		return he.Code + "/" + he.Field
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestIngestBatchKeepsGoodRecordsCountsResentOnceAndAuditsEach: one batch
// with good records, a record repeated in the batch, a conflict, a bad
// field and a stranger; each record gets its own outcome, the good ones are
// kept and decided once per resident, each accepted record has its audit
// entry naming the subject and record, and the batch sent again writes
// nothing.
func TestIngestBatchKeepsGoodRecordsCountsResentOnceAndAuditsEach(t *testing.T) {
	pki := newTestPKI(t, "440000")
	now := time.Now().UTC().Truncate(time.Second)
	n := openTestNode(t, pki, "440000", t.TempDir(), func() time.Time { return now })
	defer n.Close()
	subs := registerN(t, n, 2)
	stranger := n.cfg.SubjectKey.Subject(hcx.DocCNID, testIDNumber(500))
	lab := func(id string, pos bool) Event {
		return Event{Lab: &policy.LabResult{ID: id, Positive: pos, Kind: "pcr", At: now.Add(-time.Hour)}}
	}
	batch := []BatchRecord{
		{subs[0], lab("s-1", false)},
		{subs[0], lab("s-2", true)},
		{subs[1], lab("s-3", false)},
		{subs[1], lab("s-3", false)}, // the same record twice in one batch
		{subs[1], lab("s-1", true)},  // s-1 used above with other content
		{subs[1], Event{Lab: &policy.LabResult{ID: "s-4", Kind: "pcr", At: now.Add(time.Hour)}}},
		{stranger, lab("s-5", true)},
	}
	out, err := n.IngestBatch(testCtx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ok", "ok", "ok", "duplicate_record/", "record_conflict/id", "invalid_at/at", "unknown_resident/sub"}
	for i := range want {
		if got := codeOf(out[i]); got != want[i] {
			t.Errorf("record %d: %s, want %s", i, got, want[i])
		}
	}
	r, err := n.Resident(testCtx, subs[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Status.Colour != hcx.Red {
		t.Errorf("resident with a positive result in the batch is %s", r.Status.Colour)
	}
	_, atts := outboxOf(t, n)
	if len(atts) != 1 || atts[0].Subject != subs[0] {
		t.Errorf("outbox %+v: want one attestation, of the positive resident", atts)
	}
	if f := storedFacts(t, n, subs[1]); len(f.Labs) != 1 {
		t.Errorf("second resident has %d results, want 1", len(f.Labs))
	}
	page, err := n.AuditTrail(testCtx, 0, MaxAuditPage)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]hcx.Subject{}
	for _, e := range page.Entries {
		if e.Action == ActionLabPost {
			found[e.Note] = e.Subject
		}
	}
	wantAudit := map[string]hcx.Subject{"record lab/s-1": subs[0], "record lab/s-2": subs[0], "record lab/s-3": subs[1]}
	if fmt.Sprint(found) != fmt.Sprint(wantAudit) {
		t.Errorf("audit entries of the batch %v, want %v", found, wantAudit)
	}
	if _, err := n.VerifyAuditTrail(); err != nil {
		t.Fatal(err)
	}
	v := n.StoreVersion()
	out, err = n.IngestBatch(testCtx, batch[:3])
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range out {
		if e != ErrDuplicateRecord {
			t.Errorf("record %d sent again: %v, want a duplicate", i, e)
		}
	}
	if n.StoreVersion() != v {
		t.Error("a batch sent again wrote to the store")
	}
}

func TestIngestBatchRefusesOversizeBatchAndWritesNothing(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(t, n, 1)
	v := n.StoreVersion()
	big := make([]BatchRecord, MaxBatch+1)
	for i := range big {
		big[i] = BatchRecord{subs[0], Event{Lab: &policy.LabResult{ID: fmt.Sprint(i)}}}
	}
	if _, err := n.IngestBatch(testCtx, big); codeOf(err) != "invalid_records/records" {
		t.Errorf("oversize batch: %v", err)
	}
	if _, err := n.IngestBatch(t.Context(), big[:1]); err != ErrNoActor {
		t.Errorf("batch without a principal: %v", err)
	}
	if n.StoreVersion() != v {
		t.Error("a refused batch wrote to the store")
	}
}

func TestRegisterBatchRegistersOnceAndNamesBadFields(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	reqs := []RegisterRequest{
		{DocType: hcx.DocCNID, DocNumber: testIDNumber(1), Name: "张三"},
		{DocType: hcx.DocCNID, DocNumber: testIDNumber(2), Name: "李四"},
		{DocType: hcx.DocCNID, DocNumber: testIDNumber(1), Name: "张三"},
		{DocType: hcx.DocCNID, DocNumber: "440106199003070020", Name: "王五"},
	}
	out, err := n.RegisterBatch(testCtx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{codeOf(out[0]), codeOf(out[1]), codeOf(out[2])}
	if strings.Join(got, " ") != "ok ok duplicate_record/" || out[3] == nil {
		t.Errorf("outcomes %v %v", got, out[3])
	}
	sub := n.cfg.SubjectKey.Subject(hcx.DocCNID, testIDNumber(2))
	r, err := n.Resident(testCtx, sub)
	if err != nil || r.MaskedName != hcx.MaskName("李四") {
		t.Fatalf("registered resident %+v, %v", r, err)
	}
	v := n.StoreVersion()
	out, _ = n.RegisterBatch(testCtx, reqs[:2])
	if out[0] != ErrDuplicateRecord || out[1] != ErrDuplicateRecord || n.StoreVersion() != v {
		t.Errorf("registration sent again: %v, store changed %v", out, n.StoreVersion() != v)
	}
}
