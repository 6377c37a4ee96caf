package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// vaxStatus is what the tests read of a resident.
type vaxStatus struct {
	Status struct {
		Colour     hcx.Colour `json:"colour"`
		Vaccinated bool       `json:"vaccinated"`
	} `json:"status"`
}

// vaxEnvelopes are the hcx.vax.v1 payloads in the hub's log, raw.
func vaxEnvelopes(t *testing.T, f *federation) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := exchange.NewHubClient(f.HubURLs, f.client()).SignWith(f.PKI.Provinces[attackGD], f.Now).Entries(ctx, 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, leaf := range page.Entries {
		h, err := certs.ParseHeader(leaf)
		if err != nil || h.Typ != exchange.HdrVax {
			continue
		}
		p, err := base64.RawURLEncoding.DecodeString(strings.Split(leaf, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(p))
	}
	return out
}

// TestVaccinationAcrossProvinces: a 440000 resident's doses posted by
// 510000's vaccination registry travel through the hub, with no identity,
// and give them the vaccination mark in their 440000 code and status,
// with nothing posted at 440000; a guardian sees the mark, not the doses.
func TestVaccinationAcrossProvinces(t *testing.T) {
	w := newAttackWorld(t)
	hc := w.f.client()
	now := w.f.Now().UTC()
	day := 24 * time.Hour
	dose := func(n int, ago time.Duration, id string) string {
		b, _ := json.Marshal(map[string]any{"dose": n, "product": "BBIBP-CorV", "at": now.Add(-ago), "id": id})
		return string(b)
	}
	res := func(node string, sub hcx.Subject, rest string) string {
		return node + "/v1/residents/" + string(sub) + rest
	}

	// Before: A is not vaccinated.
	var before vaxStatus
	if st := callAs(t, hc, w.opGD, "GET", res(w.gd, w.a, ""), nil, &before); st != http.StatusOK || before.Status.Vaccinated {
		t.Fatalf("A before: %d vaccinated=%v", st, before.Status.Vaccinated)
	}
	// Both doses given in Sichuan, posted by Sichuan's registry feed; the
	// first is posted twice (a feed's retry) and counts once.
	for _, d := range []string{dose(1, 40*day, "sc-dose-1"), dose(1, 40*day, "sc-dose-1"), dose(2, 10*day, "sc-dose-2")} {
		a := send(t, hc, w.feed, "POST", res(w.sc, w.a, "/vaccinations"), d, nil)
		if a.status != http.StatusAccepted || !strings.Contains(string(a.body), `"forwarded":true`) {
			t.Fatalf("dose at 510000 for a 440000 resident: %d %s, want 202 forwarded", a.status, a.body)
		}
	}
	// The mark appears at 440000 without anything posted there.
	posted := time.Now()
	deadline := posted.Add(15 * time.Second)
	for {
		var s vaxStatus
		if st := callAs(t, hc, w.asA, "GET", res(w.gd, w.a, ""), nil, &s); st != http.StatusOK {
			t.Fatalf("A reads their status: %d", st)
		}
		if s.Status.Vaccinated {
			t.Logf("the mark appeared at 440000 %v after 510000 acknowledged the second dose", time.Since(posted).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A is still not vaccinated at 440000 15 s after Sichuan posted their second dose")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// In their code, as a checkpoint of either province verifies it.
	var code struct {
		Code string `json:"code"`
	}
	if st := callAs(t, hc, w.asA, "GET", res(w.gd, w.a, "/code"), nil, &code); st != http.StatusOK {
		t.Fatalf("A's code: %d", st)
	}
	for _, p := range []hcx.ProvinceCode{attackSC, attackGD} {
		var v struct {
			Valid      bool       `json:"valid"`
			Colour     hcx.Colour `json:"colour"`
			Vaccinated bool       `json:"vaccinated"`
		}
		if st := callAs(t, hc, w.f.asCheckpoint(p), "POST", w.f.NodeURLs[p]+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK || !v.Valid || !v.Vaccinated {
			t.Errorf("checkpoint of %s verifies A's code: %d valid=%v vaccinated=%v, want the mark", p, st, v.Valid, v.Vaccinated)
		}
	}
	// The details: A's own, and their province's operator's and the
	// auditor's; doses with where they were given.
	var details struct {
		Vaccinated bool `json:"vaccinated"`
		Doses      []struct {
			Dose     int              `json:"dose"`
			Product  string           `json:"product"`
			Province hcx.ProvinceCode `json:"province"`
			At       time.Time        `json:"at"`
		} `json:"doses"`
	}
	for _, who := range []caller{w.asA, w.opGD, w.auditor} {
		if st := callAs(t, hc, who, "GET", res(w.gd, w.a, "/vaccinations"), nil, &details); st != http.StatusOK {
			t.Fatalf("%s reads A's vaccinations: %d", who.name, st)
		}
		if !details.Vaccinated || len(details.Doses) != 2 || details.Doses[0].Dose != 1 || details.Doses[1].Dose != 2 ||
			details.Doses[1].Province != attackSC || details.Doses[1].Product != "BBIBP-CorV" || !details.Doses[1].At.Equal(now.Add(-10*day).Truncate(time.Second)) {
			t.Errorf("%s reads A's vaccinations: %+v, want doses 1 and 2 given in 510000", who.name, details)
		}
	}
	// The guardian G of the child C: the mark, not the details (Tianjin);
	// another province's operator: neither. C's single-dose course is
	// given in Sichuan too.
	one, _ := json.Marshal(map[string]any{"dose": 1, "product": "Ad5-nCoV", "at": now.Add(-20 * day), "id": "sc-dose-c1"})
	if a := send(t, hc, w.feed, "POST", res(w.sc, w.c, "/vaccinations"), string(one), nil); a.status != http.StatusAccepted {
		t.Fatalf("C's dose at 510000: %d %s", a.status, a.body)
	}
	var g vaxStatus
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st := callAs(t, hc, w.asG, "GET", res(w.gd, w.c, ""), nil, &g); st != http.StatusOK {
			t.Fatalf("guardian reads the dependant's status: %d", st)
		}
		if g.Status.Vaccinated || time.Now().After(deadline) {
			break
		}
	}
	if !g.Status.Vaccinated {
		t.Errorf("guardian reads the dependant's status: vaccinated=false 15 s after the dose, want the mark")
	}
	refused(t, "guardian reads the dependant's doses", send(t, hc, w.asG, "GET", res(w.gd, w.c, "/vaccinations"), "", nil), http.StatusForbidden, "not_yours")
	refused(t, "Sichuan's operator reads A's doses at 440000", send(t, hc, w.opSC, "GET", res(w.gd, w.a, "/vaccinations"), "", nil), http.StatusForbidden, "other_province")
	// The hub's log holds the doses: subjects and dose facts, no identity.
	envs := vaxEnvelopes(t, w.f)
	all := strings.Join(envs, "\n")
	if !strings.Contains(all, string(w.a)) || !strings.Contains(all, `"iss":"510000"`) || !strings.Contains(all, `"id":"sc-dose-2"`) {
		t.Fatalf("the hub's log has no vaccination envelope for A: %q", all)
	}
	if n := strings.Count(all, `"id":"sc-dose-1"`); n != 1 {
		t.Errorf("dose 1, posted twice, is in the log %d times", n)
	}
	for _, secret := range []string{"丁四", "44010619900404404", "name", "doc"} {
		if strings.Contains(all, secret) {
			t.Errorf("the hub's log holds %q: %s", secret, all)
		}
	}
}

// TestVaccinationBeforeRegistration: a dose given in another province to
// someone who registers at their home node later counts from their
// registration on.
func TestVaccinationBeforeRegistration(t *testing.T) {
	w := newAttackWorld(t)
	hc := w.f.client()
	doc := "44010619600808808"
	doc += string(hcx.CNIDCheckDigit(doc))
	sub, err := w.f.Nodes[attackGD].SubjectOf(hcx.DocCNID, doc)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"dose": 1, "product": "Ad5-nCoV", "at": w.f.Now().Add(-72 * time.Hour), "id": "sc-late-1"})
	if a := send(t, hc, w.feed, "POST", w.sc+"/v1/residents/"+string(sub)+"/vaccinations", string(body), nil); a.status != http.StatusAccepted {
		t.Fatalf("dose at 510000: %d %s", a.status, a.body)
	}
	// Wait until 440000's node has read the envelope.
	deadline := time.Now().Add(15 * time.Second)
	for {
		envs := vaxEnvelopes(t, w.f)
		if len(envs) > 0 && w.f.Nodes[attackGD].Applied() >= w.f.Nodes[attackSC].Applied() && strings.Contains(strings.Join(envs, ""), string(sub)) {
			time.Sleep(200 * time.Millisecond)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dose did not reach the hub in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for w.f.Nodes[attackGD].Applied() < uint64(hubSize(t, w.f)) {
		if time.Now().After(deadline) {
			t.Fatal("440000's node did not read the envelope")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, asLate := w.f.asResident(t, attackGD, map[string]string{"doc_type": "CN-ID", "doc_number": doc, "name": "辛八"})
	if got != sub {
		t.Fatalf("registered as %s, want %s", got, sub)
	}
	var s vaxStatus
	if st := callAs(t, hc, asLate, "GET", w.gd+"/v1/residents/"+string(sub), nil, &s); st != http.StatusOK || !s.Status.Vaccinated {
		t.Errorf("the late registrant's status: %d vaccinated=%v, want the single-dose course's mark", st, s.Status.Vaccinated)
	}
}

func hubSize(t *testing.T, f *federation) int {
	t.Helper()
	page, err := exchange.NewHubClient(f.HubURLs, f.client()).SignWith(f.PKI.Provinces[attackGD], f.Now).Entries(context.Background(), 0, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	return int(page.Start) + len(page.Entries)
}

// TestVaccinationBadInput: each bad dose is a 400 naming the field, and
// writes nothing.
func TestVaccinationBadInput(t *testing.T) {
	w := newAttackWorld(t)
	hc := w.f.client()
	now := w.f.Now().UTC()
	day := 24 * time.Hour
	post := func(node string, who caller, sub hcx.Subject, v map[string]any) answer {
		b, _ := json.Marshal(v)
		return send(t, hc, who, "POST", node+"/v1/residents/"+string(sub)+"/vaccinations", string(b), nil)
	}
	// B has dose 2 given 30 days ago.
	if a := post(w.gd, w.feedGD, w.b, map[string]any{"dose": 2, "product": "CoronaVac", "at": now.Add(-30 * day), "id": "gd-b-2"}); a.status != http.StatusOK {
		t.Fatalf("B's dose 2: %d %s", a.status, a.body)
	}
	cases := []struct {
		name  string
		v     map[string]any
		field string
	}{
		{"unknown product", map[string]any{"dose": 1, "product": "Sputnik-Q", "at": now.Add(-60 * day), "id": "x1"}, "product"},
		{"course contradicts the product", map[string]any{"dose": 1, "product": "CoronaVac", "course_doses": 3, "at": now.Add(-60 * day), "id": "x2"}, "course_doses"},
		{"future date", map[string]any{"dose": 3, "product": "CoronaVac", "at": now.Add(2 * day), "id": "x3"}, "at"},
		{"ancient date", map[string]any{"dose": 1, "product": "CoronaVac", "at": now.AddDate(-2, 0, 0), "id": "x4"}, "at"},
		{"dose 1 after dose 2", map[string]any{"dose": 1, "product": "CoronaVac", "at": now.Add(-10 * day), "id": "x5"}, "dose"},
		{"dose 3 before dose 2", map[string]any{"dose": 3, "product": "CoronaVac", "at": now.Add(-40 * day), "id": "x6"}, "dose"},
		{"dose 2 again", map[string]any{"dose": 2, "product": "CoronaVac", "at": now.Add(-30 * day), "id": "x7"}, "dose"},
		{"dose 11", map[string]any{"dose": 11, "product": "CoronaVac", "at": now.Add(-5 * day), "id": "x8"}, "dose"},
		{"no id", map[string]any{"dose": 3, "product": "CoronaVac", "at": now.Add(-5 * day)}, "id"},
		{"no date", map[string]any{"dose": 3, "product": "CoronaVac", "id": "x9"}, "at"},
		{"unknown member", map[string]any{"dose": 3, "product": "CoronaVac", "at": now.Add(-5 * day), "id": "x10", "name": "戊五"}, "name"},
	}
	for _, tc := range cases {
		before := w.state(t, w.gd, w.b, w.opGD)
		a := post(w.gd, w.feedGD, w.b, tc.v)
		if a.status != http.StatusBadRequest || a.field != tc.field {
			t.Errorf("%s: %d field %q (%s), want 400 naming %s", tc.name, a.status, a.field, a.body, tc.field)
		}
		if after := w.state(t, w.gd, w.b, w.opGD); after != before {
			t.Errorf("%s changed the state: %s -> %s", tc.name, before, after)
		}
	}
	// At a node that does not hold the subject the same checks hold, and
	// nothing reaches the hub.
	for _, tc := range cases[:4] {
		if a := post(w.sc, w.feed, w.b, tc.v); a.status != http.StatusBadRequest || a.field != tc.field {
			t.Errorf("%s at 510000: %d field %q (%s), want 400 naming %s", tc.name, a.status, a.field, a.body, tc.field)
		}
	}
	// A record id already used for another dose is a conflict.
	if a := post(w.gd, w.feedGD, w.b, map[string]any{"dose": 3, "product": "CoronaVac", "at": now.Add(-5 * day), "id": "gd-b-2"}); a.status != http.StatusConflict || a.code != "record_conflict" {
		t.Errorf("a used record id: %d %s", a.status, a.body)
	}
	time.Sleep(1500 * time.Millisecond) // a publisher round
	if envs := vaxEnvelopes(t, w.f); len(envs) != 0 {
		t.Errorf("refused doses reached the hub: %v", envs)
	}
}
