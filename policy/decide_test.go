package policy

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

var provinces = []hcx.ProvinceCode{"110000", "310000", "440000", "510000"}

var (
	loadedMu sync.Mutex
	loaded   = map[hcx.ProvinceCode]*RuleSet{}
)

// rules loads a province's sample rules from configs/rules once per run.
func rules(t testing.TB, p hcx.ProvinceCode) *RuleSet {
	t.Helper()
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if rs := loaded[p]; rs != nil {
		return rs
	}
	rs, err := LoadFile("../configs/rules/" + string(p) + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	loaded[p] = rs
	return rs
}

// t0 is 2024-03-20 12:00 in Beijing time.
var t0 = time.Date(2024, 3, 20, 4, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return t0.Add(-d) }

const (
	hour = time.Hour
	day  = 24 * time.Hour
)

func neg(at time.Time) LabResult { return LabResult{At: at, Kind: "pcr"} }
func pos(at time.Time) LabResult { return LabResult{At: at, Kind: "pcr", Positive: true} }

// negs is n negative PCR results, one a day, the first at from.
func negs(from time.Time, n int) []LabResult {
	var out []LabResult
	for i := 0; i < n; i++ {
		out = append(out, neg(from.Add(time.Duration(i)*day)))
	}
	return out
}

func inRisk(div hcx.DivisionCode, level string) []RiskArea {
	return []RiskArea{{Div: div, Level: level, From: ago(60 * day), Issuer: div.Province()}}
}

type decisionCase struct {
	name   string
	facts  Facts
	now    time.Time // t0 when zero
	colour hcx.Colour
	rule   string
	reason hcx.Reason // one reason that must be among the decision's
}

func runCases(t *testing.T, rs *RuleSet, cases []decisionCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			d, err := rs.Decide(&tc.facts, now)
			if err != nil {
				t.Fatal(err)
			}
			if d.Colour != tc.colour || d.Rule != tc.rule {
				t.Errorf("got %s by %q, want %s by %q (reasons %v, release %v)", d.Colour, d.Rule, tc.colour, tc.rule, d.Reasons, d.Release)
			}
			if tc.reason != "" && !slices.Contains(d.Reasons, tc.reason) {
				t.Errorf("reasons %v lack %q", d.Reasons, tc.reason)
			}
		})
	}
}

