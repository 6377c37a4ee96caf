package api

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/prometheus/client_golang/prometheus"
)

// Hub is what the hub's routes need from a hub member (consensus.Hub).
type Hub interface {
	Submit(ctx context.Context, compact string) (exchange.SubmitResult, error)
	Entries(ctx context.Context, start uint64, limit int, wait time.Duration) (exchange.Entries, error)
	Subject(ctx context.Context, sub hcx.Subject) (exchange.SubjectAnswer, error)
	Trust(ctx context.Context) (string, error)
	Checkpoint(ctx context.Context) ([]byte, error)
	WitnessedCheckpoint(ctx context.Context) ([]byte, error)
	WitnessStats() consensus.WitnessStats
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
	Status(ctx context.Context) (consensus.ClusterStatus, error)
	State() consensus.State
	Ready() error
	Metrics() *prometheus.Registry
}

var _ Hub = (*consensus.Hub)(nil)

// entriesBodyLimit is the most a submitted envelope may be, plus slack for
// whitespace, so that an envelope just over the limit gets the hub's own
// too_large answer that names the limit.
const entriesBodyLimit = exchange.MaxEnvelopeBytes + 4<<10

// HubOptions configures the hub's API beyond the hub itself.
type HubOptions struct {
	// Authn reads callers' credentials. NewHubHandler serves every caller
	// as anonymous when it is nil; HubHandlerFunc then uses request
	// tokens checked against the member's own trust store
	// (HubRequestTokens).
	Authn auth.Authenticator
	// Limits are the per-identity rate limits and load shedding; nil
	// limits nothing.
	Limits *Limits
	// PublicURL is the base URL (scheme://host; several, comma-separated,
	// for a member reached under several names) clients call this member
	// at, when it sits behind a reverse proxy: request tokens sign it.
	PublicURL string
	// ReplayEntries bounds the request-token replay cache
	// (auth.DefaultReplayEntries if 0).
	ReplayEntries int
}

// HubHandlerFunc adapts NewHubHandler to consensus.Config.Handler. Without
// opts.Authn, callers prove themselves with SM2 request tokens checked
// against the member's own trust store (HubRequestTokens).
func HubHandlerFunc(log *slog.Logger, opts HubOptions) func(*consensus.Hub) http.Handler {
	return func(h *consensus.Hub) http.Handler {
		o := opts
		if o.Authn == nil {
			o.Authn = HubRequestTokens(h, opts)
		}
		return AccessLog(NewHubHandler(h, log, o), log.With("member", h.ID()))
	}
}

// HubRequestTokens authenticates request tokens at a hub member: against the
// trust lists in the member's log (a revocation counts as soon as the
// member applies it), on the member's clock, with its own replay cache. A
// token names the member's URL, so a token seen at one member cannot be
// replayed at another. The national root's tokens act as RoleHub, so that
// the CA can publish the first trust list (hcx ca publish).
func HubRequestTokens(h *consensus.Hub, opts HubOptions) *auth.RequestTokens {
	return &auth.RequestTokens{Trust: h.TrustStore, Now: h.Now, Replay: auth.NewReplayCache(opts.ReplayEntries),
		PublicURL: opts.PublicURL, MaxBody: entriesBodyLimit, RootAs: auth.RoleHub}
}

// NewHubHandler serves the hub's routes (PROTOCOL.md §5) plus /healthz,
// /readyz and /metrics (Prometheus text format). Who may call each route is
// declared in rules.
func NewHubHandler(h Hub, log *slog.Logger, opts HubOptions) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	hh := &hubHandler{hub: h, log: log.With("component", "api.hub"), m: newHubMetrics()}
	if h != nil {
		reg := h.Metrics()
		hh.m.register(reg)
		if opts.Limits != nil {
			registerOnce(reg, opts.Limits)
		}
		hh.metricsH = MetricsHandler(reg, hh.log)
	}
	r := mux.NewRouter()
	g := &gate{authn: opts.Authn, inScope: hh.inScope, onError: func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, hh.log, err) }, limits: opts.Limits}
	g.mount(r, hh.rules())
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, nil, hcx.Errorf(hcx.ENotFound, "no_route", "no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": map[string]any{"code": "method_not_allowed", "message": r.Method + " is not allowed on " + r.URL.Path}})
	})
	return r
}

