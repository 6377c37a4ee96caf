package policy

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/functions"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	"github.com/hcxfed/hcx"
)

// FeverC is the temperature, in degrees Celsius, from which a declaration
// counts as feverish (the national guideline's 37.3 °C).
const FeverC = 37.3

// never is the time a summary reads when there is no such event: the Unix
// epoch, so that days_since(never) is large and every window test is false.
var never = time.Unix(0, 0).UTC()

// variable is one name a rule's CEL expression can read.
type variable struct {
	name string
	typ  *cel.Type
	doc  string
	get  func(e *evaluation) ref.Val
}

// function is one late-bound function: it needs the decision's clock and
// facts, so it is bound per evaluation rather than at load time.
type function struct {
	name, overload string
	args           []*cel.Type
	result         *cel.Type
	doc            string
	impl           func(e *evaluation, args []ref.Val) ref.Val
}

var (
	recordList = cel.ListType(cel.MapType(cel.StringType, cel.DynType))
	stringList = cel.ListType(cel.StringType)
)

func ts(t time.Time) ref.Val { return types.Timestamp{Time: t} }

// Variables is the vocabulary of rule conditions, in the order docs/rules.md
// lists it. Summaries are computed once per decision; the lists (*.all) are
// built only when a rule reads them.
var variables = []variable{
	{"now", cel.TimestampType, "the time of the decision", func(e *evaluation) ref.Val { return ts(e.now) }},
	{"zone", cel.StringType, "the province's time zone, e.g. for now.getHours(zone)", func(e *evaluation) ref.Val { return types.String(e.rs.zone) }},

	{"labs.all", recordList, "every lab result: {at, positive, kind}, oldest first", func(e *evaluation) ref.Val { return e.labList() }},
	{"labs.count", cel.IntType, "number of lab results", func(e *evaluation) ref.Val { return types.Int(len(e.f.Labs)) }},
	{"labs.positive_count", cel.IntType, "number of positive results", func(e *evaluation) ref.Val { return types.Int(e.s.labPos) }},
	{"labs.positive_pcr_count", cel.IntType, "number of positive PCR results", func(e *evaluation) ref.Val { return types.Int(e.s.labPosPCR) }},
	{"labs.negative_count", cel.IntType, "number of negative results", func(e *evaluation) ref.Val { return types.Int(e.s.labNeg) }},
	{"labs.last", cel.TimestampType, "time of the latest result", func(e *evaluation) ref.Val { return ts(e.s.labLast) }},
	{"labs.last_positive", cel.TimestampType, "time of the latest positive result", func(e *evaluation) ref.Val { return ts(e.s.labLastPos) }},
	{"labs.last_negative", cel.TimestampType, "time of the latest negative result", func(e *evaluation) ref.Val { return ts(e.s.labLastNeg) }},
	{"labs.latest_positive", cel.BoolType, "the latest result is positive", func(e *evaluation) ref.Val { return types.Bool(e.s.labLatestPos) }},

	{"contacts.count", cel.IntType, "number of close-contact flags", func(e *evaluation) ref.Val { return types.Int(len(e.f.Contacts)) }},
	{"contacts.last", cel.TimestampType, "time of the latest close-contact flag", func(e *evaluation) ref.Val { return ts(e.s.contactLast) }},
	{"contacts.last_issuer", cel.StringType, "province that issued the latest flag", func(e *evaluation) ref.Val { return types.String(e.s.contactIssuer) }},

	{"declarations.all", recordList, "every declaration: {at, symptoms, temp_c}, oldest first", func(e *evaluation) ref.Val { return e.declList() }},
	{"declarations.count", cel.IntType, "number of declarations", func(e *evaluation) ref.Val { return types.Int(len(e.f.Declarations)) }},
	{"declarations.last", cel.TimestampType, "time of the latest declaration", func(e *evaluation) ref.Val { return ts(e.s.declLast) }},
	{"declarations.last_symptoms", stringList, "symptoms in the latest declaration", func(e *evaluation) ref.Val {
		return types.NewStringList(types.DefaultTypeAdapter, e.s.declLastSymptoms)
	}},
	{"declarations.last_temp_c", cel.DoubleType, "temperature in the latest declaration (0 if none)", func(e *evaluation) ref.Val { return types.Double(e.s.declLastTemp) }},
	{"declarations.last_symptomatic", cel.TimestampType, "latest declaration with any symptom", func(e *evaluation) ref.Val { return ts(e.s.declLastSympt) }},
	{"declarations.last_fever", cel.TimestampType, "latest declaration at or above 37.3 °C", func(e *evaluation) ref.Val { return ts(e.s.declLastFever) }},
	{"declarations.last_fever_with_symptoms", cel.TimestampType, "latest declaration with a symptom and at or above 37.3 °C", func(e *evaluation) ref.Val { return ts(e.s.declLastBoth) }},

	{"vax.doses", cel.IntType, "highest dose number received", func(e *evaluation) ref.Val { return types.Int(e.s.vaxDoses) }},
	{"vax.course_doses", cel.IntType, "doses in the primary course of the latest product (0 if none)", func(e *evaluation) ref.Val { return types.Int(e.s.vaxCourse) }},
	{"vax.complete", cel.BoolType, "the primary course is complete", func(e *evaluation) ref.Val { return types.Bool(e.s.vaxCourse > 0 && e.s.vaxDoses >= e.s.vaxCourse) }},
	{"vax.boosted", cel.BoolType, "a dose beyond the primary course was received", func(e *evaluation) ref.Val { return types.Bool(e.s.vaxCourse > 0 && e.s.vaxDoses > e.s.vaxCourse) }},
	{"vax.completed_at", cel.TimestampType, "time of the dose that completed the course", func(e *evaluation) ref.Val { return ts(e.s.vaxCompleted) }},
	{"vax.last", cel.TimestampType, "time of the latest dose", func(e *evaluation) ref.Val { return ts(e.s.vaxLast) }},

	{"travel.all", recordList, "every stay: {div, at, risk} where risk is \"\", \"medium\" or \"high\" as in force then, oldest first", func(e *evaluation) ref.Val { return e.travelList() }},
	{"travel.count", cel.IntType, "number of travel records", func(e *evaluation) ref.Val { return types.Int(len(e.f.Travel)) }},
	{"travel.last", cel.TimestampType, "time of the latest travel record", func(e *evaluation) ref.Val { return ts(e.s.travelLast) }},
	{"travel.last_risk", cel.TimestampType, "latest stay in an area that was medium- or high-risk at that time", func(e *evaluation) ref.Val { return ts(e.s.travelLastRisk) }},
	{"travel.last_medium_risk", cel.TimestampType, "latest stay in a medium-risk area", func(e *evaluation) ref.Val { return ts(e.s.travelLastMedium) }},
	{"travel.last_high_risk", cel.TimestampType, "latest stay in a high-risk area", func(e *evaluation) ref.Val { return ts(e.s.travelLastHigh) }},
	{"travel.last_risk_div", cel.StringType, "division code of the latest risky stay", func(e *evaluation) ref.Val { return types.String(e.s.travelRiskDiv) }},

	{"venues.count", cel.IntType, "number of venue exposures", func(e *evaluation) ref.Val { return types.Int(len(e.f.Venues)) }},
	{"venues.last", cel.TimestampType, "time of the latest venue exposure of any level", func(e *evaluation) ref.Val { return ts(e.s.venueLast) }},
	{"venues.last_high", cel.TimestampType, "time of the latest high-level venue exposure", func(e *evaluation) ref.Val { return ts(e.s.venueLastHigh) }},

	{"orders.red", cel.BoolType, "a red order in force, confirmed locally and by the national platform", func(e *evaluation) ref.Val { return types.Bool(e.s.orderRed) }},
	{"orders.red_pending", cel.BoolType, "a red order in force with only one of the two confirmations", func(e *evaluation) ref.Val { return types.Bool(e.s.orderRedPending) }},
	{"orders.yellow", cel.BoolType, "a yellow order in force, confirmed locally", func(e *evaluation) ref.Val { return types.Bool(e.s.orderYellow) }},
	{"orders.since", cel.TimestampType, "time of the latest order in force", func(e *evaluation) ref.Val { return ts(e.s.orderSince) }},

	{"checkins.count", cel.IntType, "number of daily health check-ins", func(e *evaluation) ref.Val { return types.Int(e.s.checkInCount) }},
	{"checkins.last", cel.TimestampType, "time of the latest check-in", func(e *evaluation) ref.Val { return ts(e.s.checkInLast) }},
	{"checkins.streak", cel.IntType, "local days in a row with a check-in, ending today (or yesterday, if today's is not made yet)", func(e *evaluation) ref.Val {
		n, _ := e.checkInStreak(never)
		return types.Int(n)
	}},
	{"checkins.today", cel.BoolType, "the resident has checked in today (local day in the province's zone)", func(e *evaluation) ref.Val {
		_, today := e.checkInStreak(never)
		return types.Bool(today)
	}},
	{"checkins.last_symptomatic", cel.TimestampType, "latest check-in with a symptom or at or above 37.3 °C", func(e *evaluation) ref.Val { return ts(e.s.checkInLastSympt) }},

	{"current.colour", cel.StringType, "the colour the resident has now: \"green\", \"yellow\", \"red\" or \"\"", func(e *evaluation) ref.Val { return types.String(e.f.Current) }},
	{"current.since", cel.TimestampType, "since when the resident has that colour", func(e *evaluation) ref.Val { return ts(orNever(e.f.CurrentSince)) }},
}

