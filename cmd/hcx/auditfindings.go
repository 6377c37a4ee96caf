package main

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/web"
	"github.com/hcxfed/hcx/witness"
)

// findingsSaveEvery is how often hcx audit --watch writes its findings
// history when only the sightings of known findings changed (a new finding
// is written at once): a crash loses at most this much of "last seen" and
// "times", and a long watch does not rewrite up to MaxHistory findings
// every pass.
const findingsSaveEvery = time.Minute

// auditFindings is the findings history of hcx audit --watch: recorded
// after every pass, kept in the auditor's store, served as GET
// /v1/findings and on the watch's pages.
type auditFindings struct {
	v   *audit.Verifier
	wit *witness.Witness
	log *slog.Logger

	mu    sync.Mutex
	h     *audit.History
	saved time.Time
}

// openAuditFindings reads the history an earlier watch kept.
func openAuditFindings(v *audit.Verifier, wit *witness.Witness, log *slog.Logger) (*auditFindings, error) {
	h, err := v.History()
	if err != nil {
		return nil, err
	}
	return &auditFindings{v: v, wit: wit, log: log, h: h, saved: time.Now()}, nil
}

// record adds a pass and saves the history when a finding is new or it
// was last saved findingsSaveEvery ago.
func (a *auditFindings) record(start time.Time, took time.Duration, rep *audit.Report, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.h.Record(start, took, rep, err) || time.Since(a.saved) >= findingsSaveEvery {
		a.saveLocked()
	}
}

// save writes the history (when the watch stops).
func (a *auditFindings) save() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.saveLocked()
}

func (a *auditFindings) saveLocked() {
	if err := a.v.SaveHistory(a.h); err != nil {
		a.log.Error("could not keep the findings history; the pages show it until a restart", "err", err)
		return
	}
	a.saved = time.Now()
}

// state is a copy of the history with at most limit findings, the witness's
// state, and how many findings the history keeps.
func (a *auditFindings) state(limit int) (web.WatchState, int) {
	a.mu.Lock()
	h := *a.h
	total := len(a.h.Findings)
	h.Findings = append(make([]audit.Sighting, 0, min(limit, total)), a.h.Findings[:min(limit, total)]...)
	h.Last.Unreachable = append([]string(nil), a.h.Last.Unreachable...)
	a.mu.Unlock()
	st := web.WatchState{History: h, Witness: web.WatchWitness{Name: a.wit.Name()}}
	s := a.wit.Stats()
	st.Witness.Cosigned, st.Witness.Conflicts = s.Cosigned, s.Conflicts
	size, _, err := a.v.WitnessStore().Latest()
	if err != nil {
		a.log.Warn("could not read the witness's state", "err", err)
	}
	st.Witness.Size = size
	return st, total
}

// serveJSON is GET /v1/findings[?limit=N]: the history, newest first, at
// most limit (1 to audit.MaxHistory, all by default) findings.
func (a *auditFindings) serveJSON(w http.ResponseWriter, r *http.Request) {
	limit := audit.MaxHistory
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > audit.MaxHistory {
			api.WriteError(w, a.log, hcx.Invalidf("limit", "limit %q: want 1 to %d findings", q, audit.MaxHistory))
			return
		}
		limit = n
	}
	st, total := a.state(limit)
	api.WriteJSON(w, http.StatusOK, findingsAnswer{History: st.History, Total: total, Witness: st.Witness})
}

// findingsAnswer is GET /v1/findings's answer.
type findingsAnswer struct {
	audit.History
	// Total is how many distinct findings are kept (Findings may be
	// fewer under limit).
	Total   int              `json:"total"`
	Witness web.WatchWitness `json:"witness"`
}
