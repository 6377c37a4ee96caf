package node

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// An OIDC login with the dependant's own document is self-registration
// too: every delegation ends (one guardian.remove each, the provider's
// account as actor), and no guardian holds them again.
func TestOIDCLoginEndsProxyHolding(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(t, n, 3)
	doc := testIDNumber(500)
	req := DependantRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: "刘  奶奶", Relation: "grandparent"}
	var dep hcx.Subject
	for i, g := range subs {
		a, err := n.RegisterDependant(residentCtx(g), g, req)
		if err != nil {
			t.Fatalf("guardian %d: %v", i, err)
		}
		if a.Registered != (i == 0) {
			t.Errorf("guardian %d: registered = %v", i, a.Registered)
		}
		dep = a.Dependant
	}
	if got := guardiansOf(t, n, dep); got != 3 {
		t.Fatalf("%d guardians, want 3", got)
	}
	sub, err := n.BindVerifiedIdentity(context.Background(), auth.VerifiedIdentity{DocType: hcx.DocCNID, DocNumber: doc, Name: "刘 奶奶", Issuer: "https://idp.test", Subject: "grandma"})
	if err != nil || sub != dep {
		t.Fatalf("bind = %s, %v; want %s", sub, err, dep)
	}
	if got := guardiansOf(t, n, dep); got != 0 {
		t.Errorf("%d guardians after the OIDC login, want 0", got)
	}
	if c := countKeys(t, n, pDeleg); c != 0 {
		t.Errorf("%d forward delegation keys left", c)
	}
	ended := trailOf(t, n, ActionGuardianRemove)
	if len(ended) != 3 {
		t.Fatalf("guardian.remove entries = %+v, want 3", ended)
	}
	for _, e := range ended {
		if e.Actor != "oidc:https://idp.test#grandma" || e.Subject != dep {
			t.Errorf("entry %+v", e)
		}
	}
	for _, g := range subs {
		if ok, _ := n.Delegated(testCtx, g, dep); ok {
			t.Errorf("%s still holds the dependant", g)
		}
	}
	before := n.StoreVersion()
	_, err = n.RegisterDependant(residentCtx(subs[0]), subs[0], req)
	wantErr(t, "proxy after the login", err, hcx.EConflict, "self_registered")
	wantErr(t, "AddGuardian after the login", n.AddGuardian(testCtx, dep, subs[0]), hcx.EConflict, "self_registered")
	if n.StoreVersion() != before {
		t.Error("a refused holding wrote something")
	}
	wantNoIdentityInTrail(t, n, doc, "奶奶")
}

// The guardian limit holds when many guardians register one dependant at
// once: the dependant's and the guardian's locks are taken together.
func TestProxyRegistrationBoundsHoldUnderConcurrency(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(t, n, 8)
	req := DependantRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(600), Name: "王小明", Relation: "child"}
	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, g := range subs {
		wg.Go(func() { _, errs[i] = n.RegisterDependant(residentCtx(g), g, req) })
	}
	wg.Wait()
	if ok := successes(t, errs, "too_many_guardians"); ok != MaxGuardians {
		t.Fatalf("%d registrations succeeded, want %d", ok, MaxGuardians)
	}
	dep := n.cfg.SubjectKey.Subject(hcx.DocCNID, testIDNumber(600))
	if g := guardiansOf(t, n, dep); g != MaxGuardians {
		t.Errorf("%d guardians stored, want %d", g, MaxGuardians)
	}
	if got := len(trailOf(t, n, ActionDependantRegister)); got != MaxGuardians {
		t.Errorf("%d dependant.register entries, want %d", got, MaxGuardians)
	}
	if c := countKeys(t, n, pResident+string(dep)); c != 1 {
		t.Errorf("%d resident records for the dependant", c)
	}
}

