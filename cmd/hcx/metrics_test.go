package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Issue 15 item 1: every component's /metrics is client_golang's exposition
// of the component's own registry. The test runs a federation of three hub
// members, the dev provinces' nodes and the auditor's watch, drives a
// little traffic through them (an enrolment, a positive lab result, a code
// verified at another province, a code and an envelope refused, anonymous
// callers over their rate) and scrapes each: every expected metric is
// there with its type and a help text, the histograms where traffic flowed
// have observations, the Go runtime and process collectors are there, and
// no scrape carries the resident's subject.

// metricWant is a metric a scrape must carry.
type metricWant struct {
	name string
	typ  dto.MetricType
}

var (
	counter   = dto.MetricType_COUNTER
	gauge     = dto.MetricType_GAUGE
	histogram = dto.MetricType_HISTOGRAM
)

// runtimeMetrics are the Go runtime and process collectors' (Linux).
var runtimeMetrics = []metricWant{{"go_goroutines", gauge}, {"go_memstats_heap_alloc_bytes", gauge}, {"go_gc_duration_seconds", dto.MetricType_SUMMARY},
	{"process_cpu_seconds_total", counter}, {"process_resident_memory_bytes", gauge}, {"process_open_fds", gauge}, {"process_start_time_seconds", gauge}}

var limitsMetrics = []metricWant{{"hcx_api_rate_limited_total", counter}, {"hcx_api_shed_total", counter}, {"hcx_api_in_flight", gauge}, {"hcx_api_rate_identities", gauge}}

var nodeMetrics = append(append([]metricWant{
	{"hcx_node_registrations_total", counter}, {"hcx_node_duplicate_records_total", counter}, {"hcx_node_events_total", counter},
	{"hcx_node_vax_forwarded_total", counter}, {"hcx_node_vax_received_total", counter}, {"hcx_node_vax_dropped_total", counter},
	{"hcx_node_commits_total", counter}, {"hcx_node_codes_issued_total", counter}, {"hcx_node_batches_published_total", counter},
	{"hcx_node_attestations_published_total", counter}, {"hcx_node_publish_errors_total", counter},
	{"hcx_node_log_entries_applied_total", counter}, {"hcx_node_log_entries_rejected_total", counter}, {"hcx_node_log_forks_total", counter},
	{"hcx_node_verifications_total", counter}, {"hcx_node_verifications_rejected_total", counter},
	{"hcx_node_checks_stored_total", counter}, {"hcx_node_checks_dropped_total", counter}, {"hcx_node_scans_total", counter},
	{"hcx_node_log_fork", gauge}, {"hcx_node_audit_seq", gauge}, {"hcx_node_audit_head_logged_seq", gauge}, {"hcx_node_log_applied", gauge},
	{"hcx_node_checkpoint_age_seconds", gauge},
	{"hcx_node_risk_areas", gauge}, {"hcx_node_risk_envelopes_pending", gauge},
	{"hcx_node_exposure_envelopes_pending", gauge}, {"hcx_node_exposure_jobs_pending", gauge},
	{"hcx_node_receipts_queued_total", counter}, {"hcx_node_receipts_sent_total", counter}, {"hcx_node_receipts_dropped_total", counter},
	{"hcx_node_receipts_received_total", counter}, {"hcx_node_receipts_ignored_total", counter}, {"hcx_node_receipts_undecryptable_total", counter},
	{"hcx_node_receipts_envelopes_pending", gauge},
	{"hcx_node_witness_cosigned_total", counter}, {"hcx_node_witness_refused_total", counter}, {"hcx_node_witness_conflicts_total", counter},
	{"hcx_node_verify_seconds", histogram}, {"hcx_node_ingest_seconds", histogram},
	{"hcx_node_publish_lag_seconds", histogram}, {"hcx_node_follow_lag_seconds", histogram},
}, limitsMetrics...), runtimeMetrics...)

