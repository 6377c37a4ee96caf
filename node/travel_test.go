package node

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// movableClock is a node clock that a test moves.
type movableClock struct{ t atomic.Int64 }

func newClock(t time.Time) *movableClock {
	c := &movableClock{}
	c.t.Store(t.UnixNano())
	return c
}
func (c *movableClock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *movableClock) add(d time.Duration) { c.t.Add(int64(d)) }
func localDate(t time.Time, daysAgo int) string {
	return t.In(shanghai).AddDate(0, 0, -daysAgo).Format(time.DateOnly)
}

// newTravelNode is a 440000 node on a movable clock, closed at the end.
func newTravelNode(t *testing.T) (*Node, *movableClock) {
	t.Helper()
	clock := newClock(time.Now())
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock.now)
	t.Cleanup(func() { n.Close() })
	return n, clock
}

func itin(days ...ItineraryDay) *Itinerary { return &Itinerary{Days: days} }

func stayDay(date string, divs ...hcx.DivisionCode) ItineraryDay {
	return ItineraryDay{Date: date, Divs: divs}
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var he *hcx.Error
	if !errors.As(err, &he) || he.Class != hcx.EInvalid || he.Field != field {
		t.Fatalf("error %v, want invalid naming %q", err, field)
	}
}

func TestItineraryCountsEachStayOnceAndRefusesBadInputWritingNothing(t *testing.T) {
	n, clock := newTravelNode(t)
	sub := registerN(t, n, 1)[0]
	now := clock.now()
	res, err := n.IngestItinerary(testCtx, sub, itin(stayDay(localDate(now, 2), "440106", "110105"), stayDay(localDate(now, 1), "440106", "440106")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Stays != 3 || res.New != 3 || res.Status == nil || res.Status.Colour != hcx.Green {
		t.Fatalf("first itinerary: %+v", res)
	}
	v := n.StoreVersion()
	res, err = n.IngestItinerary(testCtx, sub, itin(stayDay(localDate(now, 1), "440106"), stayDay(localDate(now, 2), "110105", "440106")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Stays != 3 || res.New != 0 {
		t.Fatalf("re-sent itinerary: %+v, want 3 stays none new", res)
	}
	if got := n.StoreVersion(); got != v {
		t.Fatalf("a re-sent itinerary wrote: store version %d -> %d", v, got)
	}
	if f := storedFacts(t, n, sub); len(f.Travel) != 3 {
		t.Fatalf("history holds %d stays, want 3", len(f.Travel))
	}

	for _, c := range []struct {
		name  string
		it    *Itinerary
		field string
	}{
		{"no-days", itin(), "days"},
		{"unknown-division", itin(stayDay(localDate(now, 1), "440106", "449999")), "days[0].divs[1]"},
		{"future-date", itin(stayDay(localDate(now, -1), "440106")), "days[0].date"},
		{"ancient-date", itin(stayDay(localDate(now, 1), "440106"), stayDay(localDate(now, 60), "440106")), "days[1].date"},
		{"not-a-date", itin(stayDay("2026-13-01", "440106")), "days[0].date"},
		{"no-divisions", itin(stayDay(localDate(now, 1))), "days[0].divs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.IngestItinerary(testCtx, sub, c.it)
			wantField(t, err, c.field)
			if got := n.StoreVersion(); got != v {
				t.Fatalf("a refused itinerary wrote: store version %d -> %d", v, got)
			}
		})
	}
	many := make([]hcx.DivisionCode, MaxDivsPerDay+1)
	for i := range many {
		many[i] = "440106"
	}
	_, err = n.IngestItinerary(testCtx, sub, itin(stayDay(localDate(now, 1), many...)))
	wantField(t, err, "days[0].divs")
}

// designate is an operator's designation at n.
func designate(t *testing.T, n *Node, div hcx.DivisionCode, level string, from time.Time, to *time.Time) {
	t.Helper()
	if _, err := n.DesignateRiskAreas(testCtx, []RiskAreaInput{{Div: div, Level: level, From: from, To: to}}); err != nil {
		t.Fatal(err)
	}
}

func colourOf(t *testing.T, n *Node, sub hcx.Subject) hcx.Colour {
	t.Helper()
	r, err := n.Resident(testCtx, sub)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Colour
}

func TestDesignationRedecidesWhoStayedInTheAreaDuringItsWindow(t *testing.T) {
	n, clock := newTravelNode(t)
	subs := registerN(t, n, 4)
	now := clock.now()
	inside, before, elsewhere, province := subs[0], subs[1], subs[2], subs[3]
	for sub, d := range map[hcx.Subject]ItineraryDay{
		inside:    stayDay(localDate(now, 3), "440106"), // Tianhe, inside Guangzhou, after from
		before:    stayDay(localDate(now, 8), "440106"), // before from
		elsewhere: stayDay(localDate(now, 3), "440303"), // Shenzhen
		province:  stayDay(localDate(now, 2), "441302"),
	} {
		if _, err := n.IngestItinerary(testCtx, sub, itin(d)); err != nil {
			t.Fatal(err)
		}
	}
	from := now.Add(-5 * 24 * time.Hour)
	designate(t, n, "440100", exchange.RiskHigh, from, nil) // Guangzhou, the prefecture
	decided, err := n.RunRiskJobs(testCtx)
	if err != nil {
		t.Fatal(err)
	}
	if decided != 1 {
		t.Fatalf("decided %d residents again, want the one who stayed in Guangzhou after from", decided)
	}
	if c := colourOf(t, n, inside); c != hcx.Yellow {
		t.Fatalf("resident who stayed in 440106 3 days ago, inside 440100 high from 5 days ago: %s, want yellow", c)
	}
	for _, sub := range []hcx.Subject{before, elsewhere, province} {
		if c := colourOf(t, n, sub); c != hcx.Green {
			t.Fatalf("resident %s: %s, want green", sub, c)
		}
	}
	if _, atts := outboxOf(t, n); len(atts) != 1 || atts[0].Subject != inside || atts[0].Colour != hcx.Yellow {
		t.Fatalf("outbox %+v, want one yellow attestation of the resident inside", atts)
	}
	if n.PendingRiskAreas() != 1 {
		t.Fatalf("pending risk-area envelopes: %d, want 1", n.PendingRiskAreas())
	}
	// A province-wide designation covers Shantou (441302) too.
	designate(t, n, "440000", exchange.RiskMedium, from, nil)
	if _, err := n.RunRiskJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	if c := colourOf(t, n, province); c != hcx.Yellow {
		t.Fatalf("a stay in 441302 under a province-wide designation: %s, want yellow", c)
	}
	// Ending Guangzhou's designation before the stay: the stay no longer counts
	// (the province-wide one still does: end it too).
	end := now.Add(-4 * 24 * time.Hour)
	if _, err := n.EndRiskArea(testCtx, "440100", from, end); err != nil {
		t.Fatal(err)
	}
	if _, err := n.EndRiskArea(testCtx, "440000", from, end); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RunRiskJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	if c := colourOf(t, n, inside); c != hcx.Green {
		t.Fatalf("a stay after the designation's to: %s, want green", c)
	}
	_, err = n.EndRiskArea(testCtx, "440105", from, end)
	var he *hcx.Error
	if !errors.As(err, &he) || he.Code != "unknown_risk_area" {
		t.Fatalf("ending an area never designated: %v", err)
	}
}

func TestDesignationRefusesBadAreasWritingNothing(t *testing.T) {
	n, clock := newTravelNode(t)
	now := clock.now()
	before := now.Add(-time.Hour)
	v := n.StoreVersion()
	for _, c := range []struct {
		name  string
		in    []RiskAreaInput
		field string
	}{
		{"none", nil, "areas"},
		{"other-province", []RiskAreaInput{{Div: "510104", Level: "high", From: now}}, "areas[0].div"},
		{"unknown-division", []RiskAreaInput{{Div: "440199", Level: "high", From: now}}, "areas[0].div"},
		{"bad-level", []RiskAreaInput{{Div: "440106", Level: "low", From: now}}, "areas[0].level"},
		{"no-from", []RiskAreaInput{{Div: "440106", Level: "high"}}, "areas[0].from"},
		{"to-before-from", []RiskAreaInput{{Div: "440106", Level: "high", From: now, To: &before}}, "areas[0].to"},
		{"far-future", []RiskAreaInput{{Div: "440106", Level: "high", From: now.AddDate(0, 2, 0)}}, "areas[0].from"},
		{"twice", []RiskAreaInput{{Div: "440106", Level: "high", From: now}, {Div: "440106", Level: "medium", From: now}}, "areas[1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.DesignateRiskAreas(testCtx, c.in)
			wantField(t, err, c.field)
			if got := n.StoreVersion(); got != v {
				t.Fatalf("a refused designation wrote: %d -> %d", v, got)
			}
		})
	}
}

// riskEnvelope is a risk-area envelope of prov at at.
func (p *testPKI) riskEnvelope(t *testing.T, prov hcx.ProvinceCode, at time.Time, areas ...exchange.RiskArea) string {
	t.Helper()
	jws, err := exchange.SealRiskAreas(p.provs[prov], &exchange.RiskAreas{Iss: prov, At: at.Unix(), Areas: areas})
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

func TestRiskAreasFromTheLogLaterEnvelopeWinsAndSurviveRestart(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	clock := newClock(time.Now())
	dir := t.TempDir()
	n := openTestNode(t, pki, "440000", dir, clock.now)
	sub := registerN(t, n, 1)[0]
	now := clock.now()
	if _, err := n.IngestItinerary(testCtx, sub, itin(stayDay(localDate(now, 2), "510104"))); err != nil {
		t.Fatal(err)
	}
	from := now.Add(-3 * 24 * time.Hour).Unix()
	high := exchange.RiskArea{Div: "510104", Level: exchange.RiskHigh, From: from}
	ended := from + 3600
	stale := exchange.RiskArea{Div: "510104", Level: exchange.RiskMedium, From: from, To: &ended}
	entries := []string{pki.trustList(t, 1),
		pki.riskEnvelope(t, "510000", now.Add(-time.Minute), high),
		// An older envelope logged later (a retry) changes nothing.
		pki.riskEnvelope(t, "510000", now.Add(-2*time.Minute), stale)}
	if err := n.apply(0, exchange.Entries{Entries: entries}); err != nil {
		t.Fatal(err)
	}
	areas := n.RiskAreas("510000", true)
	if len(areas) != 1 || areas[0].Level != exchange.RiskHigh || areas[0].To != nil || areas[0].Name != "锦江区" {
		t.Fatalf("510000's areas: %+v, want 510104 high until further notice", areas)
	}
	if _, err := n.RunRiskJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	if c := colourOf(t, n, sub); c != hcx.Yellow {
		t.Fatalf("a 440000 resident who stayed in 510104 two days ago, 510000 designating it high: %s, want yellow", c)
	}
	n.Close()

	n = openTestNode(t, pki, "440000", dir, clock.now)
	defer n.Close()
	if got := n.RiskAreas("", false); len(got) != 1 || got[0].Iss != "510000" {
		t.Fatalf("after restart: %+v", got)
	}
	// A later envelope with the same key ends it.
	to := now.Add(-24 * time.Hour).Unix()
	high.To = &to
	if err := n.apply(3, exchange.Entries{Entries: []string{pki.riskEnvelope(t, "510000", now, high)}}); err != nil {
		t.Fatal(err)
	}
	if got := n.RiskAreas("510000", true); len(got) != 0 {
		t.Fatalf("an ended area is listed in force: %+v", got)
	}
	if got := n.RiskAreas("510000", false); len(got) != 1 || got[0].To == nil || got[0].To.Unix() != to {
		t.Fatalf("the later envelope did not set to: %+v", got)
	}
	if _, err := n.RunRiskJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	// The stay two days ago is before to (a day ago): still yellow.
	if c := colourOf(t, n, sub); c != hcx.Yellow {
		t.Fatalf("a stay inside the window of an ended area: %s, want yellow", c)
	}
}

func TestStaysAndTheStayIndexExpireAfter60Days(t *testing.T) {
	n, clock := newTravelNode(t)
	sub := registerN(t, n, 1)[0]
	now := clock.now()
	date := localDate(now, 1)
	if _, err := n.IngestItinerary(testCtx, sub, itin(stayDay(date, "510104"))); err != nil {
		t.Fatal(err)
	}
	stay := storedFacts(t, n, sub).Travel[0]
	// The index entry expires, in badger, 60 days after the stay.
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(stayKey("510104", sub, stay.At)))
		if err != nil {
			return err
		}
		if want := uint64(stay.At.Add(TrajectoryRetention).Unix()); item.ExpiresAt() != want {
			t.Errorf("stay index entry expires at %d, want %d", item.ExpiresAt(), want)
		}
		return item.Value(func(v []byte) error {
			if int64(binary.BigEndian.Uint64(v)) != stay.At.Unix() {
				t.Errorf("stay index value %x", v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := n.staysIn("510100", time.Time{}, clock.now(), nil, 10); len(got) != 1 {
		t.Fatalf("stays in 510100: %v", got)
	}
	if c, _ := n.citiesVisited(sub); len(c) != 1 || c[0].Div != "510100" || c[0].Name != "成都市" {
		t.Fatalf("cities: %+v", c)
	}
	designate(t, n, "440106", exchange.RiskMedium, now.Add(-10*24*time.Hour), nil)
	if _, err := n.IngestItinerary(testCtx, sub, itin(stayDay(date, "440106", "440303"), stayDay(localDate(now, 3), "510105"))); err != nil {
		t.Fatal(err)
	}
	c, _ := n.citiesVisited(sub)
	// Most recent first; stays of one day, the last recorded first.
	want := []City{{"440300", "深圳市", ""}, {"440100", "广州市", "medium"}, {"510100", "成都市", ""}}
	if !slices.Equal(c, want) {
		t.Fatalf("cities %+v, want %+v (Guangzhou starred medium)", c, want)
	}
	clock.add(15 * 24 * time.Hour)
	if c, _ := n.citiesVisited(sub); len(c) != 0 {
		t.Fatalf("cities after 15 days: %+v, want none (the last 14 days)", c)
	}
	clock.add(46 * 24 * time.Hour) // 61 days after
	if got, _, _ := n.staysIn("510100", time.Time{}, clock.now(), nil, 10); len(got) != 0 {
		t.Fatalf("stays in 510100 after 61 days: %v", got)
	}
	// The next event about the resident drops the stay from the history.
	if _, err := n.Ingest(testCtx, sub, Event{Lab: &policy.LabResult{Kind: "pcr"}}); err != nil {
		t.Fatal(err)
	}
	if f := storedFacts(t, n, sub); len(f.Travel) != 0 {
		t.Fatalf("stays after 61 days: %+v", f.Travel)
	}
}

func TestRiskAreasForIsAllocationFreeWhenNoAreaCoversAStay(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	designate(t, n, "440100", exchange.RiskHigh, time.Now().Add(-time.Hour), nil)
	f := &policy.Facts{Travel: []policy.TravelRecord{{Div: "440303", At: time.Now()}, {Div: "110105", At: time.Now()}, {Div: "440303", At: time.Now()}}}
	if a := testing.AllocsPerRun(100, func() { _ = n.riskAreasFor(f) }); a != 0 {
		t.Fatalf("riskAreasFor allocates %.0f times for stays no area covers", a)
	}
	f.Travel = append(f.Travel, policy.TravelRecord{Div: "440106", At: time.Now()}, policy.TravelRecord{Div: "440106", At: time.Now()})
	if got := n.riskAreasFor(f); len(got) != 1 || got[0].Div != "440100" || got[0].Issuer != "440000" {
		t.Fatalf("areas for a stay in 440106 twice: %+v, want 440100 once", got)
	}
}

func BenchmarkRiskAreasFor(b *testing.B) {
	pki := newTestPKI(b, "440000")
	n := openTestNode(b, pki, "440000", b.TempDir(), time.Now)
	defer n.Close()
	var areas []RiskArea
	for i := range 1000 {
		areas = append(areas, RiskArea{Iss: "440000", Div: "440106", Level: "high", From: time.Unix(int64(i), 0)})
	}
	areas = append(areas, RiskArea{Iss: "440000", Div: "440303", Level: "high", From: time.Unix(1, 0)})
	n.risk.set.Store(n.riskSet().with(areas[1000:]))
	f := &policy.Facts{}
	for i := range 32 {
		f.Travel = append(f.Travel, policy.TravelRecord{Div: hcx.DivisionCode([]string{"440303", "110105", "510104", "441302"}[i%4]), At: time.Now()})
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = n.riskAreasFor(f)
	}
}

// TestTwoResidentsInOneDivisionOnOneDayBothCount: a stay's record id is
// the same for everyone there that day; its record key is per resident (the
// first version refused the second resident with record_conflict).
func TestTwoResidentsInOneDivisionOnOneDayBothCount(t *testing.T) {
	n, clock := newTravelNode(t)
	subs := registerN(t, n, 2)
	it := itin(stayDay(localDate(clock.now(), 1), "440106"))
	for _, sub := range subs {
		res, err := n.IngestItinerary(testCtx, sub, it)
		if err != nil || res.New != 1 {
			t.Fatalf("resident %s: %+v, %v", sub, res, err)
		}
		if f := storedFacts(t, n, sub); len(f.Travel) != 1 || f.Travel[0].ID != "day:"+localDate(clock.now(), 1)+":440106" {
			t.Fatalf("stays of %s: %+v", sub, f.Travel)
		}
	}
}

func TestStayIndexIsReadInChunks(t *testing.T) {
	n, clock := newTravelNode(t)
	subs := registerN(t, n, 5)
	now := clock.now()
	for _, sub := range subs {
		// Two days in one division: listed once; another division: once more.
		if _, err := n.IngestItinerary(testCtx, sub, itin(stayDay(localDate(now, 1), "440106"), stayDay(localDate(now, 2), "440106", "440104"))); err != nil {
			t.Fatal(err)
		}
	}
	var got []hcx.Subject
	var start []byte
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the scan does not end")
		}
		page, next, err := n.staysIn("440100", time.Time{}, clock.now(), start, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 3 {
			t.Fatalf("page of %d, limit 3", len(page))
		}
		got = append(got, page...)
		if next == nil {
			break
		}
		start = next
	}
	if len(got) != 10 {
		t.Fatalf("listed %d residents over two divisions, want 5 × 2: %v", len(got), got)
	}
	for _, sub := range subs {
		c := 0
		for _, g := range got {
			if g == sub {
				c++
			}
		}
		if c != 2 {
			t.Fatalf("%s listed %d times, want once per division", sub, c)
		}
	}
}

func TestPendingRiskAreaEnvelopeSurvivesRestart(t *testing.T) {
	pki := newTestPKI(t, "440000")
	clock := newClock(time.Now())
	dir := t.TempDir()
	n := openTestNode(t, pki, "440000", dir, clock.now)
	designate(t, n, "440106", exchange.RiskMedium, clock.now().Add(-time.Hour), nil)
	// The test node's hub is unreachable: the envelope stays pending.
	if err := n.publishPendingRiskAreas(testCtx); err == nil {
		t.Fatal("publishing to an unreachable hub succeeded")
	}
	n.Close()
	n = openTestNode(t, pki, "440000", dir, clock.now)
	defer n.Close()
	if got := n.PendingRiskAreas(); got != 1 {
		t.Fatalf("pending envelopes after restart: %d, want 1", got)
	}
	var m strings.Builder
	n.WriteMetrics(&m)
	for _, want := range []string{`hcx_node_risk_envelopes_pending{province="440000"} 1`, `hcx_node_risk_areas{province="440000"} 1`} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if got := n.RiskAreas("440000", true); len(got) != 1 || got[0].Div != "440106" {
		t.Fatalf("areas after restart: %+v", got)
	}
	var p pendingRiskPub
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pRiskPub)})
		defer it.Close()
		it.Rewind()
		return it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &p) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1)}}); err != nil {
		t.Fatal(err)
	}
	env, err := exchange.Open(n.trust, p.JWS)
	if err != nil {
		t.Fatalf("the pending envelope does not verify: %v", err)
	}
	r, err := exchange.DecodeRiskAreas(env)
	if err != nil || r.Iss != "440000" || len(r.Areas) != 1 || r.Areas[0].Div != "440106" {
		t.Fatalf("pending envelope %+v, %v", r, err)
	}
}

