package main

import (
	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/witness"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// auditMetrics are the metrics of hcx audit --watch, in the watcher's own
// registry (never the global one) with the Go runtime and process
// collectors; the names are those of the hand-written exposition they
// replace.
type auditMetrics struct {
	reg            *prometheus.Registry
	size           prometheus.Gauge
	runs, failures prometheus.Counter
	findings       *prometheus.CounterVec
	pass           prometheus.Histogram
}

// auditPassBuckets (seconds): a pass reads the log from where the last one
// ended, so it is short once caught up; the first pass over a large log
// takes minutes.
var auditPassBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900}

func newAuditMetrics(wit *witness.Witness) *auditMetrics {
	m := &auditMetrics{reg: prometheus.NewRegistry(),
		size:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "hcx_audit_size", Help: "Leaves of the hub log verified."}),
		runs:     prometheus.NewCounter(prometheus.CounterOpts{Name: "hcx_audit_runs_total", Help: "Audit passes made."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "hcx_audit_run_failures_total", Help: "Audit passes that could not finish."}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hcx_audit_findings_total", Help: "Findings, by kind (audit.Kinds)."}, []string{"kind"}),
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hcx_audit_run_seconds",
			Help: "Time an audit pass took, finished or not.", Buckets: auditPassBuckets}),
	}
	for _, k := range audit.Kinds {
		m.findings.WithLabelValues(k) // every kind is scraped from the start, at 0
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.size, m.runs, m.failures, m.findings, m.pass, witnessCollector{wit})
	return m
}

// witnessCollector reads the auditor's witness counters at scrape time.
type witnessCollector struct{ w *witness.Witness }

var (
	auditCosignedDesc  = prometheus.NewDesc("hcx_audit_witness_cosigned_total", "Checkpoints the auditor's witness cosigned.", nil, nil)
	auditRefusedDesc   = prometheus.NewDesc("hcx_audit_witness_refused_total", "Submissions the auditor's witness refused, by reason.", []string{"reason"}, nil)
	auditConflictsDesc = prometheus.NewDesc("hcx_audit_witness_conflicts_total", "Hub-signed checkpoints that contradict what the witness cosigned (a split view).", nil, nil)
)

func (c witnessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- auditCosignedDesc
	ch <- auditRefusedDesc
	ch <- auditConflictsDesc
}

func (c witnessCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(auditCosignedDesc, s.Cosigned)
	for _, r := range []struct {
		reason string
		n      uint64
	}{{"malformed", s.Malformed}, {"unsigned", s.Unsigned}, {"unknown_origin", s.UnknownOrigin}, {"stale", s.Stale}, {"conflict", s.Conflicts}} {
		counter(auditRefusedDesc, r.n, r.reason)
	}
	counter(auditConflictsDesc, s.Conflicts)
}
