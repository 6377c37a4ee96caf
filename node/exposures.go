package node

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// Venue exposures (issue 11, item 3; docs/decisions.md "Issue 11:
// exposures"; docs/protocol.md §3, 1.4).
//
// An operator marks a venue of their province and a time window as an
// exposure site. The marking is stored with its audit entry, a signed
// exposure envelope in an outbox and a matching job, in one synced commit;
// the publisher submits the envelope to the hub until it is acknowledged,
// and every node's follower (the marking node's own too: idempotent)
// stores the exposure with a matching job. The hub and the other nodes see
// a venue and a window, never a person.
//
// A matching job reads the node's venue index (scans.go) for the window in
// chunks and gives every resident of this node who scanned there one
// policy.VenueExposure per exposure, at their latest scan inside the window;
// their own province's rules then decide their colour. A withdrawal removes
// those entries and decides again. A job keeps its cursor in the commit of
// each chunk, so a restart resumes it; replaying a chunk changes nothing.
const (
	pExpo    = "expo/"    // expo/<iss>/<vid, escaped>/<from, 20 digits>/<to, 20 digits> -> Exposure
	pExpoJob = "expojob/" // expojob/<unix nanos, 20 digits>/<seq>  -> exposureJob
	pExpoPub = "expopub/" // expopub/<unix nanos, 20 digits>         -> pendingExposurePub
)

// Bounds of exposures.
const (
	// MaxExposuresListed bounds the answer of Exposures.
	MaxExposuresListed = 10000
	// maxVenueExposures bounds a resident's venue exposures, the oldest
	// dropped first.
	maxVenueExposures = 32
	// exposureSkew is how far ahead of the node's clock a window may end.
	exposureSkew = time.Minute
	// exposureChunk is how many scans one commit of a matching job reads.
	exposureChunk = 2048
)

// Audit actions of exposures.
const (
	ActionExposureMark     = "exposure.mark"
	ActionExposureWithdraw = "exposure.withdraw"
)

// Exposure is an exposure as a node holds it: its key (Iss, Vid, From, To),
// the venue's division, the level, whether it was withdrawn, and the at of
// the envelope that last set it (the later wins).
type Exposure struct {
	Iss       hcx.ProvinceCode `json:"iss"`
	Vid       string           `json:"vid"`
	Div       hcx.DivisionCode `json:"div"`
	Level     string           `json:"level"`
	From      time.Time        `json:"from"`
	To        time.Time        `json:"to"`
	Withdrawn bool             `json:"withdrawn,omitempty"`
	At        int64            `json:"at"`
}

// expires is when badger drops the stored exposure: TrajectoryRetention
// after its window ends, when no scan it could match is left. So the
// exposures a node holds stay bounded by those of the last 60 days (plus
// the 14-day window), whichever province marked them.
func (x *Exposure) expires() time.Time { return x.To.Add(TrajectoryRetention) }

// setExpires is set, for a key that badger drops at the given time.
func (w *followTxn) setExpires(key, val []byte, at time.Time) error {
	e := func() *badger.Entry {
		e := badger.NewEntry(key, val)
		e.ExpiresAt = uint64(max(at.Unix(), 1))
		return e
	}
	err := w.txn.SetEntry(e())
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err := w.commit(); err != nil {
			return err
		}
		err = w.txn.SetEntry(e())
	}
	return err
}

// ID is the exposure's key, as residents' histories name it.
func (x *Exposure) ID() string {
	return fmt.Sprintf("%s/%s/%020d/%020d", x.Iss, url.PathEscape(x.Vid), x.From.Unix(), x.To.Unix())
}

func exposureOf(iss hcx.ProvinceCode, at int64, e exchange.Exposure) Exposure {
	return Exposure{Iss: iss, Vid: e.Vid, Div: e.Div, Level: e.Level, From: time.Unix(e.From, 0).UTC(),
		To: time.Unix(e.To, 0).UTC(), Withdrawn: e.Withdrawn, At: at}
}

func (x *Exposure) exchange() exchange.Exposure {
	return exchange.Exposure{Vid: x.Vid, Div: x.Div, Level: x.Level, From: x.From.Unix(), To: x.To.Unix(), Withdrawn: x.Withdrawn}
}

