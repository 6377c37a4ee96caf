package policy

import (
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/hcxfed/hcx"
)

// Decision is the colour a rule set gives a resident at a time, and why.
type Decision struct {
	Colour  hcx.Colour
	Reasons []hcx.Reason
	// Rule is the name of the rule that decided the colour; "default" when
	// no rule held and the resident is green.
	Rule string
	// Release lists what the resident can do to leave this colour: the
	// conditions of every rule of this colour that holds.
	Release    []Condition
	Vaccinated bool

	// Since is the deciding rule's anchor: the time release is counted from.
	Since time.Time
	// Held names every rule of the decided colour that holds, Rule first.
	Held []string
	// Released names the rules whose conditions hold but whose release
	// conditions are met, so they no longer count.
	Released []string
	// Policy is the rule set's version (see WithHash), "" without one.
	Policy string
}

// Condition kinds.
const (
	CondWait  = "wait"  // isolation lasts until Until
	CondTests = "tests" // NegativeTestsNeeded more negative results, the next at or after NotBefore
	CondOrder = "order" // the disease-control order must be lifted
	CondNote  = "note"  // the rule file's own words
	// CondCheckIns: CheckInsNeeded more daily health check-ins, one each
	// local day; CheckInDue says today's is not made yet.
	CondCheckIns = "checkins"
)

// Condition is one thing that must happen before a rule releases the resident.
type Condition struct {
	Rule                string
	Kind                string
	Until               time.Time // CondWait, in the province's zone
	NegativeTestsNeeded int       // CondTests
	NotBefore           time.Time // CondTests, in the province's zone
	TestKinds           []string  // CondTests: which tests count ("pcr", "antigen")
	IntervalHours       int       // CondTests: hours between two tests that count
	Note                *Text     // CondNote
	CheckInsNeeded      int       // CondCheckIns
	CheckInDue          bool      // CondCheckIns: today's check-in is still to be made

	asOf time.Time // the decision's time, for "any time now"
}

const timeLayout = "2006-01-02 15:04"

// Text is the condition for the resident, in Chinese and English.
func (c Condition) Text() (zh, en string) {
	t := c.Texts()
	return t[0], t[1]
}

// Texts is the condition for the resident in every language of hcx.Langs
// (a note without a Japanese or Korean text leaves it empty: it reads as
// English).
func (c Condition) Texts() hcx.Texts {
	switch c.Kind {
	case CondWait:
		at := c.Until.Format(timeLayout + " MST")
		return hcx.Texts{fmt.Sprintf("隔离至 %s", c.Until.Format(timeLayout)),
			fmt.Sprintf("stay isolated until %s", at),
			fmt.Sprintf("%s まで隔離", at),
			fmt.Sprintf("%s까지 격리", at)}
	case CondTests:
		k := kindsTexts(c.TestKinds)
		var t hcx.Texts
		t[0] = fmt.Sprintf("还需 %d 次%s阴性结果", c.NegativeTestsNeeded, k[0])
		noun := "tests"
		if c.NegativeTestsNeeded == 1 {
			noun = "test"
		}
		t[1] = fmt.Sprintf("%d more negative %s%s", c.NegativeTestsNeeded, k[1], noun)
		t[2] = fmt.Sprintf("%s陰性結果があと %d 回必要", k[2], c.NegativeTestsNeeded)
		t[3] = fmt.Sprintf("%s음성 결과 %d회 더 필요", k[3], c.NegativeTestsNeeded)
		switch {
		case !c.asOf.IsZero() && !c.NotBefore.After(c.asOf):
			t[0] += "，现在即可采样"
			t[1] += ", the next one any time now"
			t[2] += "、次の検査は今すぐ受けられます"
			t[3] += ", 다음 검사는 지금 바로 가능"
		case !c.NotBefore.IsZero():
			at := c.NotBefore.Format(timeLayout + " MST")
			t[0] += fmt.Sprintf("，下一次须在 %s 之后采样", c.NotBefore.Format(timeLayout))
			t[1] += fmt.Sprintf(", the next one after %s", at)
			t[2] += fmt.Sprintf("、次の検査は %s 以降", at)
			t[3] += fmt.Sprintf(", 다음 검사는 %s 이후", at)
		}
		if c.NegativeTestsNeeded > 1 && c.IntervalHours > 0 {
			t[0] += fmt.Sprintf("，每次间隔至少 %d 小时", c.IntervalHours)
			t[1] += fmt.Sprintf(", at least %d hours apart", c.IntervalHours)
			t[2] += fmt.Sprintf("、各回 %d 時間以上の間隔をあけて", c.IntervalHours)
			t[3] += fmt.Sprintf(", 매회 %d시간 이상 간격", c.IntervalHours)
		}
		return t
	case CondOrder:
		return hcx.Texts{"待疾控部门解除管控", "the disease-control authority must lift its order",
			"疾病予防管理当局による措置の解除が必要", "질병관리 당국의 조치 해제 필요"}
	case CondCheckIns:
		noun := "check-ins"
		if c.CheckInsNeeded == 1 {
			noun = "check-in"
		}
		t := hcx.Texts{fmt.Sprintf("还需每日健康打卡 %d 天", c.CheckInsNeeded),
			fmt.Sprintf("%d more daily health %s, one each day", c.CheckInsNeeded, noun),
			fmt.Sprintf("毎日の健康チェックインがあと %d 日必要", c.CheckInsNeeded),
			fmt.Sprintf("매일 건강 체크인 %d일 더 필요", c.CheckInsNeeded)}
		if c.CheckInDue {
			return hcx.Texts{t[0] + "，今日尚未打卡", t[1] + "; today's is due", t[2] + "（本日分は未完了）", t[3] + " (오늘 체크인 필요)"}
		}
		return hcx.Texts{t[0] + "，今日已打卡", t[1] + "; today's is done", t[2] + "（本日分は完了）", t[3] + " (오늘 체크인 완료)"}
	case CondNote:
		if c.Note != nil {
			return hcx.Texts{c.Note.ZH, c.Note.EN, c.Note.JA, c.Note.KO}
		}
	}
	return hcx.Texts{c.Kind, c.Kind, c.Kind, c.Kind}
}

