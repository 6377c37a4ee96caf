package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// fakeClock is a settable clock for a node.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

var shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// TestCheckInsReleaseADeclaredFever follows a Guangdong resident from a
// declared fever with a cough (yellow) through daily check-ins and a
// negative antigen test to green, with the check-in status and the refusals
// on the way.
func TestCheckInsReleaseADeclaredFever(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, shanghai)}
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock.Now)
	defer n.Close()
	sub := registerN(t, n, 1)[0]

	// Green: nothing to check in for, and nothing written.
	v := n.StoreVersion()
	_, err := n.CheckIn(testCtx, sub, CheckInRequest{TempC: 36.6})
	if code(err) != "nothing_to_check_in" || hcx.ClassOf(err) != hcx.EConflict {
		t.Fatalf("check-in while green: %v, want 409 nothing_to_check_in", err)
	}
	if n.StoreVersion() != v {
		t.Error("a refused check-in wrote to the store")
	}

	st, err := n.Declare(testCtx, sub, DeclarationRequest{TempC: 38.4, Symptoms: []string{"cough"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Colour != hcx.Yellow || st.CheckIn == nil || !st.CheckIn.Due {
		t.Fatalf("after a fever with a cough: %s, check-in %+v; want yellow with a check-in due", st.Colour, st.CheckIn)
	}
	if !hasRelease(st, "2 more daily health check-ins") {
		t.Errorf("release = %q, want the check-in condition", st.Release)
	}

	clock.t = clock.t.Add(time.Hour)
	st, err = n.CheckIn(testCtx, sub, CheckInRequest{TempC: 37.9, Symptoms: []string{"cough"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.CheckIn == nil || st.CheckIn.Due || !st.CheckIn.Last.Equal(clock.t) {
		t.Errorf("after checking in: %+v, want done today", st.CheckIn)
	}
	// The same check-in again the same day is a retry: answered, not recorded.
	v = n.StoreVersion()
	clock.t = clock.t.Add(time.Minute)
	if _, err := n.CheckIn(testCtx, sub, CheckInRequest{TempC: 37.9, Symptoms: []string{"cough"}}); err != nil {
		t.Errorf("a retried check-in: %v, want the status", err)
	}
	// Another the same day is refused.
	_, err = n.CheckIn(testCtx, sub, CheckInRequest{TempC: 36.5})
	if code(err) != "checked_in_today" || hcx.ClassOf(err) != hcx.EConflict {
		t.Errorf("a second check-in the same day: %v, want 409 checked_in_today", err)
	}
	if n.StoreVersion() != v {
		t.Error("a retried or refused check-in wrote to the store")
	}

	// The stored condition says "today's is done" until midnight, when
	// the scheduler decides again.
	if !hasRelease(st, "today's is done") {
		t.Errorf("release = %q, want today's check-in done", st.Release)
	}
	var cs colourState
	if err := n.db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, pState+string(sub), &cs); return err }); err != nil {
		t.Fatal(err)
	}
	if midnight := time.Date(2026, 3, 11, 0, 0, 0, 0, shanghai); cs.Due != midnight.Unix() {
		t.Errorf("due at %v, want the next local midnight %v", time.Unix(cs.Due, 0).In(shanghai), midnight)
	}
	// 23:59 local is still the same day; 00:01 is the next, when a new
	// check-in is due.
	clock.t = time.Date(2026, 3, 10, 23, 59, 0, 0, shanghai)
	if r, _ := n.Resident(testCtx, sub); r.Status.CheckIn.Due {
		t.Error("the check-in is due again before local midnight")
	}
	clock.t = time.Date(2026, 3, 11, 0, 1, 0, 0, shanghai)
	if r, _ := n.Resident(testCtx, sub); !r.Status.CheckIn.Due {
		t.Error("the check-in is not due after local midnight")
	}
	if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Kind: "antigen"}}); err != nil {
		t.Fatal(err)
	}
	clock.t = time.Date(2026, 3, 11, 8, 0, 0, 0, shanghai)
	st, err = n.CheckIn(testCtx, sub, CheckInRequest{TempC: 36.7})
	if err != nil {
		t.Fatal(err)
	}
	if st.Colour != hcx.Green || st.CheckIn != nil {
		t.Fatalf("after two days of check-ins and a negative test: %s (release %q, check-in %+v), want green with nothing due", st.Colour, st.Release, st.CheckIn)
	}

	d, err := n.Declarations(testCtx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Health) != 1 || d.Health[0].TempC != 38.4 || len(d.CheckIns) != 2 || d.CheckIns[0].TempC != 36.7 {
		t.Errorf("declarations = %+v, want one declaration and two check-ins, newest first", d)
	}
}

