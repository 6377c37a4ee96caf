package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// Risk areas (docs/decisions.md, "Issue 10: travel and risk areas";
// docs/protocol.md §3, 1.3).
//
// Every node keeps one set of the risk areas of every province: its own
// operators' designations, applied at once, and every province's risk-area
// envelopes read from the hub's log. An area is keyed by (iss, div, from); a
// later envelope (larger at) with the same key replaces its level and to,
// an earlier one changes nothing. The set is stored (risk/...), rebuilt at
// start, and held in memory for riskAreasFor, which every decision calls.
//
// A designation that arrives (or changes) leaves a job, riskredo/..., in the
// same commit; riskLoop decides again every resident the stay index shows in
// the area during its window, so their colour changes within seconds.
const (
	pRisk     = "risk/"     // risk/<iss>/<div>/<from, 20 digits> -> riskEntry
	pRiskRedo = "riskredo/" // riskredo/<iss>/<div>/<from>/<unix nanos> -> RiskArea: residents to decide again
	pRiskPub  = "riskpub/"  // riskpub/<unix nanos, 20 digits> -> pendingRiskPub
)

// MaxRiskAreasListed bounds the answer of RiskAreas.
const MaxRiskAreasListed = 10000

// RiskArea is a designation as a node holds it: its key (Iss, Div, From),
// its level and end, and the at of the envelope that last set it.
type RiskArea struct {
	Iss   hcx.ProvinceCode `json:"iss"`
	Div   hcx.DivisionCode `json:"div"`
	Name  string           `json:"name"`
	Level string           `json:"level"`
	From  time.Time        `json:"from"`
	To    *time.Time       `json:"to"`
	At    int64            `json:"at"` // the envelope's at: the later wins
}

func (a *RiskArea) suffix() string {
	return fmt.Sprintf("%s/%s/%020d", a.Iss, a.Div, a.From.Unix())
}

func (a *RiskArea) policy() policy.RiskArea {
	return policy.RiskArea{Div: a.Div, Level: a.Level, From: a.From, To: a.To, Issuer: a.Iss}
}

// InForce reports whether the area is designated at t.
func (a *RiskArea) InForce(t time.Time) bool {
	return !a.From.After(t) && (a.To == nil || t.Before(*a.To))
}

func riskAreaOf(iss hcx.ProvinceCode, at int64, e exchange.RiskArea) RiskArea {
	a := RiskArea{Iss: iss, Div: e.Div, Name: e.Div.Name(), Level: e.Level, From: time.Unix(e.From, 0).UTC(), At: at}
	if e.To != nil {
		to := time.Unix(*e.To, 0).UTC()
		a.To = &to
	}
	return a
}

func (a *RiskArea) exchange() exchange.RiskArea {
	e := exchange.RiskArea{Div: a.Div, Level: a.Level, From: a.From.Unix()}
	if a.To != nil {
		to := a.To.Unix()
		e.To = &to
	}
	return e
}

// riskSet is the node's risk areas in memory, immutable once built:
// byDiv holds the areas of each designated division, for the decisions.
type riskSet struct {
	all   map[string]RiskArea // by suffix
	byDiv map[hcx.DivisionCode][]policy.RiskArea
}

func newRiskSet(all map[string]RiskArea) *riskSet {
	s := &riskSet{all: all, byDiv: make(map[hcx.DivisionCode][]policy.RiskArea)}
	for _, a := range all {
		s.byDiv[a.Div] = append(s.byDiv[a.Div], a.policy())
	}
	return s
}

type riskSetPtr = atomic.Pointer[riskSet]

// riskState is the node's part for risk areas (a field of Node).
type riskState struct {
	mu   sync.Mutex // one change of the set at a time
	set  riskSetPtr
	redo chan struct{} // poked when a job is stored
}

// newer reports whether a (from an envelope) replaces what the set holds
// under its key.
func (s *riskSet) newer(a RiskArea) bool {
	cur, ok := s.all[a.suffix()]
	return !ok || a.At >= cur.At
}