// rules is the hub's route table (see api/authz.go). The log holds every
// subject's colour history, so reading it takes a federation role: a
// province signer, a hub member or the auditor (DESIGN.md §8b). Writing
// takes a province (or a hub member, which includes the national root
// publishing trust lists); the envelope is verified on its own signature
// anyway. The signed checkpoint, health checks and the aggregate metrics
// stay public.
func (hh *hubHandler) rules() []Rule {
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	federation := []Grant{{Role: auth.RoleProvince, Scope: ScopeAny}, {Role: auth.RoleHub, Scope: ScopeAny}, {Role: auth.RoleAuditor, Scope: ScopeAny}}
	writers := []Grant{{Role: auth.RoleProvince, Scope: ScopeAny}, {Role: auth.RoleHub, Scope: ScopeAny}}
	return append([]Rule{
		{Method: http.MethodPost, Path: "/v1/entries", Priority: PriorityOperator, Allow: writers, Handler: hh.instrument("submit", hh.submit)},
		{Method: http.MethodGet, Path: "/v1/entries", Query: []string{"start", "limit", "wait"}, Priority: PriorityBulk, Allow: federation, Handler: hh.instrument("entries", hh.entries)},
		{Method: http.MethodGet, Path: "/v1/checkpoint", Priority: PriorityCheckpoint, Allow: anyone, Handler: hh.instrument("checkpoint", hh.checkpoint)},
		{Method: http.MethodGet, Path: "/v1/checkpoint/witnessed", Priority: PriorityCheckpoint, Allow: anyone, Handler: hh.instrument("checkpoint_witnessed", hh.witnessedCheckpoint)},
		{Method: http.MethodGet, Path: "/v1/proof/inclusion", Query: []string{"index", "size"}, Priority: PriorityBulk, Allow: federation, Handler: hh.instrument("inclusion", hh.inclusion)},
		{Method: http.MethodGet, Path: "/v1/proof/consistency", Query: []string{"from", "to"}, Priority: PriorityBulk, Allow: federation, Handler: hh.instrument("consistency", hh.consistency)},
		{Method: http.MethodGet, Path: "/v1/subjects/{sub}", Priority: PriorityCheckpoint, Allow: federation, Handler: hh.instrument("subject", hh.subject)},
		{Method: http.MethodGet, Path: "/v1/trust", Priority: PriorityCheckpoint, Allow: federation, Handler: hh.instrument("trust", hh.trust)},
		{Method: http.MethodGet, Path: "/v1/cluster", Priority: PriorityOps, Allow: federation, Handler: hh.instrument("cluster", hh.cluster)},
		{Method: http.MethodGet, Path: "/healthz", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{Method: http.MethodGet, Path: "/readyz", Priority: PriorityOps, Allow: anyone, Handler: hh.ready},
		{Method: http.MethodGet, Path: "/metrics", Priority: PriorityOps, Allow: anyone, Handler: hh.metrics},
	}, discoveryRules("hcx hub", nil, HubOpenAPI)...)
}

// inScope: the hub has no residents and serves every province alike.
func (hh *hubHandler) inScope(r *http.Request, p *auth.Principal, s Scope) error {
	return hcx.Errorf(hcx.EForbidden, "forbidden_scope", "scope %q does not apply at the hub", s)
}

type hubHandler struct {
	hub      Hub
	log      *slog.Logger
	m        *hubMetrics
	metricsH http.Handler // the member's registry (api/metrics.go)
}

func (hh *hubHandler) submit(w http.ResponseWriter, r *http.Request) {
	b, err := ReadBody(w, r, entriesBodyLimit)
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	res, err := hh.hub.Submit(r.Context(), strings.TrimSpace(string(b)))
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

func queryUint(r *http.Request, name string, required bool) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if required {
			return 0, hcx.Invalidf(name, "query parameter %s is required", name)
		}
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, hcx.Invalidf(name, "%q is not a non-negative integer", v)
	}
	return n, nil
}

// parseWait reads a wait such as "30s", "500ms" or "30" (seconds).
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, hcx.Invalidf("wait", "%q is not a duration such as 30s", v)
	}
	return d, nil
}

func (hh *hubHandler) entries(w http.ResponseWriter, r *http.Request) {
	start, err := queryUint(r, "start", false)
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	limit, err := queryUint(r, "limit", false)
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	es, err := hh.hub.Entries(r.Context(), start, int(min(limit, consensus.MaxEntriesLimit)), wait)
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	w.Header().Set("Hcx-Tree-Size", strconv.FormatUint(es.Size, 10))
	WriteJSON(w, http.StatusOK, es)
}

// checkpoint serves the newest checkpoint, with the witness cosignatures
// committed for it so far.
func (hh *hubHandler) checkpoint(w http.ResponseWriter, r *http.Request) {
	writeNote(w, hh.log, hh.hub.Checkpoint, r)
}

