package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// The province's check statistics (issue 12 item 5, docs/decisions.md
// "Issue 12: province statistics — the route"): counts only, no subject,
// for this province's operators and the national roles.
func (h *nodeHandler) statsRules() []Rule {
	readers := []Grant{
		{Role: auth.RoleOperator, Scope: ScopeProvince},
		{Role: auth.RoleAuditor, Scope: ScopeAny},
		{Role: auth.RoleNational, Scope: ScopeAny},
	}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/stats/checks", Query: []string{"from", "to", "by", "group"}, Priority: PriorityOperator, Allow: readers, Handler: h.checkStats},
	}
}

// Bounds of a statistics query, in days of the province's zone, both ends
// included.
const (
	MaxStatsDays      = 400 // by=day
	MaxStatsHourDays  = 7   // by=hour
	statsDateLayout   = "2006-01-02"
	defaultStatsBy    = "day"
	defaultStatsGroup = node.StatColour
)

// CheckStatsAnswer is the answer of GET /v1/stats/checks.
type CheckStatsAnswer struct {
	Zone    string         `json:"zone"`
	From    string         `json:"from"`
	To      string         `json:"to"`
	By      string         `json:"by"`
	Group   string         `json:"group"`
	Buckets []node.StatRow `json:"buckets"`
	// SavedAt is when the newest counts were saved (null: none since the
	// node started); counts are saved every BehindSeconds, so checks of the
	// last BehindSeconds may not show yet.
	SavedAt       *time.Time `json:"saved_at"`
	BehindSeconds int        `json:"behind_seconds"`
}

func (h *nodeHandler) checkStats(w http.ResponseWriter, r *http.Request) {
	a, err := h.statsQuery(r)
	if err == nil {
		a.Buckets, err = h.n.CheckStats(a.start, a.end, a.step, a.loc, a.Group)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	a.BehindSeconds = int(node.StatsFlushInterval / time.Second)
	if saved := h.n.StatsSaved(); !saved.IsZero() {
		a.SavedAt = &saved
	}
	WriteJSON(w, http.StatusOK, a.CheckStatsAnswer)
}

type statsQuery struct {
	CheckStatsAnswer
	start, end time.Time
	step       time.Duration
	loc        *time.Location
}

// statsQuery reads and bounds the query: days in the province's zone, to
// included.
func (h *nodeHandler) statsQuery(r *http.Request) (*statsQuery, error) {
	q, err := queryParams(r, "from", "to", "by", "group")
	if err != nil {
		return nil, err
	}
	s := &statsQuery{loc: h.n.Zone()}
	s.Zone = s.loc.String()
	s.By, s.Group = defaultStatsBy, defaultStatsGroup
	if v, ok := q["by"]; ok {
		s.By = v
	}
	limit := MaxStatsDays
	switch s.By {
	case "day":
		s.step = 24 * time.Hour
	case "hour":
		s.step, limit = time.Hour, MaxStatsHourDays
	default:
		return nil, hcx.Invalidf("by", "%q: want hour or day", clip(s.By))
	}
	if v, ok := q["group"]; ok {
		s.Group = v
	}
	if !slices.Contains(node.StatGroups, s.Group) {
		return nil, hcx.Invalidf("group", "%q: want one of %s", clip(s.Group), strings.Join(node.StatGroups, ", "))
	}
	from, err := statsDate(q, "from", s.loc)
	if err != nil {
		return nil, err
	}
	to, err := statsDate(q, "to", s.loc)
	if err != nil {
		return nil, err
	}
	if to.Before(from) {
		return nil, hcx.Invalidf("to", "%s is before from %s: give to on or after from", q["to"], q["from"])
	}
	end := to.AddDate(0, 0, 1)
	if end.After(from.AddDate(0, 0, limit)) {
		return nil, hcx.Invalidf("to", "from %s to %s is more than %d days by %s: ask for at most %d days", q["from"], q["to"], limit, s.By, limit)
	}
	s.From, s.To, s.start, s.end = q["from"], q["to"], from, end
	return s, nil
}

// statsDate reads the required date field as midnight in loc.
func statsDate(q map[string]string, field string, loc *time.Location) (time.Time, error) {
	v, ok := q[field]
	if !ok {
		return time.Time{}, hcx.Invalidf(field, "missing: give a date as YYYY-MM-DD, in the province's zone (%s)", loc)
	}
	t, err := time.ParseInLocation(statsDateLayout, v, loc)
	if err != nil {
		return time.Time{}, hcx.Invalidf(field, "%q: want a date as YYYY-MM-DD", clip(v))
	}
	return t, nil
}