func hasRelease(st *Status, s string) bool {
	for _, r := range st.Release {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

func code(err error) string {
	var e *hcx.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestBadDeclarationsNameTheFieldAndWriteNothing: every bad declaration or
// check-in is a 400 naming the field, and the store is as it was.
func TestBadDeclarationsNameTheFieldAndWriteNothing(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, shanghai)}
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock.Now)
	defer n.Close()
	sub := registerN(t, n, 1)[0]
	many := make([]DeclaredStay, MaxDeclaredStays+1)
	for i := range many {
		many[i] = DeclaredStay{Div: "440106", Date: clock.t.AddDate(0, 0, -i%14).Format("2006-01-02")}
	}
	cases := []struct {
		name  string
		req   DeclarationRequest
		field string
	}{
		{"empty", DeclarationRequest{}, "declaration"},
		{"unknown symptom", DeclarationRequest{Symptoms: []string{"sneezing"}}, "symptoms[0]"},
		{"symptom twice", DeclarationRequest{Symptoms: []string{"cough", "fever", "cough"}}, "symptoms[2]"},
		{"too many symptoms", DeclarationRequest{Symptoms: strings.Split(strings.Repeat("cough,", MaxSymptoms+1), ",")[:MaxSymptoms+1]}, "symptoms"},
		{"50 °C", DeclarationRequest{TempC: 50}, "temp_c"},
		{"30 °C", DeclarationRequest{TempC: 30}, "temp_c"},
		{"unknown division", DeclarationRequest{Travel: []DeclaredStay{{Div: "449999", Date: "2026-03-09"}}}, "travel[0].div"},
		{"not a division code", DeclarationRequest{Travel: []DeclaredStay{{Div: "gz", Date: "2026-03-09"}}}, "travel[0].div"},
		{"future date", DeclarationRequest{Travel: []DeclaredStay{{Div: "440106", Date: "2026-03-09"}, {Div: "440106", Date: "2026-03-11"}}}, "travel[1].date"},
		{"ancient date", DeclarationRequest{Travel: []DeclaredStay{{Div: "440106", Date: "2026-02-20"}}}, "travel[0].date"},
		{"not a date", DeclarationRequest{Travel: []DeclaredStay{{Div: "440106", Date: "09/03/2026"}}}, "travel[0].date"},
		{"stay twice", DeclarationRequest{Travel: []DeclaredStay{{Div: "440106", Date: "2026-03-09"}, {Div: "440106", Date: "2026-03-09"}}}, "travel[1]"},
		{"too many stays", DeclarationRequest{Travel: many}, "travel"},
		// A good health part does not carry a bad travel part in.
		{"good health, bad travel", DeclarationRequest{TempC: 38.5, Symptoms: []string{"cough"}, Travel: []DeclaredStay{{Div: "440106", Date: "2027-01-01"}}}, "travel[0].date"},
	}
	v := n.StoreVersion()
	for _, c := range cases {
		_, err := n.Declare(testCtx, sub, c.req)
		var e *hcx.Error
		if !errors.As(err, &e) || e.Class != hcx.EInvalid || e.Field != c.field {
			t.Errorf("%s: %v, want invalid %s", c.name, err, c.field)
		}
	}
	for _, c := range []struct {
		req   CheckInRequest
		field string
	}{
		{CheckInRequest{}, "temp_c"},
		{CheckInRequest{TempC: 50}, "temp_c"},
		{CheckInRequest{TempC: 36.5, Symptoms: []string{"hiccups"}}, "symptoms[0]"},
	} {
		_, err := n.CheckIn(testCtx, sub, c.req)
		var e *hcx.Error
		if !errors.As(err, &e) || e.Class != hcx.EInvalid || e.Field != c.field {
			t.Errorf("check-in %+v: %v, want invalid %s", c.req, err, c.field)
		}
	}
	if _, err := n.Declare(testCtx, "01J0000000000000000000000Z", DeclarationRequest{TempC: 36.5}); hcx.ClassOf(err) != hcx.ENotFound {
		t.Errorf("declaration for an unknown resident: %v, want not found", err)
	}
	if n.StoreVersion() != v {
		t.Error("refused declarations wrote to the store")
	}
}

// TestDeclaredStaysCountOnce: a stay declared again, or already sent by a
// feed for that day, is not recorded twice; a travel declaration is listed.
func TestDeclaredStaysCountOnce(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, shanghai)}
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock.Now)
	defer n.Close()
	sub := registerN(t, n, 1)[0]
	// The telecom feed saw the resident in Chengdu on the 8th.
	if _, err := n.Ingest(testCtx, sub, Event{Travel: &policy.TravelRecord{Div: "510104", At: time.Date(2026, 3, 8, 15, 0, 0, 0, shanghai)}}); err != nil {
		t.Fatal(err)
	}
	req := DeclarationRequest{Travel: []DeclaredStay{{Div: "510104", Date: "2026-03-08"}, {Div: "440106", Date: "2026-03-09"}, {Div: "440106", Date: "2026-03-10"}}}
	if _, err := n.Declare(testCtx, sub, req); err != nil {
		t.Fatal(err)
	}
	v := n.StoreVersion()
	if _, err := n.Declare(testCtx, sub, req); err != nil {
		t.Fatal(err)
	}
	if n.StoreVersion() != v {
		t.Error("declaring the same stays again wrote to the store")
	}
	f := storedFacts(t, n, sub)
	if len(f.Travel) != 3 {
		t.Errorf("stays = %+v, want 3 (the feed's and two declared)", f.Travel)
	}
	for _, s := range f.Travel {
		if s.At.After(clock.t) {
			t.Errorf("stay %+v is after the declaration", s)
		}
	}
	d, err := n.Declarations(testCtx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Travel) != 2 || d.Travel[0] != (DeclaredStay{Div: "440106", Date: "2026-03-10"}) || d.Travel[1].Date != "2026-03-09" {
		t.Errorf("declared stays = %+v, want the two declared, newest first", d.Travel)
	}
}
