package node

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/hcxfed/hcx/exchange"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// metrics are the node's counters and histograms. The counters are atomics
// that the hot paths add to and the registry reads at scrape time
// (CounterFunc): counting stays one atomic add.
type metrics struct {
	registrations, events, codes          atomic.Uint64
	duplicates                            atomic.Uint64 // records posted again with the same id
	commits                               atomic.Uint64
	batches, attestations, publishErrors  atomic.Uint64
	followApplied, followRejected         atomic.Uint64
	forks                                 atomic.Uint64
	witnessedShort                        atomic.Uint64 // witnessed checkpoints with fewer than k valid cosignatures (witness.go)
	verified, verifyRejected              atomic.Uint64
	scans                                 atomic.Uint64 // venue scans recorded (scans.go)
	auditSeq                              atomic.Uint64 // seq of the last audit trail entry
	auditHeadLogged                       atomic.Uint64 // trail seq of the last head the hub acknowledged (audithead.go)
	vaxForwarded, vaxReceived, vaxDropped atomic.Uint64 // doses sent to and recorded from the hub (vaccinations.go)
	written                               atomic.Uint64 // key and value bytes of committed writes (benchmarks compare badger's raw rate)

	// Latencies and lags (histograms, seconds). The children are made at
	// New, so observing is a lock-free add and every series is scraped
	// from the start, zero until traffic flows.
	verifyOK, verifyRefused prometheus.Observer
	ingest                  map[string]prometheus.Observer // by event kind (ingestKinds); read-only after New
	publishLag, followLag   prometheus.Observer
}

// ingestKinds label hcx_node_ingest_seconds: the kinds Ingest takes, and
// "batch" for IngestBatch (a bounded set: no subject ever labels a metric).
var ingestKinds = []string{KindLab, KindContact, KindDeclaration, KindVaccination, KindTravel, KindCheckIn, "batch"}

// Buckets (seconds). A verification is a signature check and a read; an
// ingest waits for a synced group commit; the publish lag includes the
// publisher's linger and a Raft commit at the hub, and grows without bound
// while the hub is unreachable; the follow lag has the one-second
// resolution of the hub's commit times.
var (
	verifyBuckets  = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
	ingestBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	publishBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	followBuckets  = []float64{0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600}
)

// metricSet registers metrics in the node's registry, each labelled with
// the province (a node's series stay apart when several nodes feed one
// Prometheus).
type metricSet struct {
	reg    *prometheus.Registry
	labels prometheus.Labels
}

// with is s with one more constant label (a bounded reason or kind).
func (s metricSet) with(name, value string) metricSet {
	l := prometheus.Labels{name: value}
	for k, v := range s.labels {
		l[k] = v
	}
	return metricSet{reg: s.reg, labels: l}
}

func (s metricSet) counter(name, help string, v func() uint64) {
	s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: s.labels},
		func() float64 { return float64(v()) }))
}

func (s metricSet) gauge(name, help string, v func() float64) {
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: s.labels}, v))
}

func (s metricSet) histogram(name, help, label string, buckets []float64) *prometheus.HistogramVec {
	var labels []string
	if label != "" {
		labels = []string{label}
	}
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: s.labels, Buckets: buckets}, labels)
	s.reg.MustRegister(h)
	return h
}

// optionalGauge is a gauge scraped only while it has a value (the age of a
// checkpoint the node does not hold yet is no number at all).
type optionalGauge struct {
	desc  *prometheus.Desc
	value func() (float64, bool)
}

func (g optionalGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g optionalGauge) Collect(ch chan<- prometheus.Metric) {
	if v, ok := g.value(); ok {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
	}
}