func TestBeijingRules(t *testing.T) {
	rs := rules(t, "110000")
	runCases(t, rs, []decisionCase{
		{name: "green/no-facts", colour: hcx.Green, rule: "default", reason: hcx.ReasonClear},
		{name: "green/only-negative-tests", facts: Facts{Labs: negs(ago(3*day), 3)}, colour: hcx.Green, rule: "default"},
		{name: "red/positive-lab-result", facts: Facts{Labs: []LabResult{pos(ago(2 * day))}}, colour: hcx.Red, rule: "positive-lab-result", reason: hcx.ReasonLabPositive},
		{name: "red/antigen-positive-counts-in-beijing", facts: Facts{Labs: []LabResult{{At: ago(day), Positive: true, Kind: "antigen"}}}, colour: hcx.Red, rule: "positive-lab-result"},
		{name: "red/positive-14-days-but-4-negatives", facts: Facts{Labs: append(negs(ago(14*day), 4), pos(ago(15*day)))}, colour: hcx.Red, rule: "positive-lab-result"},
		{name: "red/positive-5-negatives-but-13-days", facts: Facts{Labs: append(negs(ago(12*day), 5), pos(ago(13*day)))}, colour: hcx.Red, rule: "positive-lab-result"},
		{name: "red/negatives-too-close-together-count-once", facts: Facts{Labs: append([]LabResult{pos(ago(20 * day)), neg(ago(10 * day)), neg(ago(10*day - hour)), neg(ago(10*day - 2*hour)), neg(ago(10*day - 3*hour))}, negs(ago(5*day), 3)...)}, colour: hcx.Red, rule: "positive-lab-result"},
		{name: "red/antigen-negatives-do-not-release", facts: Facts{Labs: append([]LabResult{pos(ago(20 * day))}, antigenNegs(ago(10*day), 5)...)}, colour: hcx.Red, rule: "positive-lab-result"},
		{name: "green/positive-released-after-14-days-and-5-negatives", facts: Facts{Labs: append(negs(ago(14*day), 5), pos(ago(14*day)))}, colour: hcx.Green, rule: "default", reason: hcx.ReasonReleased},
		{name: "red/close-contact", facts: Facts{Contacts: []ContactFlag{{Issuer: "440000", At: ago(3 * day)}}}, colour: hcx.Red, rule: "close-contact", reason: hcx.ReasonContactClose},
		{name: "green/close-contact-released", facts: Facts{Contacts: []ContactFlag{{Issuer: "440000", At: ago(15 * day)}}, Labs: negs(ago(14*day), 5)}, colour: hcx.Green, rule: "default", reason: hcx.ReasonReleased},
		{name: "green/close-contact-older-than-28-days", facts: Facts{Contacts: []ContactFlag{{Issuer: "440000", At: ago(29 * day)}}}, colour: hcx.Green, rule: "default"},
		{name: "red/cdc-order-confirmed-twice", facts: Facts{Orders: []Order{{ID: "o1", Colour: hcx.Red, At: ago(hour), LocalConfirmed: true, NationalConfirmed: true}}}, colour: hcx.Red, rule: "cdc-order-red", reason: hcx.ReasonOrderCDC},
		{name: "green/cdc-order-local-only-is-not-red-in-beijing", facts: Facts{Orders: []Order{{ID: "o1", Colour: hcx.Red, At: ago(hour), LocalConfirmed: true}}}, colour: hcx.Green, rule: "default"},
		{name: "green/cdc-order-lifted", facts: Facts{Orders: []Order{{ID: "o1", Colour: hcx.Red, At: ago(day), LocalConfirmed: true, NationalConfirmed: true, Lifted: true}}}, colour: hcx.Green, rule: "default"},
		{name: "yellow/cdc-order-yellow", facts: Facts{Orders: []Order{{ID: "o2", Colour: hcx.Yellow, At: ago(hour), LocalConfirmed: true}}}, colour: hcx.Yellow, rule: "cdc-order-yellow"},
		{name: "yellow/visited-medium-risk-area", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(5 * day)}}, RiskAreas: inRisk("440106", "medium")}, colour: hcx.Yellow, rule: "risk-area-travel", reason: hcx.ReasonTravelRisk},
		{name: "yellow/visited-division-inside-high-risk-prefecture", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(5 * day)}}, RiskAreas: inRisk("440100", "high")}, colour: hcx.Yellow, rule: "risk-area-travel"},
		{name: "green/visited-before-the-area-became-risky", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(5 * day)}}, RiskAreas: []RiskArea{{Div: "440106", Level: "high", From: ago(4 * day)}}}, colour: hcx.Green, rule: "default"},
		{name: "green/visited-after-the-designation-ended", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(5 * day)}}, RiskAreas: []RiskArea{{Div: "440106", Level: "high", From: ago(30 * day), To: ptr(ago(6 * day))}}}, colour: hcx.Green, rule: "default"},
		{name: "green/low-level-area-is-not-risky", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(5 * day)}}, RiskAreas: inRisk("440106", "low")}, colour: hcx.Green, rule: "default"},
		{name: "green/risk-area-visit-released-by-3-days-and-2-negatives", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(4 * day)}}, RiskAreas: inRisk("440106", "medium"), Labs: negs(ago(3*day), 2)}, colour: hcx.Green, rule: "default", reason: hcx.ReasonReleased},
		{name: "yellow/risk-area-2-negatives-but-2-days", facts: Facts{Travel: []TravelRecord{{Div: "440106", At: ago(2 * day)}}, RiskAreas: inRisk("440106", "medium"), Labs: negs(ago(2*day), 2)}, colour: hcx.Yellow, rule: "risk-area-travel"},
		{name: "yellow/fever-with-symptoms", facts: Facts{Declarations: []Declaration{{At: ago(day), Symptoms: []string{"cough"}, TempC: 38.1}}}, colour: hcx.Yellow, rule: "fever-with-symptoms"},
		{name: "green/fever-without-symptoms", facts: Facts{Declarations: []Declaration{{At: ago(day), TempC: 38.1}}}, colour: hcx.Green, rule: "default"},
		{name: "green/fever-with-symptoms-then-negative", facts: Facts{Declarations: []Declaration{{At: ago(day), Symptoms: []string{"cough"}, TempC: 38.1}}, Labs: []LabResult{neg(ago(hour))}}, colour: hcx.Green, rule: "default"},
		{name: "yellow/high-exposure-venue", facts: Facts{Venues: []VenueExposure{{VenueID: "v1", Div: "110105", At: ago(day), Level: "high"}}}, colour: hcx.Yellow, rule: "high-exposure-venue"},
		{name: "green/low-exposure-venue", facts: Facts{Venues: []VenueExposure{{VenueID: "v1", Div: "110105", At: ago(day), Level: "low"}}}, colour: hcx.Green, rule: "default"},
		{name: "red/positive-beats-risk-travel", facts: Facts{Labs: []LabResult{pos(ago(day))}, Travel: []TravelRecord{{Div: "440106", At: ago(5 * day)}}, RiskAreas: inRisk("440106", "medium")}, colour: hcx.Red, rule: "positive-lab-result"},
		{name: "green/future-events-are-ignored", facts: Facts{Labs: []LabResult{pos(t0.Add(hour))}}, colour: hcx.Green, rule: "default"},
	})
}