// kindsTexts names the test kinds that count, in each language, ready to
// stand before "negative result" (English and Korean with a trailing
// space).
func kindsTexts(kinds []string) hcx.Texts {
	names := map[string]hcx.Texts{
		"pcr":     {"核酸", "PCR", "PCR", "PCR"},
		"antigen": {"抗原", "antigen", "抗原", "항원"},
	}
	or := hcx.Texts{"或", " or ", "または", " 또는 "}
	var parts [4][]string
	for _, k := range kinds {
		if n, ok := names[k]; ok {
			for i := range parts {
				parts[i] = append(parts[i], n[i])
			}
		}
	}
	var t hcx.Texts
	if len(parts[0]) == 0 {
		return t
	}
	for i := range t {
		t[i] = strings.Join(parts[i], or[i])
	}
	t[1] += " "
	t[2] += "検査の"
	t[3] += " 검사 "
	return t
}

// Trace is what explain shows for one rule.
type Trace struct {
	Rule     *Rule
	Holds    bool
	Released bool // it holds, but its release conditions are met
	Since    time.Time
	Release  []Condition // when it holds and is not released
	Err      error
}

// Decide gives the resident's colour at now from their facts. Rules are tried
// most severe colour first and, within a colour, in file order; the first that
// holds and is not released decides. Other rules of that colour that hold add
// their reasons and release conditions. When none holds the resident is green,
// with reason "released" if some rule was just released, "clear" otherwise.
//
// Decide is pure and safe for concurrent use. It returns an error only when a
// rule fails at run time (such as indexing an empty list); the error names the
// rule.
func (rs *RuleSet) Decide(f *Facts, now time.Time) (Decision, error) {
	d, _, err := rs.decide(f, now, false)
	return d, err
}

// Explain is Decide, and also how every rule fared, in file order.
func (rs *RuleSet) Explain(f *Facts, now time.Time) (Decision, []Trace, error) {
	return rs.decide(f, now, true)
}

func (rs *RuleSet) decide(f *Facts, now time.Time, explain bool) (Decision, []Trace, error) {
	if f == nil {
		f = &Facts{}
	}
	e := &evaluation{rs: rs, f: f, now: now.UTC()}
	e.summarise()
	d := Decision{Policy: rs.version}
	var traces map[*Rule]*Trace
	if explain {
		traces = make(map[*Rule]*Trace, len(rs.rules))
	}
	for _, r := range rs.order {
		if d.Rule != "" && r.Colour != d.Colour && !explain {
			break
		}
		t := Trace{Rule: r}
		holds, err := e.bool(r.when)
		if err != nil {
			err = fmt.Errorf("rule %q: when: %w", r.Name, err)
			if !explain {
				return Decision{}, nil, err
			}
			t.Err = err
		}
		t.Holds = holds
		if holds {
			t.Since, t.Released, t.Release, err = e.release(r)
			if err != nil {
				err = fmt.Errorf("rule %q: since: %w", r.Name, err)
				if !explain {
					return Decision{}, nil, err
				}
				t.Err = err
			}
		}
		if explain {
			traces[r] = &t
		}
		switch {
		case !t.Holds || t.Err != nil:
		case d.Rule != "" && r.Colour != d.Colour:
			// Explain only: a less severe rule, which Decide never reaches.
		case t.Released:
			d.Released = append(d.Released, r.Name)
		case d.Rule == "":
			d.Colour, d.Rule, d.Since = r.Colour, r.Name, t.Since.In(rs.loc)
			fallthrough
		case r.Colour == d.Colour:
			d.Held = append(d.Held, r.Name)
			d.Reasons = addReasons(d.Reasons, r.Reasons)
			d.Release = append(d.Release, t.Release...)
		}
	}
	if d.Rule == "" {
		d.Colour, d.Rule = hcx.Green, "default"
		if len(d.Released) > 0 {
			d.Reasons = []hcx.Reason{hcx.ReasonReleased}
		} else {
			d.Reasons = []hcx.Reason{hcx.ReasonClear}
		}
	}
	vacc, err := e.bool(rs.vaccinated)
	if err != nil {
		return Decision{}, nil, fmt.Errorf("vaccinated: %w", err)
	}
	d.Vaccinated = vacc
	var out []Trace
	if explain {
		for _, r := range rs.rules {
			out = append(out, *traces[r])
		}
	}
	return d, out, nil
}