var functionsTable = []function{
	{"days_since", "days_since_timestamp", []*cel.Type{cel.TimestampType}, cel.DoubleType,
		"days (24 hours each, with fractions) from t to now; negative if t is after now",
		func(e *evaluation, a []ref.Val) ref.Val {
			return types.Double(float64(e.now.Sub(a[0].(types.Timestamp).Time)) / float64(24*time.Hour))
		}},
	{"hours_since", "hours_since_timestamp", []*cel.Type{cel.TimestampType}, cel.DoubleType,
		"hours (with fractions) from t to now",
		func(e *evaluation, a []ref.Val) ref.Val {
			return types.Double(e.now.Sub(a[0].(types.Timestamp).Time).Hours())
		}},
	{"calendar_days_since", "calendar_days_since_timestamp", []*cel.Type{cel.TimestampType}, cel.IntType,
		"local calendar days from t's date to today's date in the province's zone (0 = today)",
		func(e *evaluation, a []ref.Val) ref.Val {
			return types.Int(calendarDays(a[0].(types.Timestamp).Time, e.now, e.rs.loc))
		}},
	{"labs.negatives_since", "labs_negatives_since_timestamp", []*cel.Type{cel.TimestampType}, cel.IntType,
		"negative results at or after t",
		func(e *evaluation, a []ref.Val) ref.Val {
			t := a[0].(types.Timestamp).Time
			n := 0
			for _, l := range e.f.Labs {
				if !l.Positive && !l.At.Before(t) {
					n++
				}
			}
			return types.Int(n)
		}},
	{"labs.positives_within", "labs_positives_within_int", []*cel.Type{cel.IntType}, cel.IntType,
		"positive results in the last n days",
		func(e *evaluation, a []ref.Val) ref.Val {
			from := e.now.Add(-time.Duration(a[0].(types.Int)) * 24 * time.Hour)
			n := 0
			for _, l := range e.f.Labs {
				if l.Positive && !l.At.Before(from) && !l.At.After(e.now) {
					n++
				}
			}
			return types.Int(n)
		}},
	{"travel.risk_within", "travel_risk_within_int", []*cel.Type{cel.IntType}, cel.IntType,
		"stays in medium- or high-risk areas in the last n days",
		func(e *evaluation, a []ref.Val) ref.Val {
			from := e.now.Add(-time.Duration(a[0].(types.Int)) * 24 * time.Hour)
			n := 0
			for _, r := range e.riskyStays() {
				if !r.At.Before(from) && !r.At.After(e.now) {
					n++
				}
			}
			return types.Int(n)
		}},
	{"contacts.within", "contacts_within_int", []*cel.Type{cel.IntType}, cel.IntType,
		"close-contact flags in the last n days",
		func(e *evaluation, a []ref.Val) ref.Val {
			from := e.now.Add(-time.Duration(a[0].(types.Int)) * 24 * time.Hour)
			n := 0
			for _, c := range e.f.Contacts {
				if !c.At.Before(from) && !c.At.After(e.now) {
					n++
				}
			}
			return types.Int(n)
		}},
}

