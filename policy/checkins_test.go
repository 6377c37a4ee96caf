package policy

import (
	"strings"
	"testing"
	"time"
)

// checkInRules is a yellow rule released by three daily check-ins and
// nothing else, and a variable test of the vocabulary.
const checkInRules = `province: "440000"
zone: Asia/Shanghai
rules:
  - name: fever
    colour: yellow
    reasons: [declaration.fever]
    when: days_since(declarations.last_fever) < 14
    since: declarations.last_fever
    release:
      checkins: 3
  - name: streak-probe
    colour: red
    reasons: [order.cdc]
    when: checkins.streak > 5 && checkins.today && checkins.count > 5 && days_since(checkins.last) < 1 && days_since(checkins.last_symptomatic) > 100
`

func checkIns(at ...time.Time) []CheckIn {
	out := make([]CheckIn, len(at))
	for i, a := range at {
		out[i] = CheckIn{At: a, TempC: 36.5}
	}
	return out
}

func TestCheckInRelease(t *testing.T) {
	rs, err := Parse("checkins.yaml", []byte(checkInRules))
	if err != nil {
		t.Fatal(err)
	}
	fever := []Declaration{{At: ago(3 * day), TempC: 38.5}}
	cases := []struct {
		name     string
		checkIns []CheckIn
		colour   string
		needed   int
		due      bool
	}{
		// t0 is 12:00 local; ago(20h) is yesterday 16:00, ago(44h) the day before.
		{"none", nil, "yellow", 3, true},
		{"today-only", checkIns(ago(hour)), "yellow", 2, false},
		{"yesterday-only: today's still due", checkIns(ago(20 * hour)), "yellow", 2, true},
		{"two-days-then-today", checkIns(ago(44*hour), ago(20*hour), ago(hour)), "green", 0, false},
		{"gap-breaks-the-streak", checkIns(ago(68*hour), ago(20*hour), ago(hour)), "yellow", 1, false},
		{"two-the-same-day-count-once", checkIns(ago(20*hour), ago(2*hour), ago(hour)), "yellow", 1, false},
		{"before-the-anchor-do-not-count", checkIns(ago(5*day), ago(4*day), ago(hour)), "yellow", 2, false},
		{"future-check-ins-do-not-count", checkIns(ago(44*hour), ago(20*hour), t0.Add(hour)), "yellow", 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := rs.Decide(&Facts{Declarations: fever, CheckIns: c.checkIns}, t0)
			if err != nil {
				t.Fatal(err)
			}
			if string(d.Colour) != c.colour {
				t.Fatalf("colour = %s by %s, want %s (release %+v)", d.Colour, d.Rule, c.colour, d.Release)
			}
			if c.colour == "green" {
				if len(d.Released) != 1 || d.Released[0] != "fever" {
					t.Errorf("released = %v, want [fever]", d.Released)
				}
				return
			}
			if len(d.Release) != 1 || d.Release[0].Kind != CondCheckIns {
				t.Fatalf("release = %+v, want one check-in condition", d.Release)
			}
			if got := d.Release[0]; got.CheckInsNeeded != c.needed || got.CheckInDue != c.due {
				t.Errorf("condition = %d needed, due %v; want %d, %v", got.CheckInsNeeded, got.CheckInDue, c.needed, c.due)
			}
		})
	}
}

func TestCheckInConditionText(t *testing.T) {
	zh, en := Condition{Kind: CondCheckIns, CheckInsNeeded: 2, CheckInDue: true}.Text()
	if en != "2 more daily health check-ins, one each day; today's is due" || zh != "还需每日健康打卡 2 天，今日尚未打卡" {
		t.Errorf("text = %q / %q", zh, en)
	}
	zh, en = Condition{Kind: CondCheckIns, CheckInsNeeded: 1}.Text()
	if en != "1 more daily health check-in, one each day; today's is done" || zh != "还需每日健康打卡 1 天，今日已打卡" {
		t.Errorf("text = %q / %q", zh, en)
	}
}

func TestCheckInVocabulary(t *testing.T) {
	rs, err := Parse("checkins.yaml", []byte(checkInRules))
	if err != nil {
		t.Fatal(err)
	}
	// Six days in a row, today included, none feverish: the probe holds.
	var cs []CheckIn
	for i := 5; i >= 0; i-- {
		cs = append(cs, CheckIn{At: ago(time.Duration(i)*day + hour), TempC: 36.6})
	}
	d, err := rs.Decide(&Facts{CheckIns: cs}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Rule != "streak-probe" {
		t.Fatalf("rule = %s, want streak-probe (values: %+v)", d.Rule, rs.Values(&Facts{CheckIns: cs}, t0))
	}
	// A feverish check-in sets checkins.last_symptomatic.
	cs[len(cs)-1].TempC = 37.8
	if d, _ := rs.Decide(&Facts{CheckIns: cs}, t0); d.Rule == "streak-probe" {
		t.Errorf("a feverish check-in left checkins.last_symptomatic at never")
	}
	vals := map[string]string{}
	for _, v := range rs.Values(&Facts{CheckIns: cs[:5]}, t0) {
		vals[v.Name] = v.Text
	}
	if vals["checkins.streak"] != "5" || vals["checkins.today"] != "false" || vals["checkins.count"] != "5" {
		t.Errorf("values without today's = streak %s, today %s, count %s; want 5, false, 5", vals["checkins.streak"], vals["checkins.today"], vals["checkins.count"])
	}
	found := false
	for _, l := range Vocabulary() {
		found = found || strings.HasPrefix(l, "checkins.streak ")
	}
	if !found {
		t.Error("checkins.streak is not in Vocabulary()")
	}
}

func TestCheckInReleaseValidatedAtLoad(t *testing.T) {
	for _, c := range []struct{ release, want string }{
		{"checkins: 31", "release.checkins: want a whole number from 0 to 30"},
		{"checkins: -1", "release.checkins: want a whole number from 0 to 30"},
		{"checkins: many", "release.checkins: want a whole number"},
		{"order_lifted: true\n      checkins: 2", "order_lifted cannot be combined with days, negative_tests or checkins"},
	} {
		src := strings.Replace(checkInRules, "checkins: 3", c.release, 1)
		_, err := Parse("bad.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.release, err, c.want)
		}
	}
	green := strings.Replace(checkInRules, "colour: yellow", "colour: green", 1)
	if _, err := Parse("bad.yaml", []byte(green)); err == nil || !strings.Contains(err.Error(), "a green rule has nothing to release") {
		t.Errorf("green rule with checkins: err = %v", err)
	}
}
