package consensus

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The member's metrics live in its own registry (never the global one: the
// members of a test cluster share a process), which the API's /metrics
// serves together with the API's own collectors (api/hub.go).
type metrics struct {
	reg      *prometheus.Registry
	commit   prometheus.Histogram
	rejected *prometheus.CounterVec
}

// commitBuckets (seconds): a Raft commit is a round trip to a quorum and a
// synced append, then the FSM's apply; seconds mean a struggling cluster.
var commitBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// RejectReasons label hcx_hub_rejected_envelopes_total: the codes of
// Submit's refusals of an envelope, "invalid" for every invalid_<field>,
// and "other" for any code not listed, so that the label set stays bounded
// whatever a future error says.
var RejectReasons = []string{"too_large", "malformed", "bad_signature", "unknown_issuer", "key_revoked", "key_expired",
	"key_not_yet_valid", "wrong_issuer", "stale_trust_list", "clock_skew", "sequence_conflict", "trail_conflict", "invalid", "other"}

func (h *Hub) newMetrics() {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h.m = metrics{reg: reg,
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hcx_hub_raft_commit_seconds",
			Help:    "At the leader, time from proposing a command to Raft (Apply) to its commit by a quorum and application by this member's FSM: envelopes, checkpoints, cosignatures.",
			Buckets: commitBuckets}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hcx_hub_rejected_envelopes_total",
			Help: "Envelopes this member refused to log, by error code (RejectReasons): counted where the refusal was decided, not again at a member that forwarded it."},
			[]string{"reason"}),
	}
	for _, r := range RejectReasons {
		h.m.rejected.WithLabelValues(r) // every reason is scraped from the start, at 0
	}
	reg.MustRegister(h.m.commit, h.m.rejected, stateCollector{h})
}

// Metrics is the member's registry. The API registers its collectors in it
// and serves it at /metrics.
func (h *Hub) Metrics() *prometheus.Registry { return h.m.reg }

// observeCommit records a commit that took since start.
func (h *Hub) observeCommit(start time.Time) { h.m.commit.Observe(time.Since(start).Seconds()) }

// countRejected counts an envelope this member refused. Unavailability
// (no leader, closing) is no verdict on the envelope and is not counted.
func (h *Hub) countRejected(err error) {
	var he *hcx.Error
	if errors.As(err, &he) && he.Class == hcx.EUnavailable {
		return
	}
	h.m.rejected.WithLabelValues(rejectReason(err)).Inc()
}

func rejectReason(err error) string {
	var he *hcx.Error
	switch {
	case !errors.As(err, &he):
		return "other"
	case strings.HasPrefix(he.Code, "invalid_"):
		return "invalid"
	case slices.Contains(RejectReasons, he.Code):
		return he.Code
	}
	return "other"
}

// stateCollector reads the member's state at scrape time: log sizes,
// leadership, the checkpoint's age and the witness rounds.
type stateCollector struct{ h *Hub }

var (
	appliedDesc        = prometheus.NewDesc("hcx_hub_applied_index", "Raft index this member's FSM has applied.", nil, nil)
	treeSizeDesc       = prometheus.NewDesc("hcx_hub_tree_size", "Leaves in this member's copy of the log.", nil, nil)
	checkpointSizeDesc = prometheus.NewDesc("hcx_hub_checkpoint_size", "Size of the newest signed checkpoint this member applied.", nil, nil)
	checkpointAgeDesc  = prometheus.NewDesc("hcx_hub_checkpoint_age_seconds", "Seconds from the signing time of the newest checkpoint this member applied to now (member clock). The leader signs only when the log grew, so it rises while the log is idle: alert on it together with hcx_hub_tree_size > hcx_hub_checkpoint_size. Absent before the first checkpoint.", nil, nil)
	isLeaderDesc       = prometheus.NewDesc("hcx_hub_is_leader", "1 while this member is the Raft leader.", nil, nil)
	witnessedSizeDesc  = prometheus.NewDesc("hcx_hub_witnessed_size", "Size of the newest checkpoint that carries witness cosignatures.", nil, nil)
	roundsDesc         = prometheus.NewDesc("hcx_hub_cosign_rounds_total", "Cosigning rounds this member ran while it led.", nil, nil)
	skippedDesc        = prometheus.NewDesc("hcx_hub_cosign_rounds_skipped_total", "Checkpoints that found a cosigning round still running.", nil, nil)
	witnessSizeDesc    = prometheus.NewDesc("hcx_hub_witness_size", "Size the witness last cosigned, as far as this member knows.", []string{"witness"}, nil)
	witnessCosDesc     = prometheus.NewDesc("hcx_hub_witness_cosigned_total", "Checkpoints the witness cosigned for this member.", []string{"witness"}, nil)
	witnessFailDesc    = prometheus.NewDesc("hcx_hub_witness_failures_total", "Calls to the witness that failed or were refused.", []string{"witness"}, nil)
	witnessInvalidDesc = prometheus.NewDesc("hcx_hub_witness_invalid_cosignatures_total", "Cosignatures the witness returned that did not verify.", []string{"witness"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{appliedDesc, treeSizeDesc, checkpointSizeDesc, checkpointAgeDesc, isLeaderDesc,
		witnessedSizeDesc, roundsDesc, skippedDesc, witnessSizeDesc, witnessCosDesc, witnessFailDesc, witnessInvalidDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st := h.State()
	gauge(appliedDesc, float64(st.Applied))
	gauge(treeSizeDesc, float64(st.Size))
	gauge(checkpointSizeDesc, float64(st.CheckpointSize))
	if b, err := h.fsm.get(keyCP); err == nil && b != nil {
		if cp, err := exchange.ParseCheckpoint(b); err == nil && !cp.Time.IsZero() {
			gauge(checkpointAgeDesc, max(0, h.cfg.Now().Sub(cp.Time).Seconds()))
		}
	}
	leader := 0.0
	if h.IsLeader() {
		leader = 1
	}
	gauge(isLeaderDesc, leader)
	ws := h.WitnessStats()
	gauge(witnessedSizeDesc, float64(ws.WitnessedSize))
	counter(roundsDesc, ws.Rounds)
	counter(skippedDesc, ws.Skipped)
	for _, w := range ws.Witnesses {
		gauge(witnessSizeDesc, float64(w.Size), w.URL)
		counter(witnessCosDesc, w.Cosigned, w.URL)
		counter(witnessFailDesc, w.Failures, w.URL)
		counter(witnessInvalidDesc, w.Invalid, w.URL)
	}
}