// witnessedCheckpoint serves the newest checkpoint that carries at least one
// witness cosignature (404 no_checkpoint if none does yet).
func (hh *hubHandler) witnessedCheckpoint(w http.ResponseWriter, r *http.Request) {
	writeNote(w, hh.log, hh.hub.WitnessedCheckpoint, r)
}

func writeNote(w http.ResponseWriter, log *slog.Logger, get func(context.Context) ([]byte, error), r *http.Request) {
	b, err := get(r.Context())
	if err != nil {
		WriteError(w, log, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b)
}

func b64s(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

func (hh *hubHandler) inclusion(w http.ResponseWriter, r *http.Request) {
	index, err := queryUint(r, "index", true)
	if err == nil {
		var size uint64
		if size, err = queryUint(r, "size", true); err == nil {
			var hs [][]byte
			if hs, err = hh.hub.InclusionProof(r.Context(), index, size); err == nil {
				WriteJSON(w, http.StatusOK, map[string]any{"index": index, "size": size, "hashes": b64s(hs)})
				return
			}
		}
	}
	WriteError(w, hh.log, err)
}

func (hh *hubHandler) consistency(w http.ResponseWriter, r *http.Request) {
	from, err := queryUint(r, "from", true)
	if err == nil {
		var to uint64
		if to, err = queryUint(r, "to", true); err == nil {
			var hs [][]byte
			if hs, err = hh.hub.ConsistencyProof(r.Context(), from, to); err == nil {
				WriteJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "hashes": b64s(hs)})
				return
			}
		}
	}
	WriteError(w, hh.log, err)
}

func (hh *hubHandler) subject(w http.ResponseWriter, r *http.Request) {
	ans, err := hh.hub.Subject(r.Context(), hcx.Subject(mux.Vars(r)["sub"]))
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, ans)
}

func (hh *hubHandler) trust(w http.ResponseWriter, r *http.Request) {
	s, err := hh.hub.Trust(r.Context())
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(s))
}

func (hh *hubHandler) cluster(w http.ResponseWriter, r *http.Request) {
	st, err := hh.hub.Status(r.Context())
	if err != nil {
		WriteError(w, hh.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (hh *hubHandler) ready(w http.ResponseWriter, r *http.Request) {
	if err := hh.hub.Ready(); err != nil {
		WriteError(w, nil, unavailable(err))
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// hubMetrics are the handler's own collectors, registered in the member's
// registry (consensus.Hub.Metrics) by NewHubHandler. Routes are labelled by
// their name in rules, never by the raw path.
type hubMetrics struct {
	requests *prometheus.CounterVec   // route, status code
	latency  *prometheus.HistogramVec // route
	submit   prometheus.Histogram     // accepted submissions
	inflight prometheus.Gauge
}

// httpBuckets (seconds) reach 30 s: GET /v1/entries long-polls that long.
var httpBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

func newHubMetrics() *hubMetrics {
	return &hubMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hcx_hub_http_requests_total",
			Help: "Requests to the hub's instrumented routes, by route name and status code."}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hcx_hub_http_request_seconds",
			Help: "Time to answer a request, by route name (entries long-polls up to its wait).", Buckets: httpBuckets}, []string{"route"}),
		submit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hcx_hub_submit_seconds",
			Help:    "Time to answer an accepted POST /v1/entries: verification, forwarding to the leader, Raft commit.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hcx_hub_http_inflight",
			Help: "Requests to the hub's instrumented routes in flight."}),
	}
}

// register puts m in reg, or takes the collectors an earlier handler over
// the same member put there.
func (m *hubMetrics) register(reg prometheus.Registerer) {
	m.requests = registerOnce(reg, m.requests)
	m.latency = registerOnce(reg, m.latency)
	m.submit = registerOnce(reg, m.submit)
	m.inflight = registerOnce(reg, m.inflight)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (hh *hubHandler) instrument(route string, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hh.m.inflight.Inc()
		defer hh.m.inflight.Dec()
		t0 := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		fn(rec, r)
		d := time.Since(t0).Seconds()
		hh.m.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		hh.m.latency.WithLabelValues(route).Observe(d)
		if route == "submit" && rec.status == http.StatusOK {
			hh.m.submit.Observe(d)
		}
	}
}

// metrics serves the member's registry: its state, Raft and witness
// metrics (consensus/metrics.go), this handler's and the limits'.
func (hh *hubHandler) metrics(w http.ResponseWriter, r *http.Request) {
	hh.metricsH.ServeHTTP(w, r)
}
