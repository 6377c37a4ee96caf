package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
)

// TestBenchScenarios runs hcx bench for each scenario against a real
// federation, as a second client process would: through --dir (its CA and
// identity provider) and the node URLs. It checks the JSON report, not
// speeds.
func TestBenchScenarios(t *testing.T) {
	f := startTestFederation(t, 1)
	for _, s := range benchScenarios {
		t.Run(s, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"--dir", f.Dir, "--node", f.NodeURLs["440000"], "--checkpoint-node", f.NodeURLs["510000"],
				"--scenario", s, "--duration", "700ms", "--baseline", "100ms", "--residents", "3", "--batch", "50", "--feed-lines", "20", "--json"}
			if s == "verify" {
				args = append(args, "--rate", "40") // open loop, under the checkpoint's 50/s
			}
			if err := run(context.Background(), append([]string{"bench"}, args...), &out, &errOut); err != nil {
				t.Fatalf("hcx bench: %v\n%s", err, errOut.String())
			}
			var rep benchReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("report %q: %v", out.String(), err)
			}
			if rep.Residents != 3 || rep.RawVerify <= 0 || rep.RawSign <= 0 || !rep.Loopback || len(rep.Scenarios) != 1 {
				t.Fatalf("report: %+v", rep)
			}
			r := rep.Scenarios[0]
			if r.Scenario != s || r.Ops == 0 || r.Items == 0 || r.Failed != 0 || r.ItemsFailed != 0 || r.Throttled != 0 || len(r.Errors) != 0 {
				t.Fatalf("%s: %+v\n%s", s, r, errOut.String())
			}
			if r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
				t.Errorf("%s latency: %+v", s, r.Latency)
			}
			if s == "batch" && r.Items != 50*r.Ops {
				t.Errorf("batch: %d codes answered in %d requests of 50", r.Items, r.Ops)
			}
			if (s == "verify" || s == "batch") && rep.Ratios[s+"/raw_verify"] <= 0 {
				t.Errorf("%s: no ratio: %v", s, rep.Ratios)
			}
			if !strings.Contains(errOut.String(), "setup: 3 residents") {
				t.Errorf("setup not reported: %s", errOut.String())
			}
		})
	}
}

// TestBenchFlags: -h exits cleanly; bad flags say which and what to give.
func TestBenchFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "-h"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "-scenario") || errOut.Len() != 0 {
		t.Fatalf("-h: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
	dir := t.TempDir()
	for _, c := range []struct{ args, want string }{
		{"--scenario nap", `--scenario "nap"`},
		{"--duration 0s", "--duration 0s"},
		{"--duration 2m", "at most 50s"},
		{"--workers 0", "--workers 0"},
		{"--batch 10001", "--batch 10001"},
		{"--rate -1", "--rate -1"},
		{"--node ftp://x", "--node"},
		{"--province 99", "--province"},
		{"--feed-lines 0", "--feed-lines 0"},
		{"extra", `unexpected argument "extra"`},
		{"--workers x", "invalid value"},
		{"--scenario verify", "no dev CA in " + dir},
	} {
		errOut.Reset()
		err := run(context.Background(), append([]string{"bench", "--dir", dir}, strings.Fields(c.args)...), &out, &errOut)
		if err == nil || !strings.Contains(err.Error()+errOut.String(), c.want) {
			t.Errorf("%s: %v (want %q)", c.args, err, c.want)
		}
	}
}

// TestLatencyHistogram: percentiles are within a bucket (1/16) of the
// truth, and the histogram's size does not grow with the samples.
func TestLatencyHistogram(t *testing.T) {
	var h latencyHistogram
	for i := 1; i <= 100_000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 99.9}} {
		if got := h.quantile(c.q); got < c.want || got > c.want*(1+1.0/histSub)+0.001 {
			t.Errorf("q%.3f = %.3f ms, want %.3f (+1/%d)", c.q, got, c.want, histSub)
		}
	}
	if h.summary().Max != 100 {
		t.Errorf("max %v", h.summary().Max)
	}
	h.record(time.Hour * 1000) // beyond the last octave: the last bucket, max exact
	if h.counts[len(h.counts)-1] != 1 || h.summary().Max != float64((1000*time.Hour).Microseconds())/1000 {
		t.Errorf("overflow: last bucket %d, max %v", h.counts[len(h.counts)-1], h.summary().Max)
	}
	for us := int64(1); us < 1<<20; us = us*3 + 1 {
		if i := histBucket(us); histUpper(i) <= us || (i%histSub > 0 && histUpper(i-1) > us) {
			t.Errorf("%d µs in bucket %d [.., %d)", us, i, histUpper(i))
		}
	}
}

// TestDevBenchLimits: hcx dev --bench-limits lifts exactly the per-caller
// rates of the callers hcx bench plays, and keeps the in-flight bounds.
func TestDevBenchLimits(t *testing.T) {
	dev, b := devLimitsConfig(), devBenchLimitsConfig()
	for _, r := range []auth.Role{auth.RoleCheckpoint, auth.RoleResident, auth.RoleFeed} {
		if dev.PerRole[r].Rate == rate.Inf || b.PerRole[r].Rate != rate.Inf {
			t.Errorf("%s: dev %v, bench %v", r, dev.PerRole[r], b.PerRole[r])
		}
	}
	for _, r := range []auth.Role{auth.RoleAnonymous, auth.RoleOperator, auth.RoleAuditor} {
		if b.PerRole[r] != dev.PerRole[r] || b.PerRole[r].Rate == rate.Inf {
			t.Errorf("%s: bench %v, dev %v", r, b.PerRole[r], dev.PerRole[r])
		}
	}
	if len(b.InFlight) == 0 || b.InFlight[api.PriorityCheckpoint] != dev.InFlight[api.PriorityCheckpoint] {
		t.Errorf("in-flight bounds: %v", b.InFlight)
	}
}
