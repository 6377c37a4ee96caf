package node

import (
	"fmt"
	"io"
	"sync/atomic"
)

// metrics are the node's counters, written in Prometheus text format.
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
}

// WriteMetrics writes the node's metrics in Prometheus text format.
func (n *Node) WriteMetrics(w io.Writer) {
	m := &n.metrics
	p := string(n.cfg.Province)
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"hcx_node_registrations_total", "Residents registered.", m.registrations.Load()},
		{"hcx_node_duplicate_records_total", "Records posted again with a record id already recorded, counted once.", m.duplicates.Load()},
		{"hcx_node_events_total", "Events ingested.", m.events.Load()},
		{"hcx_node_vax_forwarded_total", "Doses given here to residents of other provinces, acknowledged by the hub.", m.vaxForwarded.Load()},
		{"hcx_node_vax_received_total", "Doses given in other provinces recorded for this node's residents.", m.vaxReceived.Load()},
		{"hcx_node_vax_dropped_total", "Doses from the hub about subjects not held here, dropped past the per-subject bound.", m.vaxDropped.Load()},
		{"hcx_node_commits_total", "Synced group commits of the node's writes: events, registrations, re-decisions.", m.commits.Load()},
		{"hcx_node_codes_issued_total", "Health codes issued.", m.codes.Load()},
		{"hcx_node_batches_published_total", "Colour batches acknowledged by the hub.", m.batches.Load()},
		{"hcx_node_attestations_published_total", "Attestations acknowledged by the hub.", m.attestations.Load()},
		{"hcx_node_publish_errors_total", "Failed submissions to the hub.", m.publishErrors.Load()},
		{"hcx_node_log_entries_applied_total", "Hub log entries read.", m.followApplied.Load()},
		{"hcx_node_log_entries_rejected_total", "Hub log entries that did not verify here.", m.followRejected.Load()},
		{"hcx_node_log_forks_total", "Hub members caught serving a log that contradicts their signed checkpoint or this node's tree.", m.forks.Load()},
		{"hcx_node_verifications_total", "Codes verified.", m.verified.Load()},
		{"hcx_node_verifications_rejected_total", "Codes rejected.", m.verifyRejected.Load()},
		{"hcx_node_checks_stored_total", "Checks of this province's codes stored in residents' check histories.", n.checks.stored.Load()},
		{"hcx_node_checks_dropped_total", "Checks not stored in residents' check histories because the background writer's queue was full or its write failed.", n.checks.dropped.Load()},
		{"hcx_node_scans_total", "Venue scans recorded.", m.scans.Load()},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s{province=%q} %d\n", c.name, c.help, c.name, c.name, p, c.v)
	}
	fork := 0
	if n.fork.Load() != nil {
		fork = 1
	}
	fmt.Fprintf(w, "# HELP hcx_node_log_fork 1 while the node is not following because the hub log forked.\n# TYPE hcx_node_log_fork gauge\nhcx_node_log_fork{province=%q} %d\n", p, fork)
	fmt.Fprintf(w, "# HELP hcx_node_audit_seq Seq of the last entry of the operator audit trail.\n# TYPE hcx_node_audit_seq gauge\nhcx_node_audit_seq{province=%q} %d\n", p, m.auditSeq.Load())
	fmt.Fprintf(w, "# HELP hcx_node_audit_head_logged_seq Trail seq of the last operator trail head the hub logged.\n# TYPE hcx_node_audit_head_logged_seq gauge\nhcx_node_audit_head_logged_seq{province=%q} %d\n", p, m.auditHeadLogged.Load())
	fmt.Fprintf(w, "# HELP hcx_node_log_applied Log size the node's cache reflects.\n# TYPE hcx_node_log_applied gauge\nhcx_node_log_applied{province=%q} %d\n", p, n.applied.Load())
	n.writeRiskMetrics(w, p)
	n.writeExposureMetrics(w, p)
	n.writeReceiptMetrics(w, p)
	n.writeWitnessMetrics(w, p)
}