var hubMetrics = append(append([]metricWant{
	{"hcx_hub_applied_index", gauge}, {"hcx_hub_tree_size", gauge}, {"hcx_hub_checkpoint_size", gauge},
	{"hcx_hub_checkpoint_age_seconds", gauge}, {"hcx_hub_is_leader", gauge},
	{"hcx_hub_witnessed_size", gauge}, {"hcx_hub_cosign_rounds_total", counter}, {"hcx_hub_cosign_rounds_skipped_total", counter},
	{"hcx_hub_witness_size", gauge}, {"hcx_hub_witness_cosigned_total", counter}, {"hcx_hub_witness_failures_total", counter},
	{"hcx_hub_witness_invalid_cosignatures_total", counter},
	{"hcx_hub_raft_commit_seconds", histogram}, {"hcx_hub_rejected_envelopes_total", counter},
	{"hcx_hub_http_requests_total", counter}, {"hcx_hub_http_request_seconds", histogram}, {"hcx_hub_submit_seconds", histogram},
	{"hcx_hub_http_inflight", gauge},
}, limitsMetrics...), runtimeMetrics...)

var auditMetricsWant = append([]metricWant{
	{"hcx_audit_size", gauge}, {"hcx_audit_runs_total", counter}, {"hcx_audit_run_failures_total", counter},
	{"hcx_audit_findings_total", counter}, {"hcx_audit_run_seconds", histogram},
	{"hcx_audit_witness_cosigned_total", counter}, {"hcx_audit_witness_refused_total", counter}, {"hcx_audit_witness_conflicts_total", counter},
}, runtimeMetrics...)

// scrape GETs url's /metrics as who and parses it as Prometheus text.
func scrape(t *testing.T, f *federation, who caller, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	who.sign(t, req, nil)
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics as %s: %d %s", url, who.name, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("GET %s/metrics: Content-Type %q, want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("%s/metrics does not parse: %v\n%s", url, err, b)
	}
	return mfs, string(b)
}

// checkFamilies checks that mfs carries every metric of want with its type
// and that every family says what it measures.
func checkFamilies(t *testing.T, what string, mfs map[string]*dto.MetricFamily, want []metricWant) {
	t.Helper()
	for _, w := range want {
		mf, ok := mfs[w.name]
		switch {
		case !ok:
			t.Errorf("%s: no %s", what, w.name)
		case mf.GetType() != w.typ:
			t.Errorf("%s: %s is a %s, want a %s", what, w.name, mf.GetType(), w.typ)
		case len(mf.GetMetric()) == 0:
			t.Errorf("%s: %s has no series", what, w.name)
		}
	}
	for name, mf := range mfs {
		if strings.TrimSpace(mf.GetHelp()) == "" {
			t.Errorf("%s: %s has no help text", what, name)
		}
	}
}

