package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/policy"
)

// op2Ctx is a second operator of Guangdong.
var op2Ctx = auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleOperator, Actor: "oidc:https://idp.test#op-2", Name: "op-2", Province: "440000", Method: auth.MethodBearer})

func registerTest(t *testing.T, n *Node, i int, name string) hcx.Subject {
	t.Helper()
	r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(i), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return r.Subject
}

func labWithID(t *testing.T, n *Node, sub hcx.Subject, id string, positive bool) *Status {
	t.Helper()
	st, err := n.Ingest(feedCtx, sub, Event{Lab: &policy.LabResult{Positive: positive, ID: id}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestAppealRefusalsNameTheFieldAndWriteNothing(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	a := registerTest(t, n, 1, "张三")
	b := registerTest(t, n, 2, "李四")
	labWithID(t, n, a, "S-A", true)
	labWithID(t, n, b, "S-B", true)
	before := n.StoreVersion()
	rec := func(kind, id string) *RecordRef { return &RecordRef{Kind: kind, ID: id} }
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		sub   hcx.Subject
		req   AppealRequest
		class hcx.ErrorCode
		field string
	}{
		{"another's record", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: rec(KindLab, "S-B"), Text: "not mine"}, hcx.ENotFound, "record.id"},
		{"unknown record", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: rec(KindLab, "S-X"), Text: "x"}, hcx.ENotFound, "record.id"},
		{"wrong kind of record", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: rec(KindContact, "S-A"), Text: "x"}, hcx.ENotFound, "record.id"},
		{"unknown record kind", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: rec("pcr", "S-A"), Text: "x"}, hcx.EInvalid, "record.kind"},
		{"record without id", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: rec(KindLab, ""), Text: "x"}, hcx.EInvalid, "record.id"},
		{"record id with a space", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: rec(KindLab, "S A"), Text: "x"}, hcx.EInvalid, "record.id"},
		{"record appeal without record", residentCtx(a), a, AppealRequest{Kind: AppealRecord, Text: "x"}, hcx.EInvalid, "record"},
		{"colour appeal with record", residentCtx(a), a, AppealRequest{Kind: AppealColour, Record: rec(KindLab, "S-A"), Text: "x"}, hcx.EInvalid, "record"},
		{"reclaim here", residentCtx(a), a, AppealRequest{Kind: AppealReclaim, Text: "x"}, hcx.EInvalid, "kind"},
		{"no text", residentCtx(a), a, AppealRequest{Kind: AppealColour, Text: "  "}, hcx.EInvalid, "text"},
		{"long text", residentCtx(a), a, AppealRequest{Kind: AppealColour, Text: strings.Repeat("错", MaxAppealText+1)}, hcx.EInvalid, "text"},
		{"control character", residentCtx(a), a, AppealRequest{Kind: AppealColour, Text: "a\x1b[2Jb"}, hcx.EInvalid, "text"},
		{"unknown resident", testCtx, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", AppealRequest{Kind: AppealColour, Text: "x"}, hcx.ENotFound, "sub"},
	} {
		_, err := n.FileAppeal(tc.ctx, tc.sub, tc.req)
		var e *hcx.Error
		if !errors.As(err, &e) || e.Class != tc.class || e.Field != tc.field {
			t.Errorf("%s: err = %v, want %s naming %s", tc.name, err, tc.class, tc.field)
			continue
		}
		if tc.class == hcx.ENotFound && tc.field != "sub" && e.Code != "unknown_record" {
			t.Errorf("%s: code %s, want unknown_record", tc.name, e.Code)
		}
	}
	if _, err := n.FileAppeal(context.Background(), a, AppealRequest{Kind: AppealColour, Text: "x"}); err == nil {
		t.Error("an appeal without a principal was filed")
	}
	if after := n.StoreVersion(); after != before {
		t.Errorf("refused appeals wrote to the store: %d -> %d", before, after)
	}

	// At most MaxOpenAppeals wait at once.
	for i := 0; i < MaxOpenAppeals; i++ {
		if _, err := n.FileAppeal(residentCtx(a), a, AppealRequest{Kind: AppealColour, Text: "please"}); err != nil {
			t.Fatal(err)
		}
	}
	before = n.StoreVersion()
	_, err := n.FileAppeal(residentCtx(a), a, AppealRequest{Kind: AppealColour, Text: "please"})
	wantErr(t, "one appeal too many", err, hcx.EConflict, "too_many_open_appeals")
	if after := n.StoreVersion(); after != before {
		t.Errorf("a refused appeal wrote to the store")
	}
	if got := trailOf(t, n, ActionAppealFile); len(got) != MaxOpenAppeals {
		t.Errorf("%d appeal.file entries, want %d", len(got), MaxOpenAppeals)
	}
}