var (
	varIndex = func() map[string]int {
		m := make(map[string]int, len(variables))
		for i, v := range variables {
			m[v.name] = i
		}
		return m
	}()
	funcIndex = func() map[string]int {
		m := make(map[string]int, len(functionsTable))
		for i, f := range functionsTable {
			m[f.name] = i
		}
		return m
	}()
)

// newEnv is the CEL environment every rule is checked and planned in.
func newEnv() (*cel.Env, error) {
	opts := make([]cel.EnvOption, 0, len(variables)+len(functionsTable)+1)
	// days_since(t) < 14 compares a double with an int.
	opts = append(opts, cel.CrossTypeNumericComparisons(true))
	// Canonical() unparses expressions, macros (exists, all, ...) included.
	opts = append(opts, cel.EnableMacroCallTracking())
	for _, v := range variables {
		opts = append(opts, cel.VariableWithDoc(v.name, v.typ, v.doc))
	}
	for _, f := range functionsTable {
		opts = append(opts, cel.Function(f.name,
			cel.FunctionDocs(f.doc),
			cel.Overload(f.overload, f.args, f.result, cel.LateFunctionBinding())))
	}
	return cel.NewEnv(opts...)
}

// Vocabulary lists the variables and functions available to rule conditions,
// one "name  type  description" line each, for `hcx policy check --vars` and
// the docs.
func Vocabulary() []string {
	var out []string
	for _, v := range variables {
		out = append(out, fmt.Sprintf("%-44s %-12s %s", v.name, typeName(v.typ), v.doc))
	}
	for _, f := range functionsTable {
		args := make([]string, len(f.args))
		for i, a := range f.args {
			args[i] = typeName(a)
		}
		out = append(out, fmt.Sprintf("%-44s %-12s %s", f.name+"("+strings.Join(args, ", ")+")", typeName(f.result), f.doc))
	}
	return out
}