// with is s with the areas set.
func (s *riskSet) with(areas []RiskArea) *riskSet {
	all := make(map[string]RiskArea, len(s.all)+len(areas))
	for k, v := range s.all {
		all[k] = v
	}
	for _, a := range areas {
		all[a.suffix()] = a
	}
	return newRiskSet(all)
}

// loadRiskSet reads the stored set (at start, and after the follower
// applied risk-area envelopes).
func (n *Node) loadRiskSet() error {
	n.risk.mu.Lock()
	defer n.risk.mu.Unlock()
	all := make(map[string]RiskArea)
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pRisk), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a RiskArea
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &a) }); err != nil {
				return fmt.Errorf("risk area %s: %w", it.Item().Key(), err)
			}
			all[a.suffix()] = a
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.risk.set.Store(newRiskSet(all))
	return nil
}

func (n *Node) riskSet() *riskSet {
	if s := n.risk.set.Load(); s != nil {
		return s
	}
	return newRiskSet(nil)
}

// riskAreasFor is the risk areas, designated by any province, that the
// rules must see to decide a resident with facts f: those that cover a
// division f's stays were in (issue 10, risk areas). It allocates nothing
// when no area covers a stay.
func (n *Node) riskAreasFor(f *policy.Facts) []policy.RiskArea {
	s := n.risk.set.Load()
	if s == nil || len(s.byDiv) == 0 || len(f.Travel) == 0 {
		return nil
	}
	var out []policy.RiskArea
	for i := range f.Travel {
		div := f.Travel[i].Div
		if seenDiv(f.Travel[:i], div) {
			continue
		}
		d := string(div)
		if len(d) != 6 {
			continue
		}
		// The county, its prefecture and its province, each once.
		out = append(out, s.byDiv[div]...)
		if pref := hcx.DivisionCode(d[:4] + "00"); pref != div {
			out = append(out, s.byDiv[pref]...)
		}
		if prov := hcx.DivisionCode(d[:2] + "0000"); prov != div && d[:4]+"00" != d[:2]+"0000" {
			out = append(out, s.byDiv[prov]...)
		}
	}
	return out
}

func seenDiv(ts []policy.TravelRecord, div hcx.DivisionCode) bool {
	for i := range ts {
		if ts[i].Div == div {
			return true
		}
	}
	return false
}

// Audit actions of risk areas.
const (
	ActionRiskDesignate = "riskarea.designate"
	ActionRiskEnd       = "riskarea.end"
)

// pendingRiskPub is a signed risk-area envelope not yet acknowledged by the
// hub, stored with the designation, before the first submission.
type pendingRiskPub struct {
	JWS   string              `json:"jws"`
	Areas []exchange.RiskArea `json:"areas"`
}

// RiskAreaInput is an operator's designation of one area.
type RiskAreaInput struct {
	Div   hcx.DivisionCode `json:"div"`
	Level string           `json:"level"`
	From  time.Time        `json:"from"`
	To    *time.Time       `json:"to,omitempty"`
}

// maxRiskFromAhead is how far ahead a designation may start.
const maxRiskFromAhead = 30 * 24 * time.Hour

// DesignateRiskAreas designates (or, for a key (div, from) designated
// before, changes the level and end of) this province's risk areas: stored,
// in force at this node at once, signed into a risk-area envelope that the
// publisher submits to the hub until it is acknowledged, and the residents
// who stayed in them decided again. A wrong field writes nothing.
func (n *Node) DesignateRiskAreas(ctx context.Context, in []RiskAreaInput) ([]RiskArea, error) {
	entry, err := callerEntry(ctx, ActionRiskDesignate, "")
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	env := exchange.RiskAreas{Typ: exchange.TypRiskAreas, Iss: n.cfg.Province, At: now.Unix()}
	for i, a := range in {
		f := fmt.Sprintf("areas[%d].", i)
		if a.From.IsZero() {
			return nil, hcx.Invalidf(f+"from", "from is required (RFC 3339): when the area becomes risky")
		}
		if err := checkTime(f+"from", a.From, now.Add(-5*time.Minute+maxRiskFromAhead)); err != nil {
			return nil, hcx.Invalidf(f+"from", "from %s must be within the last year and at most 30 days ahead", a.From.UTC().Format(time.RFC3339))
		}
		e := exchange.RiskArea{Div: a.Div, Level: a.Level, From: a.From.Unix()}
		if a.To != nil {
			to := a.To.Unix()
			e.To = &to
		}
		env.Areas = append(env.Areas, e)
	}
	if err := env.Validate(); err != nil {
		return nil, err
	}
	if err := uniqueKeys(env.Areas); err != nil {
		return nil, err
	}
	return n.publishRiskAreas(ctx, entry, &env)
}