func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	var e *hcx.Error
	if !errors.As(err, &e) || e.Class != hcx.EInvalid || e.Field != field {
		t.Errorf("%s: err = %v, want invalid naming %s", what, err, field)
	}
}

// An accepted colour appeal voids two records in one write: one
// appeal.decide entry and one record.void per record, chained, in the same
// commit as the new colour and its attestation; the trail verifies; the
// records stay voided when a feed sends them again and after a restart.
func TestAcceptedAppealVoidsRecordsInOneWrite(t *testing.T) {
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	n := openTestNode(t, pki, "440000", dir, time.Now)
	a := registerTest(t, n, 1, "张三")
	labWithID(t, n, a, "L-1", true)
	if st := labWithID(t, n, a, "L-2", true); st.Colour != hcx.Red {
		t.Fatalf("after two positives: %s", st.Colour)
	}
	ap, err := n.FileAppeal(residentCtx(a), a, AppealRequest{Kind: AppealColour, Text: "两份结果都是别人的"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := n.OpenAppeal(testCtx, ap.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.PreCheck.RestsOn) != 2 || len(ev.Records) != 2 || ev.Appeal.Status != AppealUnderReview {
		t.Errorf("evidence of a colour appeal: rests on %v, records %d, status %s", ev.PreCheck.RestsOn, len(ev.Records), ev.Appeal.Status)
	}

	before := n.StoreVersion()
	_, err = n.DecideAppeal(testCtx, ap.ID, DecisionRequest{Decision: "reject", Reason: "no", Void: []RecordRef{{KindLab, "L-1"}}})
	wantInvalid(t, "void on reject", err, "void")
	_, err = n.DecideAppeal(testCtx, ap.ID, DecisionRequest{Decision: "accept", Reason: "x", Void: []RecordRef{{KindLab, "L-1"}, {KindLab, "L-9"}}})
	e := wantErr(t, "void of an unknown record", err, hcx.ENotFound, "unknown_record")
	if e.Field != "void[1].id" {
		t.Errorf("field %q, want void[1].id", e.Field)
	}
	_, err = n.DecideAppeal(testCtx, ap.ID, DecisionRequest{Decision: "maybe", Reason: "x"})
	wantInvalid(t, "unknown decision", err, "decision")
	_, err = n.DecideAppeal(testCtx, ap.ID, DecisionRequest{Decision: "accept", Reason: strings.Repeat("x", MaxDecisionReason+1)})
	wantInvalid(t, "long reason", err, "reason")
	_, err = n.DecideAppeal(testCtx, "ffffffffffffffffffffffff", DecisionRequest{Decision: "accept", Reason: "x"})
	wantErr(t, "unknown appeal", err, hcx.ENotFound, "unknown_appeal")
	if after := n.StoreVersion(); after != before {
		t.Errorf("refused decisions wrote to the store: %d -> %d", before, after)
	}

	d, err := n.DecideAppeal(testCtx, ap.ID, DecisionRequest{Decision: "accept", Reason: "样本错配", Void: []RecordRef{{KindLab, "L-1"}, {KindLab, "L-2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.Colour != hcx.Green || len(d.Appeal.Voided) != 2 || d.Appeal.ColourBefore != hcx.Red || d.Appeal.ColourAfter != hcx.Green {
		t.Errorf("decision: %+v, status %+v", d.Appeal, d.Status)
	}
	decided := trailOf(t, n, ActionAppealDecide)
	voids := trailOf(t, n, ActionRecordVoid)
	if len(decided) != 1 || len(voids) != 2 || voids[0].Seq != decided[0].Seq+1 || voids[1].Seq != decided[0].Seq+2 || !decided[0].At.Equal(voids[1].At) {
		t.Errorf("decision entries: decide %+v, voids %+v", decided, voids)
	}
	for _, v := range voids {
		if v.Subject != a || v.Actor != "oidc:https://idp.test#op-1" || !strings.Contains(v.Note, ap.ID) {
			t.Errorf("record.void entry: %+v", v)
		}
	}
	if _, err := n.VerifyAuditTrail(); err != nil {
		t.Errorf("the trail with several entries per write: %v", err)
	}
	// The feed re-sends L-1: counted as sent before, still green.
	var l1 policy.LabResult
	for _, v := range d.Appeal.Voided {
		if v.ID == "L-1" {
			l1 = *v.Event.Lab
		}
	}
	if st, err := n.Ingest(feedCtx, a, Event{Lab: &l1}); err != nil || st.Colour != hcx.Green {
		t.Errorf("the re-sent voided record: %v %v", st, err)
	} else if st.Colour != hcx.Green {
		t.Errorf("the re-sent voided record turned the resident %s", st.Colour)
	}
	wantNoIdentityInTrail(t, n, "张三", testIDNumber(1))

	n.Close()
	n = openTestNode(t, pki, "440000", dir, time.Now)
	defer n.Close()
	got, err := n.AppealOf(context.Background(), a, ap.ID)
	if err != nil || got.Status != AppealAccepted || len(got.Voided) != 2 || got.Reason != "样本错配" {
		t.Errorf("after restart: %+v %v", got, err)
	}
	r, err := n.Resident(context.Background(), a)
	if err != nil || r.Status.Colour != hcx.Green {
		t.Errorf("after restart the resident is %+v %v", r, err)
	}
}

func TestOpenAppealsArePagedOldestFirst(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	var ids []string
	for i := 1; i <= 5; i++ {
		sub := registerTest(t, n, i, "张三")
		ap, err := n.FileAppeal(testCtx, sub, AppealRequest{Kind: AppealColour, Text: "12345 hotline call"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ap.ID)
	}
	if _, err := n.DecideAppeal(testCtx, ids[1], DecisionRequest{Decision: "reject", Reason: "records right"}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := n.OpenAppeals(context.Background(), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p.Appeals {
			seen = append(seen, a.ID)
		}
		if p.Next == "" || pages > 5 {
			break
		}
		after = p.Next
	}
	want := []string{ids[0], ids[2], ids[3], ids[4]}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("open appeals %v, want %v", seen, want)
	}
	_, err := n.OpenAppeals(context.Background(), "", MaxAppealPage+1)
	wantInvalid(t, "limit too big", err, "limit")
	_, err = n.OpenAppeals(context.Background(), "../x", 10)
	wantInvalid(t, "bad after", err, "after")
}

// The automatic pre-check: stays of the last 7 days against risk areas in
// force at each stay's time (a prefecture code covers its divisions).
func TestPreCheckComparesRecentStaysWithRiskAreasInForce(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	lifted := now.Add(-3 * day)
	h := &history{Travel: []policy.TravelRecord{
		{Div: "440106", At: now.Add(-10 * day), ID: "T-old"},   // outside the window
		{Div: "440106", At: now.Add(-2 * day), ID: "T-in"},     // in 440100, in force
		{Div: "510107", At: now.Add(-5 * day), ID: "T-before"}, // before 510100's designation
		{Div: "310115", At: now.Add(-1 * day), ID: "T-lifted"}, // after 310000's was lifted
		{Div: "110105", At: now.Add(-4 * day), ID: "T-clear"},  // nowhere risky
	}}
	facts := h.facts()
	facts.RiskAreas = []policy.RiskArea{
		{Div: "440100", Level: "high", From: now.Add(-6 * day)},
		{Div: "510100", Level: "medium", From: now.Add(-4 * day)},
		{Div: "310000", Level: "medium", From: now.Add(-20 * day), To: &lifted},
	}
	st := Status{Reasons: reasonTexts([]hcx.Reason{hcx.ReasonTravelRisk})}
	pc := n.preCheck(h, facts, st, now)
	if len(pc.Stays) != 4 || !pc.InRiskArea {
		t.Fatalf("pre-check: %+v", pc)
	}
	hits := map[string]int{}
	for _, s := range pc.Stays {
		hits[s.ID] = len(s.Areas)
	}
	if hits["T-in"] != 1 || hits["T-before"] != 0 || hits["T-lifted"] != 0 || hits["T-clear"] != 0 {
		t.Errorf("stays against areas: %v", hits)
	}
	if len(pc.RestsOn) != 1 || pc.RestsOn[0] != (RecordRef{KindTravel, "T-in"}) {
		t.Errorf("rests on %v, want travel/T-in", pc.RestsOn)
	}
	if pc.Summary.ZH == "" || pc.Summary.EN == "" {
		t.Error("no summary")
	}
}

// A desk reclaim: the document's owner is checked by one operator and the
// claim granted by another; accepting re-seals the name and ends the
// squatter's session, passkeys, enrolment code and delegations.
func TestDeskReclaimNeedsASecondOperatorAndEndsTheSquatter(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	doc := testIDNumber(7)
	// The squatter got an enrolment code under their own name.
	enr, err := n.IssueEnrolment(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: "王冒名"})
	if err != nil {
		t.Fatal(err)
	}
	sub := enr.Subject
	if _, err := n.UseEnrolment(context.Background(), enr.Code); err != nil {
		t.Fatal(err)
	}
	squat := &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + string(sub), Subject: sub}
	secret, _, err := n.NewSession(context.Background(), squat)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.AddPasskey(context.Background(), sub, Passkey{ID: []byte("squatter-phone"), Created: time.Now(), Credential: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.PasskeyHandle(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	dependant := registerTest(t, n, 8, "小明")
	if err := n.AddGuardian(testCtx, dependant, sub); err != nil {
		t.Fatal(err)
	}
	// A fresh code the squatter has not used yet.
	enr2, err := n.IssueEnrolment(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: "王冒名"})
	if err != nil {
		t.Fatal(err)
	}

	before := n.StoreVersion()
	_, err = n.FileReclaim(testCtx, ReclaimRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: "王冒名", Text: "x"}, ReclaimProof{Method: "desk", Actor: "op-1"})
	e := wantErr(t, "same name", err, hcx.EConflict, "name_matches")
	if e.Field != "name" {
		t.Errorf("field %q", e.Field)
	}
	_, err = n.FileReclaim(testCtx, ReclaimRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(9), Name: "李雷", Text: "x"}, ReclaimProof{Method: "desk"})
	e = wantErr(t, "unregistered document", err, hcx.ENotFound, "unknown_resident")
	if e.Field != "doc_number" {
		t.Errorf("field %q", e.Field)
	}
	_, err = n.FileReclaim(testCtx, ReclaimRequest{DocType: hcx.DocCNID, DocNumber: "123", Name: "李雷", Text: "x"}, ReclaimProof{Method: "desk"})
	if err == nil {
		t.Error("a malformed document was accepted")
	}
	if after := n.StoreVersion(); after != before {
		t.Errorf("refused reclaims wrote to the store")
	}

	ap, err := n.FileReclaim(testCtx, ReclaimRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: "李雷", Text: "身份证原件在此"}, ReclaimProof{Method: "desk", Actor: "oidc:https://idp.test#op-1"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := n.OpenAppeal(op2Ctx, ap.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Reclaim == nil || ev.Reclaim.ClaimedName != hcx.MaskName("李雷") || ev.Reclaim.RegisteredName != hcx.MaskName("王冒名") || ev.Reclaim.Passkeys != 1 || ev.Reclaim.Delegations != 1 {
		t.Errorf("reclaim evidence: %+v", ev.Reclaim)
	}
	_, err = n.DecideAppeal(testCtx, ap.ID, DecisionRequest{Decision: "accept", Reason: "checked"})
	wantErr(t, "the filing operator grants it", err, hcx.EForbidden, "same_operator")

	d, err := n.DecideAppeal(op2Ctx, ap.ID, DecisionRequest{Decision: "accept", Reason: "原件核验一致"})
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Appeal.Reclaim; r == nil || r.Sessions != 1 || r.Passkeys != 1 || r.Delegations != 1 || r.EnrolmentCodes != 1 {
		t.Errorf("outcome: %+v", d.Appeal.Reclaim)
	}
	id, err := n.ResidentIdentity(context.Background(), sub)
	if err != nil || id.Name != "李雷" || id.DocNumber != doc {
		t.Errorf("identity after the reclaim: %+v %v", id, err)
	}
	if _, err := n.Session(context.Background(), secret); err == nil {
		t.Error("the squatter's session survived")
	}
	if pks, _ := n.Passkeys(context.Background(), sub); len(pks) != 0 {
		t.Errorf("the squatter's passkeys survived: %d", len(pks))
	}
	if _, err := n.UseEnrolment(context.Background(), enr2.Code); err == nil {
		t.Error("the squatter's enrolment code still works")
	}
	if ok, _ := n.Delegated(context.Background(), sub, dependant); ok {
		t.Error("the squatter is still a guardian")
	}
	if got, err := n.UseEnrolment(context.Background(), d.Enrolment.Code); err != nil || got != sub {
		t.Errorf("the owner's code: %v %v", got, err)
	}
	// The owner's identity provider login binds now; the squatter's name
	// does not any more.
	if _, err := n.BindVerifiedIdentity(context.Background(), auth.VerifiedIdentity{DocType: hcx.DocCNID, DocNumber: doc, Name: "李雷", Issuer: "https://idp.test", Subject: "li"}); err != nil {
		t.Errorf("the owner's OIDC binding: %v", err)
	}
	_, err = n.BindVerifiedIdentity(context.Background(), auth.VerifiedIdentity{DocType: hcx.DocCNID, DocNumber: doc, Name: "王冒名", Issuer: "https://idp.test", Subject: "w"})
	wantErr(t, "the squatter's name", err, hcx.EConflict, "name_mismatch")
	// Opened again after the decision, it still shows its evidence.
	if ev, err := n.OpenAppeal(op2Ctx, ap.ID); err != nil || ev.Reclaim == nil || ev.Reclaim.ClaimedName != hcx.MaskName("李雷") || ev.Appeal.Status != AppealAccepted {
		t.Errorf("the accepted reclaim opened again: %+v %v", ev, err)
	}
	if got := trailOf(t, n, ActionIdentityReclaim); len(got) != 1 || got[0].Subject != sub || got[0].Actor != "oidc:https://idp.test#op-2" {
		t.Errorf("identity.reclaim entries: %+v", got)
	}
	if _, err := n.VerifyAuditTrail(); err != nil {
		t.Error(err)
	}
	wantNoIdentityInTrail(t, n, "李雷", "王冒名", doc, enr.Code, d.Enrolment.Code)
}

// Two operators deciding one appeal at once: one decision wins, the other
// is 409 appeal_decided, and the trail has one appeal.decide.
func TestAppealIsDecidedOnceUnderConcurrency(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	a := registerTest(t, n, 1, "张三")
	labWithID(t, n, a, "L-1", true)
	ap, err := n.FileAppeal(residentCtx(a), a, AppealRequest{Kind: AppealRecord, Record: &RecordRef{KindLab, "L-1"}, Text: "not mine"})
	if err != nil {
		t.Fatal(err)
	}
	const racers = 8
	errs := make([]error, racers)
	done := make(chan struct{})
	for i := range racers {
		go func() {
			defer func() { done <- struct{}{} }()
			ctx, d := testCtx, "accept"
			if i%2 == 1 {
				ctx, d = op2Ctx, "reject"
			}
			_, errs[i] = n.DecideAppeal(ctx, ap.ID, DecisionRequest{Decision: d, Reason: "race"})
		}()
	}
	for range racers {
		<-done
	}
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantErr(t, "the losing decision", err, hcx.EConflict, "appeal_decided")
		}
	}
	if won != 1 {
		t.Errorf("%d decisions won, want 1", won)
	}
	if got := trailOf(t, n, ActionAppealDecide); len(got) != 1 {
		t.Errorf("%d appeal.decide entries, want 1", len(got))
	}
}