func typeName(t *cel.Type) string {
	switch {
	case t == recordList:
		return "list"
	case t == stringList:
		return "list(string)"
	case t == cel.TimestampType:
		return "timestamp"
	}
	return t.String()
}

// summary is the per-decision pre-computation: one pass over each slice.
type summary struct {
	labPos, labNeg, labPosPCR        int
	labLast, labLastPos, labLastNeg  time.Time
	labLatestPos                     bool
	contactLast                      time.Time
	contactIssuer                    string
	declLast, declLastSympt          time.Time
	declLastFever, declLastBoth      time.Time
	declLastSymptoms                 []string
	declLastTemp                     float64
	vaxDoses, vaxCourse              int
	vaxCompleted, vaxLast            time.Time
	travelLast, travelLastRisk       time.Time
	travelLastMedium, travelLastHigh time.Time
	travelRiskDiv                    string
	venueLast, venueLastHigh         time.Time
	orderRed, orderRedPending        bool
	orderYellow                      bool
	orderSince                       time.Time
	checkInCount                     int
	checkInLast, checkInLastSympt    time.Time

	// Built on first use.
	labList, travelListV, declListV ref.Val
	risky                           []TravelRecord
	riskyDone                       bool
}

func orNever(t time.Time) time.Time {
	if t.IsZero() {
		return never
	}
	return t
}

func later(a, b time.Time) bool { return a.After(b) }

