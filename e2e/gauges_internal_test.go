package e2e

import "testing"

// TestParseGaugesReadsLabelledSeries: a node labels every series with its
// province; the load test read hcx_node_log_forks_total as 0 whatever the
// node said, because labelled series were skipped.
func TestParseGaugesReadsLabelledSeries(t *testing.T) {
	page := `# HELP hcx_node_log_forks_total Forks.
# TYPE hcx_node_log_forks_total counter
hcx_node_log_forks_total{province="440000"} 2
# HELP hcx_node_log_applied Size.
# TYPE hcx_node_log_applied gauge
hcx_node_log_applied{province="440000"} 1e+06
# HELP hcx_hub_is_leader Leader.
# TYPE hcx_hub_is_leader gauge
hcx_hub_is_leader 1
`
	g := parseGauges(page, "hcx_node_")
	if g["hcx_node_log_forks_total"] != 2 || g["hcx_node_log_applied"] != 1000000 {
		t.Errorf("node gauges %v, want forks 2 and applied 1000000", g)
	}
	if _, ok := g["hcx_hub_is_leader"]; ok {
		t.Errorf("hcx_hub_is_leader read under the prefix hcx_node_: %v", g)
	}
	if h := parseGauges(page, "hcx_hub_"); h["hcx_hub_is_leader"] != 1 {
		t.Errorf("hub gauges %v, want is_leader 1", h)
	}
}