// A colour state written before the four languages has only "zh / en"
// release strings: the status splits them, so the texts read as English in
// Japanese and Korean rather than not at all.
func TestStatusOfAStateBeforeFourLanguages(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	st := colourState{Colour: hcx.Red, Since: time.Now(), Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Release: []string{"隔离至 2026-03-01 09:30 / stay isolated until 2026-03-01 09:30 CST"}}
	s := n.status(&st, time.Now())
	if len(s.ReleaseTexts) != 1 || s.ReleaseTexts[0].In(hcx.LangZH) != "隔离至 2026-03-01 09:30" || s.ReleaseTexts[0].In(hcx.LangKO) != "stay isolated until 2026-03-01 09:30 CST" {
		t.Errorf("release texts %q", s.ReleaseTexts)
	}
	if r := s.Reasons[0]; r.JA != "PCR検査または抗原検査で陽性" || r.KO != "PCR 또는 항원 검사 양성" {
		t.Errorf("reason %+v", r)
	}
}

// Residents who logged in before the self-registration mark existed (a used
// enrolment code, a passkey) count as self-registered: nobody holds them.
func TestLoginsBeforeTheMarkCountAsSelfRegistration(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(t, n, 3)
	guardian := subs[0]
	unmark := func(sub hcx.Subject) {
		t.Helper()
		if err := n.db.Update(func(txn *badger.Txn) error {
			var rec residentRecord
			if _, err := getJSON(txn, pResident+string(sub), &rec); err != nil {
				return err
			}
			rec.SelfRegistered = nil
			b, _ := json.Marshal(&rec)
			return txn.Set([]byte(pResident+string(sub)), b)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// One used an enrolment code before issue 10.
	req := RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(1), Name: "张三"}
	e, err := n.IssueEnrolment(testCtx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.UseEnrolment(context.Background(), e.Code); err != nil {
		t.Fatal(err)
	}
	unmark(subs[1])
	// One registered a passkey.
	if err := n.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(pPasskeyUser+string(subs[2])), make([]byte, 32))
	}); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs[1:] {
		before := n.StoreVersion()
		_, err := n.RegisterDependant(residentCtx(guardian), guardian, DependantRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(i + 1), Name: "张三", Relation: "parent"})
		wantErr(t, "proxy registration", err, hcx.EConflict, "self_registered")
		wantErr(t, "AddGuardian", n.AddGuardian(testCtx, sub, guardian), hcx.EConflict, "self_registered")
		if n.StoreVersion() != before {
			t.Errorf("resident %d: a refusal wrote something", i+1)
		}
	}
	// An operator-registered resident who never logged in is held.
	third := testIDNumber(700)
	if _, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: third, Name: "赵六"}); err != nil {
		t.Fatal(err)
	}
	if a, err := n.RegisterDependant(residentCtx(guardian), guardian, DependantRequest{DocType: hcx.DocCNID, DocNumber: third, Name: "赵六", Relation: "grandparent"}); err != nil || a.Registered {
		t.Errorf("hold a resident registered by an operator: %+v, %v", a, err)
	}
}

// The record of a dependant is marked as held by proxy, whether the
// guardian registered it or claimed one an operator registered.
func TestDependantRecordIsMarkedHeldByProxy(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(t, n, 2) // subs[1] registered by an operator, never logged in
	proxyOf := func(sub hcx.Subject) bool {
		t.Helper()
		var rec residentRecord
		if err := n.db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, pResident+string(sub), &rec); return err }); err != nil {
			t.Fatal(err)
		}
		return rec.Proxy
	}
	if proxyOf(subs[1]) {
		t.Fatal("an operator's registration is marked as held by proxy")
	}
	if _, err := n.RegisterDependant(residentCtx(subs[0]), subs[0], DependantRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(1), Name: "张三", Relation: "parent"}); err != nil {
		t.Fatal(err)
	}
	a, err := n.RegisterDependant(residentCtx(subs[0]), subs[0], DependantRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(800), Name: "张小三", Relation: "child"})
	if err != nil || !a.Registered {
		t.Fatalf("register a child: %+v, %v", a, err)
	}
	if !proxyOf(subs[1]) || !proxyOf(a.Dependant) {
		t.Errorf("proxy marks: claimed %v, registered %v", proxyOf(subs[1]), proxyOf(a.Dependant))
	}
}