func antigenNegs(from time.Time, n int) []LabResult {
	out := negs(from, n)
	for i := range out {
		out[i].Kind = "antigen"
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestProvincesDiffer(t *testing.T) {
	travel := Facts{Travel: []TravelRecord{{Div: "440106", At: ago(10 * day)}}, RiskAreas: inRisk("440106", "medium")}
	symptomsOnly := Facts{Declarations: []Declaration{{At: ago(2 * day), Symptoms: []string{"sore-throat"}, TempC: 36.8}}}
	pendingOrder := Facts{Orders: []Order{{ID: "o1", Colour: hcx.Red, At: ago(hour), LocalConfirmed: true}}}
	antigenPositive := Facts{Labs: []LabResult{{At: ago(day), Positive: true, Kind: "antigen"}}}
	afterRed := Facts{Labs: append(negs(ago(14*day), 5), pos(ago(15*day)))}
	cases := []struct {
		name  string
		facts Facts
		want  map[hcx.ProvinceCode]hcx.Colour
	}{
		{"risk-area-10-days-ago/14-day-windows-are-yellow-7-day-windows-green", travel,
			map[hcx.ProvinceCode]hcx.Colour{"110000": hcx.Yellow, "310000": hcx.Green, "440000": hcx.Yellow, "510000": hcx.Green}},
		{"symptoms-without-fever/only-sichuan-is-yellow", symptomsOnly,
			map[hcx.ProvinceCode]hcx.Colour{"110000": hcx.Green, "310000": hcx.Green, "440000": hcx.Green, "510000": hcx.Yellow}},
		{"red-order-awaiting-national-confirmation/yellow-in-guangdong-and-sichuan", pendingOrder,
			map[hcx.ProvinceCode]hcx.Colour{"110000": hcx.Green, "310000": hcx.Green, "440000": hcx.Yellow, "510000": hcx.Yellow}},
		{"antigen-positive/shanghai-wants-pcr-for-red", antigenPositive,
			map[hcx.ProvinceCode]hcx.Colour{"110000": hcx.Red, "310000": hcx.Yellow, "440000": hcx.Red, "510000": hcx.Red}},
		{"red-released/sichuan-keeps-a-yellow-watch", afterRed,
			map[hcx.ProvinceCode]hcx.Colour{"110000": hcx.Green, "310000": hcx.Green, "440000": hcx.Green, "510000": hcx.Yellow}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range provinces {
				d, err := rules(t, p).Decide(&tc.facts, t0)
				if err != nil {
					t.Fatal(err)
				}
				if d.Colour != tc.want[p] {
					t.Errorf("%s: got %s by %q, want %s", p, d.Colour, d.Rule, tc.want[p])
				}
			}
		})
	}
}

func TestReleaseConditions(t *testing.T) {
	rs := rules(t, "110000")
	// Positive 5 days ago, then 3 daily negatives, the last 12 hours ago:
	// 9 more days and 2 more tests, the next tomorrow at midnight.
	f := &Facts{Labs: append(negs(ago(2*day+12*hour), 3), pos(ago(5*day)))}
	d, err := rs.Decide(f, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Release) != 2 {
		t.Fatalf("release = %+v, want a wait and a test condition", d.Release)
	}
	wait, tests := d.Release[0], d.Release[1]
	if wait.Kind != CondWait || !wait.Until.Equal(ago(5*day).Add(14*day)) {
		t.Errorf("wait = %+v, want until %v", wait, ago(5*day).Add(14*day))
	}
	if wait.Until.Location() != rs.Location() {
		t.Errorf("wait.Until is in %v, want the province's zone", wait.Until.Location())
	}
	if tests.Kind != CondTests || tests.NegativeTestsNeeded != 2 || !tests.NotBefore.Equal(t0.Add(12*hour)) {
		t.Errorf("tests = %+v, want 2 more, not before %v", tests, t0.Add(12*hour))
	}
	zh, en := tests.Text()
	if want := "2 more negative PCR tests, the next one after 2024-03-21 00:00 CST, at least 24 hours apart"; en != want {
		t.Errorf("en = %q, want %q", en, want)
	}
	if want := "还需 2 次核酸阴性结果，下一次须在 2024-03-21 00:00 之后采样，每次间隔至少 24 小时"; zh != want {
		t.Errorf("zh = %q, want %q", zh, want)
	}
	if zh, en := wait.Text(); zh != "隔离至 2024-03-29 12:00" || en != "stay isolated until 2024-03-29 12:00 CST" {
		t.Errorf("wait text = %q / %q", zh, en)
	}
	// With the last negative two days ago, the next test can be taken now.
	d, _ = rs.Decide(&Facts{Labs: append(negs(ago(4*day), 3), pos(ago(5*day)))}, t0)
	if _, en := d.Release[1].Text(); en != "2 more negative PCR tests, the next one any time now, at least 24 hours apart" {
		t.Errorf("en = %q", en)
	}
	if !d.Since.Equal(ago(5 * day)) {
		t.Errorf("since = %v", d.Since)
	}

	// A red order is only released by lifting it.
	d, _ = rs.Decide(&Facts{Orders: []Order{{ID: "o", Colour: hcx.Red, At: ago(30 * day), LocalConfirmed: true, NationalConfirmed: true}}}, t0)
	if len(d.Release) != 1 || d.Release[0].Kind != CondOrder {
		t.Errorf("order release = %+v", d.Release)
	}
	// Sichuan's watch period has a note.
	d, _ = rules(t, "510000").Decide(&Facts{Labs: append(negs(ago(14*day), 5), pos(ago(15*day)))}, t0)
	if len(d.Release) != 1 || d.Release[0].Kind != CondNote {
		t.Fatalf("note release = %+v", d.Release)
	}
	if _, en := d.Release[0].Text(); !strings.Contains(en, "21 days") {
		t.Errorf("note = %q", en)
	}
}

func TestSeveralRulesOfOneColour(t *testing.T) {
	rs := rules(t, "110000")
	f := &Facts{
		Labs:     []LabResult{pos(ago(2 * day))},
		Contacts: []ContactFlag{{Issuer: "110000", At: ago(4 * day)}},
		Orders:   []Order{{ID: "o", Colour: hcx.Red, At: ago(day), LocalConfirmed: true, NationalConfirmed: true}},
	}
	d, err := rs.Decide(f, t0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Rule != "cdc-order-red" {
		t.Errorf("rule = %q, want the first red rule in file order", d.Rule)
	}
	want := []hcx.Reason{hcx.ReasonOrderCDC, hcx.ReasonLabPositive, hcx.ReasonContactClose}
	if !slices.Equal(d.Reasons, want) {
		t.Errorf("reasons = %v, want %v", d.Reasons, want)
	}
	if !slices.Equal(d.Held, []string{"cdc-order-red", "positive-lab-result", "close-contact"}) {
		t.Errorf("held = %v", d.Held)
	}
}

func TestVaccinationMark(t *testing.T) {
	two := []Vaccination{
		{At: ago(60 * day), Dose: 1, CourseDoses: 2, Product: "BBIBP-CorV"},
		{At: ago(10 * day), Dose: 2, CourseDoses: 2, Product: "BBIBP-CorV"},
	}
	cases := []struct {
		name  string
		p     hcx.ProvinceCode
		vax   []Vaccination
		marks bool
	}{
		{"unmarked/no-vaccination", "110000", nil, false},
		{"unmarked/one-of-two-doses", "110000", two[:1], false},
		{"marked/course-complete", "110000", two, true},
		{"marked/single-dose-course", "440000", []Vaccination{{At: ago(5 * day), Dose: 1, CourseDoses: 1, Product: "Ad5-nCoV"}}, true},
		{"unmarked/shanghai-waits-14-days-after-the-last-dose", "310000", two, false},
		{"marked/shanghai-after-14-days", "310000", []Vaccination{two[0], {At: ago(14 * day), Dose: 2, CourseDoses: 2}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := rules(t, tc.p).Decide(&Facts{Vaccinations: tc.vax}, t0)
			if err != nil {
				t.Fatal(err)
			}
			if d.Vaccinated != tc.marks {
				t.Errorf("vaccinated = %v, want %v", d.Vaccinated, tc.marks)
			}
		})
	}
}

func TestTimeBoundaries(t *testing.T) {
	bj := rules(t, "110000")
	visit := func(d time.Duration) *Facts {
		return &Facts{Travel: []TravelRecord{{Div: "440106", At: ago(d)}}, RiskAreas: inRisk("440106", "high")}
	}
	cases := []struct {
		name string
		rs   *RuleSet
		f    *Facts
		now  time.Time
		want hcx.Colour
	}{
		{"yellow/risk-visit-13-days-23-hours-ago", bj, visit(13*day + 23*hour), t0, hcx.Yellow},
		{"yellow/risk-visit-13-days-23-hours-59-minutes-59-seconds-ago", bj, visit(14*day - time.Second), t0, hcx.Yellow},
		{"green/risk-visit-exactly-14-days-ago", bj, visit(14 * day), t0, hcx.Green},
		{"red/positive-13-days-23-hours-ago-with-5-negatives", bj, &Facts{Labs: append(negs(ago(13*day), 5), pos(ago(13*day+23*hour)))}, t0, hcx.Red},
		{"green/positive-exactly-14-days-ago-with-5-negatives", bj, &Facts{Labs: append(negs(ago(13*day), 5), pos(ago(14*day)))}, t0, hcx.Green},
		{"red/negative-23-hours-after-the-previous-does-not-count", bj, &Facts{Labs: []LabResult{pos(ago(20 * day)), neg(ago(10 * day)), neg(ago(9 * day)), neg(ago(8 * day)), neg(ago(7 * day)), neg(ago(6*day + hour))}}, t0, hcx.Red},
		{"green/negative-24-hours-after-the-previous-counts", bj, &Facts{Labs: []LabResult{pos(ago(20 * day)), neg(ago(10 * day)), neg(ago(9 * day)), neg(ago(8 * day)), neg(ago(7 * day)), neg(ago(6 * day))}}, t0, hcx.Green},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.rs.Decide(tc.f, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if d.Colour != tc.want {
				t.Errorf("got %s by %q, want %s (release %+v)", d.Colour, d.Rule, tc.want, d.Release)
			}
		})
	}
}

// Shanghai counts isolation in local calendar days: a positive at 23:30
// Beijing time on 1 March (15:30 UTC) is released at 00:00 on 16 March local
// time, which is 16:00 UTC on 15 March, whatever the UTC date says.
func TestCalendarDaysInLocalTime(t *testing.T) {
	sh := rules(t, "310000")
	positive := time.Date(2024, 3, 1, 15, 30, 0, 0, time.UTC) // 23:30 CST on 1 March
	f := &Facts{Labs: append(negs(positive.Add(time.Hour), 5), pos(positive))}
	release := time.Date(2024, 3, 15, 16, 0, 0, 0, time.UTC) // 00:00 CST on 16 March
	for _, tc := range []struct {
		name string
		now  time.Time
		want hcx.Colour
	}{
		{"red/one-second-before-local-midnight", release.Add(-time.Second), hcx.Red},
		{"green/at-local-midnight", release, hcx.Green},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := sh.Decide(f, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if d.Colour != tc.want {
				t.Errorf("got %s, want %s (release %+v)", d.Colour, tc.want, d.Release)
			}
		})
	}

	// The same rule evaluated in Urumqi's zone (UTC+6) releases two hours later.
	src := strings.Replace(string(sh.Source()), "zone: Asia/Shanghai", "zone: Asia/Urumqi", 1)
	xj, err := Parse("urumqi.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := xj.Decide(f, release); d.Colour != hcx.Red {
		t.Errorf("Urumqi at Beijing midnight: got %s, want red", d.Colour)
	}
	if d, _ := xj.Decide(f, release.Add(2*time.Hour)); d.Colour != hcx.Green {
		t.Errorf("Urumqi at its own midnight: got %s, want green", d.Colour)
	}
	if xj.Location().String() != "Asia/Urumqi" {
		t.Errorf("location = %v", xj.Location())
	}
}