func uniqueKeys(areas []exchange.RiskArea) error {
	seen := make(map[string]bool, len(areas))
	for i, a := range areas {
		k := fmt.Sprintf("%s/%d", a.Div, a.From)
		if seen[k] {
			return hcx.Invalidf(fmt.Sprintf("areas[%d]", i), "area %s from %d is listed twice", a.Div, a.From)
		}
		seen[k] = true
	}
	return nil
}

// EndRiskArea ends this province's designation of div from from at to (the
// node's clock when zero): a designation with the same key and level, and
// to set.
func (n *Node) EndRiskArea(ctx context.Context, div hcx.DivisionCode, from, to time.Time) (*RiskArea, error) {
	entry, err := callerEntry(ctx, ActionRiskEnd, "")
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	if to.IsZero() {
		to = now
	}
	key := RiskArea{Iss: n.cfg.Province, Div: div, From: from.UTC()}
	cur, ok := n.riskSet().all[key.suffix()]
	if !ok {
		return nil, &hcx.Error{Class: hcx.ENotFound, Code: "unknown_risk_area", Field: "div",
			Message: fmt.Sprintf("%s has no risk area %s from %s; GET /v1/risk-areas lists them", n.cfg.Province, div, from.UTC().Format(time.RFC3339))}
	}
	if !to.After(cur.From) {
		return nil, hcx.Invalidf("to", "to %s is not after the area's from %s", to.UTC().Format(time.RFC3339), cur.From.Format(time.RFC3339))
	}
	if err := checkTime("to", to, now.Add(maxRiskFromAhead)); err != nil {
		return nil, err
	}
	cur.To = &to
	env := exchange.RiskAreas{Typ: exchange.TypRiskAreas, Iss: n.cfg.Province, At: now.Unix(), Areas: []exchange.RiskArea{cur.exchange()}}
	if err := env.Validate(); err != nil {
		return nil, err
	}
	out, err := n.publishRiskAreas(ctx, entry, &env)
	if err != nil {
		return nil, err
	}
	return &out[0], nil
}