// supersedes reports whether x (from an envelope) replaces cur, held
// under the same key: a later at wins; at the same at, a withdrawal wins
// and the same content changes nothing.
func (x *Exposure) supersedes(cur *Exposure) bool {
	if x.At != cur.At {
		return x.At > cur.At
	}
	if cur.Withdrawn {
		return false
	}
	return x.Withdrawn || x.Level != cur.Level || x.Div != cur.Div
}

// exposureJob is a matching job: the exposure as it was set, and the
// cursor of the venue index (venueScans) where the next chunk starts.
type exposureJob struct {
	Exp    Exposure `json:"exp"`
	Cursor string   `json:"cursor,omitempty"`
}

// pendingExposurePub is a signed exposure envelope not yet acknowledged by
// the hub.
type pendingExposurePub struct {
	JWS  string              `json:"jws"`
	Exps []exchange.Exposure `json:"exps"`
}

// ExposureInput is an operator's marking (or withdrawal: Level unused) of
// one venue-window.
type ExposureInput struct {
	Vid   string    `json:"vid"`
	Level string    `json:"level,omitempty"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
}

var expoSeq atomic.Uint64

func exposureJobKey() string {
	return fmt.Sprintf("%s%020d/%010d", pExpoJob, time.Now().UnixNano(), expoSeq.Add(1)%1e10)
}

func (n *Node) pokeExposures() {
	select {
	case n.expoRedo <- struct{}{}:
	default:
	}
}

// checkWindow checks an operator's window at now, naming the field.
func checkWindow(in *ExposureInput, now time.Time) error {
	if in.From.IsZero() {
		return hcx.Invalidf("from", "required (RFC 3339): when the exposure began")
	}
	if in.To.IsZero() {
		return hcx.Invalidf("to", "required (RFC 3339): when the exposure ended")
	}
	if in.To.After(now.Add(exposureSkew)) {
		return hcx.Invalidf("to", "the window ends at %s, in the future (the node's clock says %s): mark an exposure once its window has passed",
			in.To.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if !in.To.After(in.From) {
		return hcx.Invalidf("to", "the window ends at %s, not after it begins (from %s)", in.To.UTC().Format(time.RFC3339), in.From.UTC().Format(time.RFC3339))
	}
	if in.To.Sub(in.From) > exchange.MaxExposureWindow {
		return hcx.Invalidf("to", "the window from %s to %s is longer than %s (the longest incubation period traced back)",
			in.From.UTC().Format(time.RFC3339), in.To.UTC().Format(time.RFC3339), exchange.MaxExposureWindow)
	}
	if in.From.Before(now.Add(-TrajectoryRetention)) {
		return hcx.Invalidf("from", "the window begins at %s, more than %s ago: no scans are kept that long", in.From.UTC().Format(time.RFC3339), TrajectoryRetention)
	}
	return nil
}

// MarkExposure marks venue in.Vid of this province as an exposure site of
// in.Level for [in.From, in.To): stored, signed into an exposure envelope
// for the hub, and matched against this node's scans at once. The venue
// must have passed review; a retired venue may be marked for a window that
// ended before it was retired. A wrong field writes nothing.
func (n *Node) MarkExposure(ctx context.Context, in ExposureInput) (*Exposure, error) {
	entry, err := callerEntry(ctx, ActionExposureMark, "")
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	// The envelope carries Unix seconds.
	in.From, in.To = in.From.Truncate(time.Second), in.To.Truncate(time.Second)
	if in.Vid == "" {
		return nil, hcx.Invalidf("vid", "required: the venue's id, as its code and GET /v1/venues name it")
	}
	if !exchange.ValidExposureLevel(in.Level) {
		return nil, hcx.Invalidf("level", "level %q is not an exposure level; want high, medium or low", in.Level)
	}
	if err := checkWindow(&in, now); err != nil {
		return nil, err
	}
	var v *Venue
	if err := n.db.View(func(txn *badger.Txn) (err error) { v, err = n.loadVenue(txn, in.Vid); return err }); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, errUnknownVenue(in.Vid)
	}
	switch {
	case v.State == VenuePassed:
	case v.State == VenueRetired && v.Retired != nil && !in.To.After(v.Retired.At):
	case v.State == VenueRetired:
		return nil, &hcx.Error{Class: hcx.EConflict, Code: "venue_retired", Field: "vid",
			Message: fmt.Sprintf("venue %s was retired at %s: mark only a window that ended before", v.ID, v.Retired.At.Format(time.RFC3339))}
	default:
		return nil, &hcx.Error{Class: hcx.EConflict, Code: "venue_not_passed", Field: "vid",
			Message: fmt.Sprintf("venue %s is %s: only a venue that passed review has a code anyone scanned", v.ID, v.State)}
	}
	x := Exposure{Iss: n.cfg.Province, Vid: v.ID, Div: v.Division, Level: in.Level, From: in.From.UTC(), To: in.To.UTC()}
	entry.Note = "exposure " + x.ID()
	return n.publishExposure(ctx, entry, x, now)
}

// WithdrawExposure takes back this province's exposure of venue vid for
// [from, to). Withdrawing a withdrawn exposure writes nothing and answers
// it as it is.
func (n *Node) WithdrawExposure(ctx context.Context, in ExposureInput) (*Exposure, error) {
	entry, err := callerEntry(ctx, ActionExposureWithdraw, "")
	if err != nil {
		return nil, err
	}
	if in.Vid == "" {
		return nil, hcx.Invalidf("vid", "required: the venue's id, as it was marked")
	}
	if in.From.IsZero() || in.To.IsZero() {
		return nil, hcx.Invalidf("from", "from and to are required (RFC 3339): the window as it was marked")
	}
	key := Exposure{Iss: n.cfg.Province, Vid: in.Vid, From: in.From.Truncate(time.Second).UTC(), To: in.To.Truncate(time.Second).UTC()}
	var cur Exposure
	var found bool
	if err := n.db.View(func(txn *badger.Txn) (err error) {
		found, err = getJSON(txn, pExpo+key.ID(), &cur)
		return err
	}); err != nil {
		return nil, err
	}
	if !found {
		return nil, &hcx.Error{Class: hcx.ENotFound, Code: "unknown_exposure", Field: "vid",
			Message: fmt.Sprintf("%s marked no exposure of venue %s from %s to %s; GET /v1/exposures lists them", n.cfg.Province,
				clipText(in.Vid, exchange.MaxVenueID), key.From.Format(time.RFC3339), key.To.Format(time.RFC3339))}
	}
	if cur.Withdrawn {
		return &cur, nil
	}
	cur.Withdrawn = true
	entry.Note = "exposure " + cur.ID()
	return n.publishExposure(ctx, entry, cur, n.cfg.Now().UTC())
}

// publishExposure signs x into an envelope and stores, in one synced commit
// with the audit entry, the pending envelope, the exposure and its matching
// job. Its at is later than that of the envelope that set the key before,
// so that the follower, applying both in any order, keeps this one.
func (n *Node) publishExposure(ctx context.Context, entry *AuditEntry, x Exposure, now time.Time) (*Exposure, error) {
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	n.expoMu.Lock()
	defer n.expoMu.Unlock()
	x.At = now.Unix()
	var cur Exposure
	var found bool
	if err := n.db.View(func(txn *badger.Txn) (err error) {
		found, err = getJSON(txn, pExpo+x.ID(), &cur)
		return err
	}); err != nil {
		return nil, err
	}
	if found && cur.At >= x.At {
		x.At = cur.At + 1
	}
	env := exchange.Exposures{Typ: exchange.TypExposures, Iss: n.cfg.Province, At: x.At, Exps: []exchange.Exposure{x.exchange()}}
	jws, err := exchange.SealExposures(n.cfg.Signer, &env)
	if err != nil {
		return nil, err
	}
	w := &write{}
	w.record(entry)
	if err := w.setJSON(fmt.Sprintf("%s%020d", pExpoPub, time.Now().UnixNano()), &pendingExposurePub{JWS: jws, Exps: env.Exps}); err != nil {
		return nil, err
	}
	val, err := jsonMarshal(&x)
	if err != nil {
		return nil, err
	}
	w.setExpires(pExpo+x.ID(), val, x.expires())
	if err := w.setJSON(exposureJobKey(), &exposureJob{Exp: x}); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	n.pokeExposures()
	n.pokePublisher()
	return &x, nil
}

// Exposures lists the exposures this node knows, of every province (iss
// empty) or of one, withdrawn ones included, ordered by key; at most
// MaxExposuresListed.
func (n *Node) Exposures(ctx context.Context, iss hcx.ProvinceCode) ([]Exposure, error) {
	prefix := pExpo
	if iss != "" {
		if err := iss.Validate(); err != nil {
			return nil, hcx.Invalidf("iss", "%v", err)
		}
		prefix += string(iss) + "/"
	}
	out := []Exposure{}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < MaxExposuresListed; it.Next() {
			var x Exposure
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &x) }); err != nil {
				return fmt.Errorf("exposure %s: %w", it.Item().Key(), err)
			}
			out = append(out, x)
		}
		return nil
	})
	return out, err
}

// applyExposures folds an exposure envelope from the log into the stored
// exposures, in the follower's transaction: an exposure whose key holds one
// from a later envelope is left alone (or the same one: the marking node's
// own, applied again); the others are stored with a matching job. It
// reports whether anything changed.
func (n *Node) applyExposures(w *followTxn, env *exchange.Envelope) (bool, error) {
	xs, err := exchange.DecodeExposures(env)
	if err != nil {
		return false, err
	}
	changed := false
	for _, e := range xs.Exps {
		x := exposureOf(xs.Iss, xs.At, e)
		var cur Exposure
		found, err := getJSON(w.txn, pExpo+x.ID(), &cur)
		if err != nil {
			return changed, stored(err)
		}
		if found && !x.supersedes(&cur) {
			continue
		}
		val, err := jsonMarshal(&x)
		if err != nil {
			return changed, stored(err)
		}
		if err := w.setExpires([]byte(pExpo+x.ID()), val, x.expires()); err != nil {
			return changed, stored(err)
		}
		job, err := jsonMarshal(&exposureJob{Exp: x})
		if err != nil {
			return changed, stored(err)
		}
		if err := w.set([]byte(exposureJobKey()), job); err != nil {
			return changed, stored(err)
		}
		changed = true
	}
	return changed, nil
}

// exposureLoop runs the matching jobs: at start, when poked, and every
// DueTick (a job that failed is tried again).
func (n *Node) exposureLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.DueTick)
	defer tick.Stop()
	for {
		if _, err := n.RunExposureJobs(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("matching exposures against scans failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.expoRedo:
		case <-tick.C:
		}
	}
}

// RunExposureJobs runs the stored matching jobs in the order they were
// stored, each chunk by chunk, and returns how many residents' histories it
// changed. exposureLoop calls it; tests may too.
func (n *Node) RunExposureJobs(ctx context.Context) (int, error) {
	n.expoRun.Lock()
	defer n.expoRun.Unlock()
	total := 0
	for ctx.Err() == nil {
		var key []byte
		var job exposureJob
		err := n.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pExpoJob), PrefetchValues: true})
			defer it.Close()
			it.Rewind()
			if !it.Valid() {
				return nil
			}
			key = it.Item().KeyCopy(nil)
			return it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &job) })
		})
		if err != nil || key == nil {
			return total, err
		}
		chunk := n.expoChunk
		if chunk <= 0 {
			chunk = exposureChunk
		}
		got, err := n.runExposureJob(ctx, key, &job, chunk)
		total += got
		if err != nil {
			return total, err
		}
	}
	return total, ctx.Err()
}

// runExposureJob runs one job to its end, one commit per chunk of at most
// chunk scans: the chunk's histories and decisions, and the job's new
// cursor (or its removal, with the last chunk).
func (n *Node) runExposureJob(ctx context.Context, key []byte, job *exposureJob, chunk int) (int, error) {
	changed := 0
	attested := 0
	for {
		now := n.cfg.Now().UTC()
		x := &job.Exp
		scans, next, err := n.venueScans(x.Iss, x.Vid, x.From, x.To, now, job.Cursor, chunk)
		if err != nil {
			return changed, err
		}
		w := &write{system: "exposure"}
		if next == "" {
			w.del(key)
		} else {
			job.Cursor = next
			if err := w.setJSON(string(key), job); err != nil {
				return changed, err
			}
		}
		c, a, err := n.exposeChunk(ctx, w, x, scans, now)
		if err != nil {
			return changed, fmt.Errorf("exposure %s: %w", x.ID(), err)
		}
		changed += c
		attested += a
		if n.afterExposureChunk != nil {
			if err := n.afterExposureChunk(); err != nil {
				return changed, err
			}
		}
		if next == "" {
			break
		}
	}
	if attested > 0 {
		n.pokePublisher()
	}
	if changed > 0 {
		n.log.Info("venue exposure matched", "iss", job.Exp.Iss, "withdrawn", job.Exp.Withdrawn, "residents", changed, "attestations", attested)
	}
	return changed, nil
}

// exposeChunk gives the residents among scans the exposure x (or, x
// withdrawn, takes it away), decides them again and commits w with it, under
// their locks and a background write slot. It returns how many histories
// changed and how many attestations it wrote.
func (n *Node) exposeChunk(ctx context.Context, w *write, x *Exposure, scans []venueScan, now time.Time) (int, int, error) {
	latest := make(map[hcx.Subject]time.Time, len(scans))
	subs := make([]hcx.Subject, 0, len(scans))
	for _, s := range scans {
		if at, ok := latest[s.Sub]; !ok || s.At.After(at) {
			if !ok {
				subs = append(subs, s.Sub)
			}
			latest[s.Sub] = s.At
		}
	}
	release, err := n.admitBackground(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer release()
	unlock := n.locks.ofAll(subs)
	defer unlock()
	rules := n.rules.Load()
	changed, attested := 0, 0
	err = n.db.View(func(txn *badger.Txn) error {
		for _, sub := range subs {
			var rec residentRecord
			found, err := getJSON(txn, pResident+string(sub), &rec)
			if err != nil {
				return err
			}
			if !found {
				continue // not a resident here (any more)
			}
			h, err := loadHistory(txn, sub)
			if err != nil {
				return err
			}
			if !h.expose(x, latest[sub]) {
				continue // replayed: already so
			}
			h.expire(now)
			hb, err := h.MarshalBinary()
			if err != nil {
				return err
			}
			w.set(histKey(sub), hb)
			var st colourState
			if _, err := getJSON(txn, pState+string(sub), &st); err != nil {
				return err
			}
			a, err := n.decide(w, sub, &rec, &st, h.facts(), rules, now)
			if err != nil {
				return err
			}
			changed++
			if a {
				attested++
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if err := n.write(w); err != nil {
		return 0, 0, err
	}
	return changed, attested, nil
}

// expose sets (x withdrawn: removes) the resident's entry for exposure x, at
// their latest scan at inside its window, and reports whether the history
// changed. The entry keeps the latest scan seen across chunks.
func (h *history) expose(x *Exposure, at time.Time) bool {
	id := x.ID()
	i := slices.IndexFunc(h.Venues, func(v policy.VenueExposure) bool { return v.ID == id })
	if x.Withdrawn {
		if i < 0 {
			return false
		}
		h.Venues = slices.Delete(h.Venues, i, i+1)
		return true
	}
	e := policy.VenueExposure{VenueID: x.Vid, Div: x.Div, At: at, Level: x.Level, Issuer: x.Iss, ID: id}
	if i >= 0 {
		cur := h.Venues[i]
		if !at.After(cur.At) {
			e.At = cur.At
		}
		if cur == e {
			return false
		}
		h.Venues = slices.Delete(h.Venues, i, i+1)
	} else {
		h.Recorded++
	}
	h.Venues = boundedTo(h, insertByTime(h.Venues, e, func(v *policy.VenueExposure) time.Time { return v.At }), maxVenueExposures)
	return true
}

// publishPendingExposures submits the stored exposure envelopes in order,
// each removed once the hub acknowledges it. One refused for its time
// (clock_skew) is signed again with the clock as it is now.
func (n *Node) publishPendingExposures(ctx context.Context) error {
	return publishOutbox(ctx, n, pExpoPub, "exposure", "exposures", func(p *pendingExposurePub) {
		n.log.Info("exposures published", "exposures", len(p.Exps))
	})
}

func (p *pendingExposurePub) envelope() string { return p.JWS }
func (p *pendingExposurePub) resign(n *Node, at int64) (err error) {
	p.JWS, err = exchange.SealExposures(n.cfg.Signer, &exchange.Exposures{Iss: n.cfg.Province, At: at, Exps: p.Exps})
	return err
}

// PendingExposures is how many exposure envelopes wait for the hub.
func (n *Node) PendingExposures() int { return n.countPrefix(pExpoPub) }

// exposureMetrics registers the exposure gauges: envelopes waiting for
// the hub (above 0 for long: this province's markings are not reaching the
// others) and matching jobs waiting to run.
func (n *Node) exposureMetrics(s metricSet) {
	s.gauge("hcx_node_exposure_envelopes_pending", "Exposure envelopes signed and not yet acknowledged by the hub.", func() float64 { return float64(n.PendingExposures()) })
	s.gauge("hcx_node_exposure_jobs_pending", "Exposure matching jobs not yet run to their end.", func() float64 { return float64(n.PendingExposureJobs()) })
}

// PendingExposureJobs is how many matching jobs wait to run.
func (n *Node) PendingExposureJobs() int { return n.countPrefix(pExpoJob) }