// summarise fills s from f, in one pass per slice. Events after now are
// ignored by the summaries: a decision at time t sees the world as of t.
func (e *evaluation) summarise() {
	s := &e.s
	f := e.f
	now := e.now
	s.labLast, s.labLastPos, s.labLastNeg = never, never, never
	for _, l := range f.Labs {
		if l.At.After(now) {
			continue
		}
		if l.Positive {
			s.labPos++
			if l.Kind == "pcr" {
				s.labPosPCR++
			}
			if later(l.At, s.labLastPos) {
				s.labLastPos = l.At
			}
		} else {
			s.labNeg++
			if later(l.At, s.labLastNeg) {
				s.labLastNeg = l.At
			}
		}
		if later(l.At, s.labLast) || (l.At.Equal(s.labLast) && l.Positive) {
			s.labLast = l.At
			s.labLatestPos = l.Positive
		}
	}
	s.contactLast = never
	for _, c := range f.Contacts {
		if !c.At.After(now) && later(c.At, s.contactLast) {
			s.contactLast, s.contactIssuer = c.At, string(c.Issuer)
		}
	}
	s.declLast, s.declLastSympt, s.declLastFever, s.declLastBoth = never, never, never, never
	for _, d := range f.Declarations {
		if d.At.After(now) {
			continue
		}
		if later(d.At, s.declLast) {
			s.declLast, s.declLastSymptoms, s.declLastTemp = d.At, d.Symptoms, d.TempC
		}
		sym, fev := len(d.Symptoms) > 0, d.TempC >= FeverC
		if sym && later(d.At, s.declLastSympt) {
			s.declLastSympt = d.At
		}
		if fev && later(d.At, s.declLastFever) {
			s.declLastFever = d.At
		}
		if sym && fev && later(d.At, s.declLastBoth) {
			s.declLastBoth = d.At
		}
	}
	s.vaxCompleted, s.vaxLast = never, never
	for _, v := range f.Vaccinations {
		if v.At.After(now) {
			continue
		}
		if v.Dose > s.vaxDoses {
			s.vaxDoses = v.Dose
		}
		if later(v.At, s.vaxLast) {
			s.vaxLast = v.At
			s.vaxCourse = v.CourseDoses
		}
	}
	if s.vaxCourse > 0 {
		// The course is completed by the earliest dose numbered CourseDoses or more.
		for _, v := range f.Vaccinations {
			if v.At.After(now) || v.Dose < s.vaxCourse {
				continue
			}
			if s.vaxCompleted.Equal(never) || v.At.Before(s.vaxCompleted) {
				s.vaxCompleted = v.At
			}
		}
	}
	s.travelLast, s.travelLastRisk, s.travelLastMedium, s.travelLastHigh = never, never, never, never
	for _, t := range f.Travel {
		if t.At.After(now) {
			continue
		}
		if later(t.At, s.travelLast) {
			s.travelLast = t.At
		}
		switch riskAt(f.RiskAreas, t) {
		case "high":
			if later(t.At, s.travelLastHigh) {
				s.travelLastHigh = t.At
			}
			if later(t.At, s.travelLastRisk) {
				s.travelLastRisk, s.travelRiskDiv = t.At, string(t.Div)
			}
		case "medium":
			if later(t.At, s.travelLastMedium) {
				s.travelLastMedium = t.At
			}
			if later(t.At, s.travelLastRisk) {
				s.travelLastRisk, s.travelRiskDiv = t.At, string(t.Div)
			}
		}
	}
	s.venueLast, s.venueLastHigh = never, never
	for _, v := range f.Venues {
		if v.At.After(now) {
			continue
		}
		if later(v.At, s.venueLast) {
			s.venueLast = v.At
		}
		if v.Level == "high" && later(v.At, s.venueLastHigh) {
			s.venueLastHigh = v.At
		}
	}
	s.checkInLast, s.checkInLastSympt = never, never
	for _, c := range f.CheckIns {
		if c.At.After(now) {
			continue
		}
		s.checkInCount++
		if later(c.At, s.checkInLast) {
			s.checkInLast = c.At
		}
		if (len(c.Symptoms) > 0 || c.TempC >= FeverC) && later(c.At, s.checkInLastSympt) {
			s.checkInLastSympt = c.At
		}
	}
	s.orderSince = never
	for _, o := range f.Orders {
		if o.Lifted || o.At.After(now) {
			continue
		}
		in := false
		switch o.Colour {
		case hcx.Red:
			if o.LocalConfirmed && o.NationalConfirmed {
				s.orderRed, in = true, true
			} else if o.LocalConfirmed || o.NationalConfirmed {
				s.orderRedPending, in = true, true
			}
		case hcx.Yellow:
			if o.LocalConfirmed {
				s.orderYellow, in = true, true
			}
		}
		if in && later(o.At, s.orderSince) {
			s.orderSince = o.At
		}
	}
}