// publishRiskAreas signs env and stores, in one synced commit with the
// audit entry, the pending envelope, the areas and their re-decision jobs;
// then the set in memory takes them.
func (n *Node) publishRiskAreas(ctx context.Context, entry *AuditEntry, env *exchange.RiskAreas) ([]RiskArea, error) {
	jws, err := exchange.SealRiskAreas(n.cfg.Signer, env)
	if err != nil {
		return nil, err
	}
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	n.risk.mu.Lock()
	defer n.risk.mu.Unlock()
	areas := make([]RiskArea, len(env.Areas))
	divs := make([]string, len(env.Areas))
	for i, e := range env.Areas {
		areas[i] = riskAreaOf(env.Iss, env.At, e)
		divs[i] = string(e.Div)
	}
	w := &write{}
	entry.Note = "risk areas " + strings.Join(divs, ",")
	w.record(entry)
	pub := pendingRiskPub{JWS: jws, Areas: env.Areas}
	if err := w.setJSON(fmt.Sprintf("%s%020d", pRiskPub, time.Now().UnixNano()), &pub); err != nil {
		return nil, err
	}
	for i := range areas {
		if err := w.setJSON(pRisk+areas[i].suffix(), &areas[i]); err != nil {
			return nil, err
		}
		if err := w.setJSON(redoKey(&areas[i]), &areas[i]); err != nil {
			return nil, err
		}
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	n.risk.set.Store(n.riskSet().with(areas))
	n.pokeRisk()
	n.pokePublisher()
	return areas, nil
}

// RiskAreas lists the risk areas this node knows, of every province (iss
// empty) or of one, only those in force at the node's clock when inForce;
// ordered by province, division and from.
func (n *Node) RiskAreas(iss hcx.ProvinceCode, inForce bool) []RiskArea {
	now := n.cfg.Now()
	out := []RiskArea{}
	for _, a := range n.riskSet().all {
		if (iss != "" && a.Iss != iss) || (inForce && !a.InForce(now)) {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b RiskArea) int { return strings.Compare(a.suffix(), b.suffix()) })
	if len(out) > MaxRiskAreasListed {
		out = out[:MaxRiskAreasListed]
	}
	return out
}

// applyRiskAreas folds a risk-area envelope from the log into the stored
// set, in the follower's transaction: areas whose key holds an area from a
// later envelope are left alone; the others are stored with a job to decide
// their residents again. It reports whether anything changed.
func (n *Node) applyRiskAreas(w *followTxn, env *exchange.Envelope) (bool, error) {
	r, err := exchange.DecodeRiskAreas(env)
	if err != nil {
		return false, err
	}
	changed := false
	for _, e := range r.Areas {
		a := riskAreaOf(r.Iss, r.At, e)
		var cur RiskArea
		found, err := getJSON(w.txn, pRisk+a.suffix(), &cur)
		if err != nil {
			return changed, stored(err)
		}
		if found && (cur.At > a.At || (cur.At == a.At && sameEnd(cur.To, a.To) && cur.Level == a.Level)) {
			continue
		}
		val, err := jsonMarshal(&a)
		if err != nil {
			return changed, stored(err)
		}
		if err := w.set([]byte(pRisk+a.suffix()), val); err != nil {
			return changed, stored(err)
		}
		if err := w.set([]byte(redoKey(&a)), val); err != nil {
			return changed, stored(err)
		}
		changed = true
	}
	return changed, nil
}

// redoKey is a new job's key: each change of an area is a job of its own,
// so that a job that ends never removes a later one for the same area.
func redoKey(a *RiskArea) string {
	return fmt.Sprintf("%s%s/%020d", pRiskRedo, a.suffix(), time.Now().UnixNano())
}

func sameEnd(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func (n *Node) pokeRisk() {
	select {
	case n.risk.redo <- struct{}{}:
	default:
	}
}

// riskLoop runs the re-decision jobs of new designations: at start, when
// poked, and every DueTick (a job that failed is tried again).
func (n *Node) riskLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.DueTick)
	defer tick.Stop()
	for {
		if _, err := n.RunRiskJobs(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("re-deciding the residents of new risk areas failed; will retry", "err", err)
		}
		if _, err := n.PruneRiskAreas(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("dropping risk areas that ended more than 60 days ago failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.risk.redo:
		case <-tick.C:
		}
	}
}

// RunRiskJobs decides again, under the rules in force, the residents who
// stayed inside each newly designated or changed area during its window,
// and removes each job when its residents are decided. It returns how many
// residents it decided. riskLoop calls it; tests may too.
func (n *Node) RunRiskJobs(ctx context.Context) (int, error) {
	var jobs []RiskArea
	var keys [][]byte
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pRiskRedo), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(jobs) < 64; it.Next() {
			var a RiskArea
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &a) }); err != nil {
				return err
			}
			jobs = append(jobs, a)
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// A job is stored before the set in memory takes its area (the
	// follower commits, then reloads): decide with the set as stored.
	for _, a := range jobs {
		if cur, ok := n.riskSet().all[a.suffix()]; !ok || cur.At < a.At {
			if err := n.loadRiskSet(); err != nil {
				return 0, err
			}
			break
		}
	}
	total, attested := 0, 0
	for i, a := range jobs {
		now := n.cfg.Now().UTC()
		// Without the end: a designation ended or shortened takes its colour
		// away from those who stayed after the new end, who must be decided
		// again too.
		var start []byte
		for {
			subs, next, err := n.staysIn(a.Div, a.From, now, start, dueBatch)
			if err != nil {
				return total, err
			}
			var done [][]byte
			if next == nil {
				done = keys[i : i+1] // the job ends with its last chunk
			}
			if len(subs) == 0 {
				// Nobody (more) stayed there: done without deciding anyone.
				if err := n.write(&write{system: "riskarea", dels: done}); err != nil {
					return total, err
				}
				break
			}
			got, err := n.redecideChunk(ctx, subs, done, n.rules.Load(), now)
			if err != nil {
				return total, err
			}
			total += len(subs)
			attested += got
			if next == nil {
				break
			}
			start = next
		}
	}
	if attested > 0 {
		n.pokePublisher()
	}
	if total > 0 {
		n.log.Info("residents of new risk areas decided again", "areas", len(jobs), "residents", total, "attestations", attested)
	}
	return total, nil
}