// BenchmarkIngestItinerary posts 14-day itineraries of two divisions a day
// (28 stays) for different residents from 32 goroutines, as a telecom feed
// would, and reports stays recorded per second, durable and decided, with
// 100 risk areas designated.
func BenchmarkIngestItinerary(b *testing.B) {
	pki := newTestPKI(b, "440000")
	now := time.Now()
	n := openTestNode(b, pki, "440000", b.TempDir(), func() time.Time { return now })
	defer n.Close()
	var areas []RiskAreaInput
	for i := range 100 {
		areas = append(areas, RiskAreaInput{Div: "440106", Level: exchange.RiskMedium, From: now.Add(-time.Duration(i+1) * time.Hour)})
	}
	if _, err := n.DesignateRiskAreas(testCtx, areas); err != nil {
		b.Fatal(err)
	}
	subs := registerN(b, n, 2000)
	var days []ItineraryDay
	for d := range 14 {
		days = append(days, stayDay(localDate(now, d), "440303", "110105"))
	}
	it := &Itinerary{Days: days}
	var next atomic.Int64
	start := time.Now()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Each iteration a resident not posted before in this run
			// (wrapping after 2,000: then the stays are duplicates).
			sub := subs[int(next.Add(1)-1)%len(subs)]
			if _, err := n.IngestItinerary(testCtx, sub, it); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(min(b.N, len(subs))*28)/time.Since(start).Seconds(), "stays/s")
}