// riskAt is the highest risk level in force for t's division at t's time:
// "high", "medium" or "".
func riskAt(areas []RiskArea, t TravelRecord) string {
	level := ""
	for _, a := range areas {
		if a.From.After(t.At) || (a.To != nil && !t.At.Before(*a.To)) || !covers(a.Div, t.Div) {
			continue
		}
		switch a.Level {
		case "high":
			return "high"
		case "medium":
			level = "medium"
		}
	}
	return level
}

// Covers reports whether the risk area's division area contains div, as
// the rules read it (for the node's appeal pre-check).
func Covers(area, div hcx.DivisionCode) bool { return covers(area, div) }

// covers reports whether area contains div: a provincial code (xx0000)
// covers its province, a prefecture code (xxxx00) its prefecture.
func covers(area, div hcx.DivisionCode) bool {
	a, d := string(area), string(div)
	if len(a) != 6 || len(d) != 6 {
		return a == d
	}
	switch {
	case strings.HasSuffix(a, "0000"):
		return a[:2] == d[:2]
	case strings.HasSuffix(a, "00"):
		return a[:4] == d[:4]
	}
	return a == d
}

// checkInStreak counts the local days in a row, in the province's zone, on
// which the resident checked in at or after from (and not after now): the
// run that ends today, or yesterday when today has no check-in yet (the run
// is still alive: today's check-in continues it). today reports whether
// today has one.
func (e *evaluation) checkInStreak(from time.Time) (streak int, today bool) {
	days := make(map[int]bool, len(e.f.CheckIns))
	for _, c := range e.f.CheckIns {
		if c.At.Before(from) || c.At.After(e.now) {
			continue
		}
		days[calendarDays(c.At, e.now, e.rs.loc)] = true // 0: today, 1: yesterday
	}
	today = days[0]
	d := 0
	if !today {
		d = 1
	}
	for days[d] {
		streak++
		d++
	}
	return streak, today
}

// calendarDays counts local midnights between from and to in loc.
func calendarDays(from, to time.Time, loc *time.Location) int {
	fy, fm, fd := from.In(loc).Date()
	ty, tm, td := to.In(loc).Date()
	a := time.Date(fy, fm, fd, 12, 0, 0, 0, time.UTC)
	b := time.Date(ty, tm, td, 12, 0, 0, 0, time.UTC)
	return int(math.Round(b.Sub(a).Hours() / 24))
}

// evaluation is one Decide call: the facts, the clock, the summaries and the
// CEL activation that serves them.
type evaluation struct {
	rs  *RuleSet
	f   *Facts
	now time.Time
	s   summary
}

var _ interpreter.FunctionActivation = (*evaluation)(nil)

// ResolveName implements interpreter.Activation.
func (e *evaluation) ResolveName(name string) (any, bool) {
	i, ok := varIndex[name]
	if !ok {
		return nil, false
	}
	return variables[i].get(e), true
}

// Parent implements interpreter.Activation.
func (e *evaluation) Parent() interpreter.Activation { return nil }

// ResolveFunction implements interpreter.FunctionActivation.
func (e *evaluation) ResolveFunction(name string) (functions.LateBoundOp, bool) {
	i, ok := funcIndex[name]
	if !ok {
		return nil, false
	}
	impl := functionsTable[i].impl
	return func(_ string, args ...ref.Val) ref.Val {
		for _, a := range args {
			if types.IsUnknownOrError(a) {
				return a
			}
		}
		return impl(e, args)
	}, true
}