// publishPendingRiskAreas submits the stored risk-area envelopes in order,
// each removed once the hub acknowledges it. An envelope whose at the hub
// refuses (clock_skew, after a long outage) is signed again with the clock
// as it is now: same areas, a later at, which wins over the first anyway.
func (n *Node) publishPendingRiskAreas(ctx context.Context) error {
	return publishOutbox(ctx, n, pRiskPub, "riskarea", "risk areas", func(p *pendingRiskPub) {
		n.log.Info("risk areas published", "areas", len(p.Areas))
	})
}

func (p *pendingRiskPub) envelope() string { return p.JWS }
func (p *pendingRiskPub) resign(n *Node, at int64) (err error) {
	p.JWS, err = exchange.SealRiskAreas(n.cfg.Signer, &exchange.RiskAreas{Iss: n.cfg.Province, At: at, Areas: p.Areas})
	return err
}

// PendingRiskAreas is how many risk-area envelopes wait for the hub.
func (n *Node) PendingRiskAreas() int { return n.countPrefix(pRiskPub) }

// riskMetrics registers the risk-area gauges: areas known (of every
// province) and envelopes waiting for the hub (a number that stays above 0
// means the province's designations are not reaching the others).
func (n *Node) riskMetrics(s metricSet) {
	s.gauge("hcx_node_risk_areas", "Risk areas this node knows, of every province.", func() float64 { return float64(len(n.riskSet().all)) })
	s.gauge("hcx_node_risk_envelopes_pending", "Risk-area envelopes signed and not yet acknowledged by the hub.", func() float64 { return float64(n.PendingRiskAreas()) })
}

// PruneRiskAreas drops the areas that ended more than TrajectoryRetention
// ago at the node's clock: no stay the node keeps can fall in them, so the
// set stays bounded by the areas of the last 60 days and those in force.
// It returns how many it dropped.
func (n *Node) PruneRiskAreas(ctx context.Context) (int, error) {
	cut := n.cfg.Now().Add(-TrajectoryRetention)
	s := n.riskSet()
	stale := 0
	for _, a := range s.all {
		if a.To != nil && a.To.Before(cut) {
			stale++
		}
	}
	if stale == 0 {
		return 0, nil
	}
	release, err := n.admitBackground(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	n.risk.mu.Lock()
	defer n.risk.mu.Unlock()
	keep := make(map[string]RiskArea, len(n.riskSet().all))
	w := &write{system: "riskarea"}
	for k, a := range n.riskSet().all {
		if a.To != nil && a.To.Before(cut) {
			w.del([]byte(pRisk + k))
			continue
		}
		keep[k] = a
	}
	if err := n.write(w); err != nil {
		return 0, err
	}
	n.risk.set.Store(newRiskSet(keep))
	return len(w.dels), nil
}