// newRegistry makes the node's own registry (never the global one: two
// nodes in one process keep their metrics apart) with the Go runtime and
// process collectors and every metric of the node.
func (n *Node) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := metricSet{reg: reg, labels: prometheus.Labels{"province": string(n.cfg.Province)}}
	m := &n.metrics
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"hcx_node_registrations_total", "Residents registered.", &m.registrations},
		{"hcx_node_duplicate_records_total", "Records posted again with a record id already recorded, counted once.", &m.duplicates},
		{"hcx_node_events_total", "Events ingested.", &m.events},
		{"hcx_node_vax_forwarded_total", "Doses given here to residents of other provinces, acknowledged by the hub.", &m.vaxForwarded},
		{"hcx_node_vax_received_total", "Doses given in other provinces recorded for this node's residents.", &m.vaxReceived},
		{"hcx_node_vax_dropped_total", "Doses from the hub about subjects not held here, dropped past the per-subject bound.", &m.vaxDropped},
		{"hcx_node_commits_total", "Synced group commits of the node's writes: events, registrations, re-decisions.", &m.commits},
		{"hcx_node_codes_issued_total", "Health codes issued.", &m.codes},
		{"hcx_node_batches_published_total", "Colour batches acknowledged by the hub.", &m.batches},
		{"hcx_node_attestations_published_total", "Attestations acknowledged by the hub.", &m.attestations},
		{"hcx_node_publish_errors_total", "Failed submissions to the hub.", &m.publishErrors},
		{"hcx_node_log_entries_applied_total", "Hub log entries read.", &m.followApplied},
		{"hcx_node_log_entries_rejected_total", "Hub log entries that did not verify here.", &m.followRejected},
		{"hcx_node_log_forks_total", "Hub members caught serving a log that contradicts their signed checkpoint or this node's tree.", &m.forks},
		{"hcx_node_verifications_total", "Codes verified.", &m.verified},
		{"hcx_node_verifications_rejected_total", "Codes rejected.", &m.verifyRejected},
		{"hcx_node_checks_stored_total", "Checks of this province's codes stored in residents' check histories.", &n.checks.stored},
		{"hcx_node_checks_dropped_total", "Checks not stored in residents' check histories because the background writer's queue was full or its write failed.", &n.checks.dropped},
		{"hcx_node_scans_total", "Venue scans recorded.", &m.scans},
	} {
		s.counter(c.name, c.help, c.v.Load)
	}
	s.gauge("hcx_node_log_fork", "1 while the node is not following because the hub log forked.", func() float64 {
		if n.fork.Load() != nil {
			return 1
		}
		return 0
	})
	s.gauge("hcx_node_audit_seq", "Seq of the last entry of the operator audit trail.", func() float64 { return float64(m.auditSeq.Load()) })
	s.gauge("hcx_node_audit_head_logged_seq", "Trail seq of the last operator trail head the hub logged.", func() float64 { return float64(m.auditHeadLogged.Load()) })
	s.gauge("hcx_node_log_applied", "Log size the node's cache reflects.", func() float64 { return float64(n.applied.Load()) })
	reg.MustRegister(optionalGauge{
		desc: prometheus.NewDesc("hcx_node_checkpoint_age_seconds",
			"Seconds from the signing time of the newest hub checkpoint this node verified to now (node clock). It grows while the hub log is idle (the hub signs only when the log grows) or while the node cannot follow; absent before the first checkpoint.",
			nil, s.labels),
		value: n.checkpointAge,
	})

	verify := s.histogram("hcx_node_verify_seconds", "Time to verify a health code (POST /v1/verify), by result: ok, or rejected (bad signature, expired, unknown issuer).", "result", verifyBuckets)
	m.verifyOK, m.verifyRefused = verify.WithLabelValues("ok"), verify.WithLabelValues("rejected")
	ingest := s.histogram("hcx_node_ingest_seconds", "Time from an event's arrival to its committed answer (synced to disk), by event kind; batch is one chunk of records of a bulk feed.", "kind", ingestBuckets)
	m.ingest = make(map[string]prometheus.Observer, len(ingestKinds))
	for _, k := range ingestKinds {
		m.ingest[k] = ingest.WithLabelValues(k)
	}
	m.publishLag = s.histogram("hcx_node_publish_lag_seconds", "Per attestation, time from the commit of the decision at this node to the hub's acknowledgement of the batch that carries it as committed (node clock).", "", publishBuckets).WithLabelValues()
	m.followLag = s.histogram("hcx_node_follow_lag_seconds", "Per hub log entry, time from its commit at the hub (the commit time the hub serves with the entry, whole seconds) to its application at this node (node clock); entries without a commit time are not observed.", "", followBuckets).WithLabelValues()

	n.riskMetrics(s)
	n.exposureMetrics(s)
	n.receiptMetrics(s)
	n.witnessMetrics(s)
	return reg
}

// Metrics is the node's registry: serve it with promhttp.HandlerFor. The
// API adds its own collectors (the server's limits) to it.
func (n *Node) Metrics() *prometheus.Registry { return n.reg }

// WriteMetrics writes the node's metrics in the Prometheus text format.
func (n *Node) WriteMetrics(w io.Writer) error {
	mfs, err := n.reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// checkpointAge is hcx_node_checkpoint_age_seconds: false while the node
// holds no checkpoint, or one without a time line.
func (n *Node) checkpointAge() (float64, bool) {
	n.treeMu.Lock()
	t := n.tree
	n.treeMu.Unlock()
	if t == nil || t.cp == nil {
		return 0, false
	}
	cp, err := exchange.ParseCheckpoint([]byte(t.cp.Note))
	if err != nil || cp.Time.IsZero() {
		return 0, false
	}
	return max(0, n.cfg.Now().Sub(cp.Time).Seconds()), true
}

// observeFollowLag observes the follow lag of the entries of page just
// applied, at the node's clock; the hub's commit times are whole seconds,
// so a lag under one second may read as 0.
func (n *Node) observeFollowLag(page exchange.Entries) {
	now := n.cfg.Now()
	for i := range page.Entries {
		if c := page.Committed(i); !c.IsZero() {
			n.metrics.followLag.Observe(max(0, now.Sub(c).Seconds()))
		}
	}
}

// observePublishLag observes, per attestation of a batch the hub just
// acknowledged, the time since its decision was committed (decided: Unix
// nanoseconds at the node's clock; 0 for an entry queued before the node
// recorded it).
func (n *Node) observePublishLag(decided []int64) {
	now := n.cfg.Now()
	for _, d := range decided {
		if d > 0 {
			n.metrics.publishLag.Observe(max(0, now.Sub(time.Unix(0, d)).Seconds()))
		}
	}
}