func (e *evaluation) labList() ref.Val {
	if e.s.labList == nil {
		labs := append([]LabResult(nil), e.f.Labs...)
		sort.SliceStable(labs, func(i, j int) bool { return labs[i].At.Before(labs[j].At) })
		out := make([]any, 0, len(labs))
		for _, l := range labs {
			if l.At.After(e.now) {
				continue
			}
			out = append(out, map[string]any{"at": l.At, "positive": l.Positive, "kind": l.Kind})
		}
		e.s.labList = types.DefaultTypeAdapter.NativeToValue(out)
	}
	return e.s.labList
}

func (e *evaluation) declList() ref.Val {
	if e.s.declListV == nil {
		ds := append([]Declaration(nil), e.f.Declarations...)
		sort.SliceStable(ds, func(i, j int) bool { return ds[i].At.Before(ds[j].At) })
		out := make([]any, 0, len(ds))
		for _, d := range ds {
			if d.At.After(e.now) {
				continue
			}
			sym := d.Symptoms
			if sym == nil {
				sym = []string{}
			}
			out = append(out, map[string]any{"at": d.At, "symptoms": sym, "temp_c": d.TempC})
		}
		e.s.declListV = types.DefaultTypeAdapter.NativeToValue(out)
	}
	return e.s.declListV
}

func (e *evaluation) travelList() ref.Val {
	if e.s.travelListV == nil {
		tr := append([]TravelRecord(nil), e.f.Travel...)
		sort.SliceStable(tr, func(i, j int) bool { return tr[i].At.Before(tr[j].At) })
		out := make([]any, 0, len(tr))
		for _, t := range tr {
			if t.At.After(e.now) {
				continue
			}
			out = append(out, map[string]any{"at": t.At, "div": string(t.Div), "risk": riskAt(e.f.RiskAreas, t)})
		}
		e.s.travelListV = types.DefaultTypeAdapter.NativeToValue(out)
	}
	return e.s.travelListV
}

func (e *evaluation) riskyStays() []TravelRecord {
	if !e.s.riskyDone {
		for _, t := range e.f.Travel {
			if riskAt(e.f.RiskAreas, t) != "" {
				e.s.risky = append(e.s.risky, t)
			}
		}
		e.s.riskyDone = true
	}
	return e.s.risky
}

// negativeTimes are the times of negative results of the given kinds, at or
// before now, oldest first.
func (e *evaluation) negativeTimes(kinds []string) []time.Time {
	out := make([]time.Time, 0, e.s.labNeg)
	for _, l := range e.f.Labs {
		if l.Positive || l.At.After(e.now) || !kindOK(kinds, l.Kind) {
			continue
		}
		out = append(out, l.At)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func kindOK(kinds []string, k string) bool {
	if len(kinds) == 0 {
		return true
	}
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Value is one variable as the rules see it at a decision, for explanations.
type Value struct {
	Name string
	Text string // "never" for a time with no such event; times in the province's zone
}

// Values lists the summary variables (not the *.all lists) for f at now, in
// the order of Vocabulary.
func (rs *RuleSet) Values(f *Facts, now time.Time) []Value {
	if f == nil {
		f = &Facts{}
	}
	e := &evaluation{rs: rs, f: f, now: now.UTC()}
	e.summarise()
	out := make([]Value, 0, len(variables))
	for _, v := range variables {
		if v.typ == recordList {
			continue
		}
		var text string
		switch x := v.get(e).(type) {
		case types.Timestamp:
			switch {
			case x.Time.Equal(never):
				text = "never"
			case v.name == "now":
				text = x.Time.In(rs.loc).Format(timeLayout + " MST")
			default:
				text = fmt.Sprintf("%s (%.1f days ago)", x.Time.In(rs.loc).Format(timeLayout+" MST"), now.Sub(x.Time).Hours()/24)
			}
		case types.String:
			text = fmt.Sprintf("%q", string(x))
		case types.Double:
			text = fmt.Sprintf("%.1f", float64(x))
		default:
			text = fmt.Sprint(x.Value())
		}
		out = append(out, Value{Name: v.name, Text: text})
	}
	return out
}