// observations is how many observations the histogram name holds across
// its series whose labels include the given name=value pairs.
func observations(mfs map[string]*dto.MetricFamily, name string, labels ...string) uint64 {
	var n uint64
	for _, m := range mfs[name].GetMetric() {
		if hasLabels(m, labels...) {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// value is the sum of the counter or gauge name over its series whose
// labels include the given pairs.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var v float64
	for _, m := range mfs[name].GetMetric() {
		if hasLabels(m, labels...) {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

func hasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || (l.GetName() == pairs[i] && l.GetValue() == pairs[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

func TestEveryComponentServesItsMetrics(t *testing.T) {
	addr := freeAddr(t) // the auditor's watch, a witness of the hub too
	// Anonymous callers get a small bucket, so that a burst of them is
	// rate limited (health checks and /metrics never are).
	limits := func() *api.Limits {
		cfg := api.DefaultLimitsConfig()
		cfg.PerRole[auth.RoleAnonymous] = api.RoleLimit{Rate: 1, Burst: 20}
		return api.NewLimits(cfg)
	}
	f := startTestFederationWith(t, federationConfig{Dir: t.TempDir(), HubMembers: 3, Limits: limits, Witnesses: []string{"http://" + addr + "/v1/witness"}})
	startWatch(t, "--hub", strings.Join(f.HubURLs, ","), "--dir", f.Dir, "--state", filepath.Join(t.TempDir(), "audit"), "--metrics", addr)
	const gd, sc hcx.ProvinceCode = "440000", "510000"

	// Traffic: 张三 enrols at Guangdong, whose feed posts a positive
	// result (an ingest, a red attestation published); Sichuan's
	// checkpoint verifies the code once the attestation is through the
	// hub; Guangdong's checkpoint is shown a forged code.
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, res := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619900101515"), "name": "张三"})
	waitKnown(t, f, f.asFeed(gd), f.NodeURLs[gd]+"/readyz")
	waitKnown(t, f, f.asCheckpoint(sc), f.NodeURLs[sc]+"/readyz")
	if st := callAs(t, f.client(), f.asFeed(gd), "POST", f.NodeURLs[gd]+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive", "id": "S-1515"}, nil); st != http.StatusOK {
		t.Fatalf("post a positive result: status %d", st)
	}
	var code struct {
		Code string `json:"code"`
	}
	if st := callAs(t, f.client(), res, "GET", f.NodeURLs[gd]+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
		t.Fatalf("open the code: status %d", st)
	}
	waitUntil(t, "Sichuan's checkpoint seeing 张三 red", 20*time.Second, func() bool {
		var v struct {
			Colour hcx.Colour `json:"colour"`
		}
		st := callAs(t, f.client(), f.asCheckpoint(sc), "POST", f.NodeURLs[sc]+"/v1/verify", map[string]string{"code": code.Code}, &v)
		return st == http.StatusOK && v.Colour == hcx.Red
	})
	if st := callAs(t, f.client(), f.asCheckpoint(gd), "POST", f.NodeURLs[gd]+"/v1/verify", map[string]string{"code": code.Code[:len(code.Code)-4] + "AAAA"}, nil); st == http.StatusOK {
		t.Fatalf("a forged code verified")
	}
	// An envelope that is no JWS is refused (malformed) by the member
	// that reads it.
	hub := exchange.NewHubClient(f.HubURLs, nil).SignWith(f.PKI.Provinces[gd], nil)
	if _, err := hub.Submit(context.Background(), "not.an.envelope"); err == nil {
		t.Fatal("the hub logged a malformed envelope")
	}
	// Anonymous callers read each member's checkpoint until they are over
	// their rate (an instrumented route at every member, too).
	limited := 0
	for _, u := range f.HubURLs {
		for range 25 {
			if st, _ := getText(t, u+"/v1/checkpoint"); st == http.StatusTooManyRequests {
				limited++
			}
		}
	}
	if limited == 0 {
		t.Fatal("25 anonymous reads of a member's checkpoint in a burst: none rate limited")
	}
	waitSettled(t, f)

	for _, p := range devProvinces {
		t.Run("node "+string(p), func(t *testing.T) {
			mfs, text := scrape(t, f, f.asOperator(t, p), f.NodeURLs[p])
			checkFamilies(t, "node "+string(p), mfs, nodeMetrics)
			if strings.Contains(text, string(sub)) {
				t.Errorf("node %s: /metrics carries a resident's subject", p)
			}
			if n := observations(mfs, "hcx_node_follow_lag_seconds"); n == 0 {
				t.Errorf("node %s: no follow lag observed after applying the log", p)
			}
			if v := value(mfs, "hcx_node_log_applied"); v == 0 {
				t.Errorf("node %s: hcx_node_log_applied 0", p)
			}
			for _, m := range mfs["hcx_node_verify_seconds"].GetMetric() {
				if !hasLabels(m, "province", string(p)) {
					t.Errorf("node %s: a verify_seconds series without its province: %v", p, m.GetLabel())
				}
			}
		})
	}
	t.Run("where the traffic went", func(t *testing.T) {
		gdm, _ := scrape(t, f, f.asOperator(t, gd), f.NodeURLs[gd])
		scm, _ := scrape(t, f, f.asOperator(t, sc), f.NodeURLs[sc])
		for _, c := range []struct {
			what string
			n    uint64
		}{
			{"Guangdong's lab ingest", observations(gdm, "hcx_node_ingest_seconds", "kind", "lab")},
			{"Guangdong's publish lag", observations(gdm, "hcx_node_publish_lag_seconds")},
			{"Sichuan's verifications", observations(scm, "hcx_node_verify_seconds", "result", "ok")},
			{"Guangdong's refused code", observations(gdm, "hcx_node_verify_seconds", "result", "rejected")},
		} {
			if c.n == 0 {
				t.Errorf("%s: no observations", c.what)
			}
		}
		if n := observations(gdm, "hcx_node_verify_seconds", "result", "ok"); n != 0 {
			t.Errorf("Guangdong verified no code but observed %d ok verifications", n)
		}
	})

	var leaders, rejected, commits, rateLimited float64
	for i, u := range f.HubURLs {
		t.Run(fmt.Sprintf("hub member %d", i), func(t *testing.T) {
			mfs, _ := scrape(t, f, anonymous, u)
			checkFamilies(t, u, mfs, hubMetrics)
			leaders += value(mfs, "hcx_hub_is_leader")
			rejected += value(mfs, "hcx_hub_rejected_envelopes_total", "reason", "malformed")
			commits += float64(observations(mfs, "hcx_hub_raft_commit_seconds"))
			rateLimited += value(mfs, "hcx_api_rate_limited_total", "role", "anonymous")
			if n := observations(mfs, "hcx_hub_http_request_seconds", "route", "checkpoint"); n == 0 {
				t.Errorf("%s: no checkpoint request observed", u)
			}
			if got := len(mfs["hcx_hub_rejected_envelopes_total"].GetMetric()); got != len(consensus.RejectReasons) {
				t.Errorf("%s: %d rejection reasons, want the %d of the bounded set", u, got, len(consensus.RejectReasons))
			}
		})
	}
	if leaders != 1 || rejected < 1 || commits == 0 || rateLimited < float64(limited) {
		t.Errorf("across the members: %g leaders (want 1), %g malformed envelopes refused (want 1 at least), %g Raft commits observed, %g anonymous callers rate limited (want %d)",
			leaders, rejected, commits, rateLimited, limited)
	}

	t.Run("the auditor's watch", func(t *testing.T) {
		var mfs map[string]*dto.MetricFamily
		waitUntil(t, "an audit pass", 20*time.Second, func() bool {
			mfs, _ = scrape(t, f, anonymous, "http://"+addr)
			return value(mfs, "hcx_audit_runs_total") > 0
		})
		checkFamilies(t, "audit --watch", mfs, auditMetricsWant)
		if observations(mfs, "hcx_audit_run_seconds") == 0 {
			t.Error("audit --watch: an audit pass ran but its duration was not observed")
		}
	})
}

// docs/metrics.md names every metric the components serve, and the sample
// dashboard is a Grafana dashboard whose queries read only those metrics.
func TestMetricsDocsAndDashboardMatchTheMetrics(t *testing.T) {
	served := map[string]bool{}
	for _, list := range [][]metricWant{nodeMetrics, hubMetrics, auditMetricsWant} {
		for _, w := range list {
			served[w.name] = true
		}
	}
	served["hcx_node_witnessed_size"], served["hcx_node_witnessed_short_total"] = true, true // with --cosignatures only
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range served {
		if strings.HasPrefix(name, "hcx_") && !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not name %s", name)
		}
	}
	for _, name := range metricName.FindAllString(string(doc), -1) {
		if !served[name] {
			t.Errorf("docs/metrics.md names %s, which no component serves", name)
		}
	}

	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Panels        []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.SchemaVersion == 0 || len(dash.Panels) == 0 {
		t.Fatalf("docs/grafana-dashboard.json is not a dashboard model: title %q, schema %d, %d panels", dash.Title, dash.SchemaVersion, len(dash.Panels))
	}
	plotted := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			for _, name := range metricName.FindAllString(q.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if base, ok := strings.CutSuffix(name, suffix); ok && served[base] {
						name = base
					}
				}
				if !served[name] {
					t.Errorf("dashboard panel %q reads %s, which no component serves", p.Title, name)
				}
				plotted[name] = true
			}
		}
	}
	for _, name := range []string{"hcx_node_verify_seconds", "hcx_node_ingest_seconds", "hcx_node_publish_lag_seconds", "hcx_node_follow_lag_seconds",
		"hcx_hub_raft_commit_seconds", "hcx_hub_checkpoint_age_seconds", "hcx_node_checkpoint_age_seconds", "hcx_hub_is_leader",
		"hcx_hub_rejected_envelopes_total", "hcx_api_rate_limited_total", "hcx_api_shed_total"} {
		if !plotted[name] {
			t.Errorf("the dashboard has no panel of %s", name)
		}
	}
}

// metricName matches the names of hcx's and the runtime's metrics.
var metricName = regexp.MustCompile(`\b(hcx|go|process)_[a-z_]+[a-z]\b`)