func TestRiskAreasEndedMoreThan60DaysAgoAreDropped(t *testing.T) {
	n, clock := newTravelNode(t)
	now := clock.now()
	end := now.Add(-24 * time.Hour)
	designate(t, n, "440106", exchange.RiskHigh, now.Add(-48*time.Hour), &end)
	designate(t, n, "440303", exchange.RiskHigh, now.Add(-48*time.Hour), nil)
	if got, err := n.PruneRiskAreas(testCtx); err != nil || got != 0 {
		t.Fatalf("pruned %d (%v) of areas ended a day ago", got, err)
	}
	clock.add(60 * 24 * time.Hour)
	if got, err := n.PruneRiskAreas(testCtx); err != nil || got != 1 {
		t.Fatalf("pruned %d (%v), want the area that ended 61 days ago", got, err)
	}
	if got := n.RiskAreas("", false); len(got) != 1 || got[0].Div != "440303" {
		t.Fatalf("areas left: %+v, want 440303, still in force", got)
	}
	n.Close()
	n = openTestNode(t, newTestPKI(t, "440000"), "440000", n.cfg.Dir, clock.now)
	defer n.Close()
	if got := n.RiskAreas("", false); len(got) != 1 || got[0].Div != "440303" {
		t.Fatalf("areas after restart: %+v", got)
	}
}