func addReasons(have, more []hcx.Reason) []hcx.Reason {
next:
	for _, r := range more {
		for _, h := range have {
			if h == r {
				continue next
			}
		}
		have = append(have, r)
	}
	return have
}

func (e *evaluation) bool(x *expr) (bool, error) {
	out, _, err := x.prg.Eval(e)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("gave %v, not a bool", out)
	}
	return bool(b), nil
}

// anchor is the time a holding rule's release is counted from: its `since`,
// or when the resident turned this colour, or now.
func (e *evaluation) anchor(r *Rule) (time.Time, error) {
	if r.since != nil {
		out, _, err := r.since.prg.Eval(e)
		if err != nil {
			return time.Time{}, err
		}
		t, ok := out.(types.Timestamp)
		if !ok {
			return time.Time{}, fmt.Errorf("gave %v, not a timestamp", out)
		}
		return t.Time.UTC(), nil
	}
	if e.f.Current == r.Colour && !e.f.CurrentSince.IsZero() {
		return e.f.CurrentSince.UTC(), nil
	}
	return e.now, nil
}

// release works out whether a rule that holds is released, and if not, what
// is left to do.
func (e *evaluation) release(r *Rule) (since time.Time, released bool, conds []Condition, err error) {
	since, err = e.anchor(r)
	if err != nil {
		return since, false, nil, err
	}
	loc := e.rs.loc
	rel := r.Release
	switch {
	case rel.OrderLifted:
		conds = append(conds, Condition{Rule: r.Name, Kind: CondOrder})
	case rel.automatic():
		end := since.Add(time.Duration(rel.Days) * 24 * time.Hour)
		if rel.CalendarDays {
			y, m, d := since.In(loc).Date()
			// The anchor's own day does not count: isolation covers Days
			// whole local days after it and ends at the next midnight.
			end = time.Date(y, m, d+rel.Days+1, 0, 0, 0, 0, loc)
		}
		waiting := e.now.Before(end)
		if waiting {
			conds = append(conds, Condition{Rule: r.Name, Kind: CondWait, Until: end.In(loc)})
		}
		needed := 0
		var notBefore time.Time
		if rel.NegativeTests > 0 {
			interval := time.Duration(rel.TestIntervalHours) * time.Hour
			counted := 0
			var last time.Time
			for _, t := range e.negativeTimes(rel.TestKinds) {
				if t.Before(since) {
					continue
				}
				if counted == 0 || t.Sub(last) >= interval {
					counted++
					last = t
				}
			}
			needed = rel.NegativeTests - counted
			notBefore = since
			if counted > 0 {
				notBefore = last.Add(interval)
			}
		}
		if needed > 0 {
			conds = append(conds, Condition{Rule: r.Name, Kind: CondTests, NegativeTestsNeeded: needed,
				NotBefore: notBefore.In(loc), TestKinds: rel.TestKinds, IntervalHours: rel.TestIntervalHours, asOf: e.now})
		}
		checkInsLeft := 0
		if rel.CheckIns > 0 {
			streak, today := e.checkInStreak(since)
			if !today || streak < rel.CheckIns {
				// Today's check-in is part of every release: a streak
				// that ended yesterday still needs today's.
				checkInsLeft = max(rel.CheckIns-streak, 1)
				conds = append(conds, Condition{Rule: r.Name, Kind: CondCheckIns, CheckInsNeeded: checkInsLeft, CheckInDue: !today})
			}
		}
		if !waiting && needed <= 0 && checkInsLeft == 0 {
			return since, true, nil, nil
		}
	}
	if rel.Note != nil {
		conds = append(conds, Condition{Rule: r.Name, Kind: CondNote, Note: rel.Note})
	}
	return since, false, conds, nil
}