func TestCalendarDaysSince(t *testing.T) {
	src := `
province: "310000"
rules:
  - name: tested-today
    colour: yellow
    reasons: [lab.positive]
    when: calendar_days_since(labs.last) == 0
`
	rs, err := Parse("cal.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// 17:00 UTC on 1 March is 01:00 on 2 March in Shanghai; at 15:00 UTC on
	// 2 March (23:00 local) it is still "today" locally, though not in UTC.
	f := &Facts{Labs: []LabResult{neg(time.Date(2024, 3, 1, 17, 0, 0, 0, time.UTC))}}
	if d, _ := rs.Decide(f, time.Date(2024, 3, 2, 15, 0, 0, 0, time.UTC)); d.Colour != hcx.Yellow {
		t.Errorf("same local day: got %s, want yellow", d.Colour)
	}
	if d, _ := rs.Decide(f, time.Date(2024, 3, 2, 16, 0, 0, 0, time.UTC)); d.Colour != hcx.Green {
		t.Errorf("next local day: got %s, want green", d.Colour)
	}
}

func TestDecideIsDeterministicAndOrderFree(t *testing.T) {
	rs := rules(t, "440000")
	f := &Facts{
		Labs:         []LabResult{neg(ago(day)), pos(ago(30 * day)), neg(ago(3 * day)), neg(ago(2 * day))},
		Travel:       []TravelRecord{{Div: "440106", At: ago(day)}, {Div: "110105", At: ago(5 * day)}},
		RiskAreas:    inRisk("440106", "medium"),
		Declarations: []Declaration{{At: ago(hour), TempC: 36.5}},
	}
	want, err := rs.Decide(f, t0)
	if err != nil {
		t.Fatal(err)
	}
	rev := *f
	rev.Labs = slices.Clone(f.Labs)
	slices.Reverse(rev.Labs)
	rev.Travel = slices.Clone(f.Travel)
	slices.Reverse(rev.Travel)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := rs.Decide(&rev, t0)
			if err != nil {
				t.Error(err)
				return
			}
			if got.Colour != want.Colour || got.Rule != want.Rule || !slices.Equal(got.Reasons, want.Reasons) || len(got.Release) != len(want.Release) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		}()
	}
	wg.Wait()
}
