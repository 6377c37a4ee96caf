package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

// movedClock is the federation's clock, moved by the test one day at a time.
type movedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *movedClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Issue 8, finding 7: the same answer on every day, in every province. A
// resident registered at Guangdong and at Sichuan has a positive PCR test on
// day 0 and the negative PCR tests Guangdong's rules ask for (5, on days
// 9–13; release after 14 days). On every day 0–20 a code issued at the home
// node verifies identically at every node, and the answer is Guangdong's
// rules' own answer that day; Sichuan's own status and codes agree.
func TestEndToEndSameAnswerOnEveryDayInEveryProvince(t *testing.T) {
	day0 := time.Now().UTC().Truncate(time.Second)
	clock := &movedClock{t: day0}
	var logOut io.Writer = io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provinces := []hcx.ProvinceCode{"110000", "440000", "510000"}
	f, err := startFederation(ctx, federationConfig{
		Dir: t.TempDir(), Provinces: provinces, HubMembers: 1, Now: clock.Now,
		Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	gd := f.NodeURLs["440000"]
	rules, err := node.LoadRules(filepath.Join(f.Dir, "rules", "440000.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hub := exchange.NewHubClient(f.HubURLs, nil).SignWith(f.PKI.Provinces["440000"], clock.Now)

	// The resident is enrolled at both nodes; each day they log in again
	// (a session lasts hours, the test's clock moves by days).
	reg := map[string]string{"doc_type": "CN-ID", "doc_number": "440106199003070028", "name": "张三"}
	var sub string
	login := func(p hcx.ProvinceCode) caller {
		s, c := f.asResident(t, p, reg)
		if string(s) != sub {
			t.Fatalf("subjects differ between provinces: %s and %s", sub, s)
		}
		return c
	}
	{
		s, _ := f.asResident(t, "440000", reg)
		sub = string(s)
	}
	for _, url := range f.NodeURLs {
		waitReady(t, url)
	}

	var facts policy.Facts // what Guangdong knows, kept by the test
	for d := 0; d <= 20; d++ {
		now := day0.Add(time.Duration(d) * 24 * time.Hour)
		clock.Set(now)
		var result string
		switch {
		case d == 0:
			result = "positive"
		case d >= 9 && d <= 13:
			result = "negative"
		}
		if result != "" {
			if st := callAs(t, f.client(), f.asFeed("440000"), "POST", gd+"/v1/residents/"+sub+"/labs", map[string]string{"result": result, "kind": "pcr"}, nil); st != http.StatusOK {
				t.Fatalf("day %d: lab result: status %d", d, st)
			}
			facts.Labs = append(facts.Labs, policy.LabResult{At: now, Positive: result == "positive", Kind: "pcr"})
		}
		for _, n := range f.Nodes {
			if _, err := n.RunDue(ctx); err != nil {
				t.Fatalf("day %d: scheduler at %s: %v", d, n.Province(), err)
			}
		}
		settle(t, f, hub, d)

		want, err := rules.Decide(&facts, now)
		if err != nil {
			t.Fatal(err)
		}
		wantReasons := slices.Clone(want.Reasons)
		slices.Sort(wantReasons)

		var code struct {
			Code   string     `json:"code"`
			Colour hcx.Colour `json:"colour"`
		}
		if st := callAs(t, f.client(), login("440000"), "GET", gd+"/v1/residents/"+sub+"/code", nil, &code); st != http.StatusOK {
			t.Fatalf("day %d: code: status %d", d, st)
		}
		if code.Colour != want.Colour {
			t.Errorf("day %d: Guangdong's code says %s, its rules say %s", d, code.Colour, want.Colour)
		}
		for _, p := range provinces {
			var v struct {
				Valid   bool         `json:"valid"`
				Colour  hcx.Colour   `json:"colour"`
				Reasons []hcx.Reason `json:"reasons"`
			}
			if st := callAs(t, f.client(), f.asCheckpoint(p), "POST", f.NodeURLs[p]+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK || !v.Valid {
				t.Fatalf("day %d: verify at %s: status %d %+v", d, p, st, v)
			}
			if v.Colour != want.Colour || !slices.Equal(v.Reasons, wantReasons) {
				t.Errorf("day %d: verify at %s says %s %v; Guangdong's rules say %s %v", d, p, v.Colour, v.Reasons, want.Colour, wantReasons)
			}
		}
		// Sichuan's own status and its codes include Guangdong's attestation.
		var r struct {
			Status struct {
				Colour       hcx.Colour          `json:"colour"`
				DecidedBy    []hcx.ProvinceCode  `json:"decided_by"`
				Release      []string            `json:"release"`
				ReleaseTexts []map[string]string `json:"release_texts"`
			} `json:"status"`
		}
		sc := login("510000")
		callAs(t, f.client(), sc, "GET", f.NodeURLs["510000"]+"/v1/residents/"+sub, nil, &r)
		// Release conditions, Sichuan's own or "decided by Guangdong", in four languages (issue 10).
		if len(r.Status.ReleaseTexts) != len(r.Status.Release) || want.Colour != hcx.Green && len(r.Status.ReleaseTexts) == 0 {
			t.Errorf("day %d: release %q but release_texts %v", d, r.Status.Release, r.Status.ReleaseTexts)
		}
		for i, rt := range r.Status.ReleaseTexts {
			if i < len(r.Status.Release) && r.Status.Release[i] != rt["zh"]+" / "+rt["en"] || rt["ja"] == "" || rt["ko"] == "" {
				t.Errorf("day %d: release %q, texts %v", d, r.Status.Release, rt)
			}
		}
		var scCode struct {
			Colour hcx.Colour `json:"colour"`
		}
		callAs(t, f.client(), sc, "GET", f.NodeURLs["510000"]+"/v1/residents/"+sub+"/code", nil, &scCode)
		if r.Status.Colour != want.Colour || scCode.Colour != want.Colour {
			t.Errorf("day %d: Sichuan's status says %s and its code %s; Guangdong's rules say %s", d, r.Status.Colour, scCode.Colour, want.Colour)
		}
		if want.Colour != hcx.Green && !slices.Contains(r.Status.DecidedBy, "440000") {
			t.Errorf("day %d: Sichuan's status is decided by %v, want Guangdong's attestation named", d, r.Status.DecidedBy)
		}
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "day %2d: %s %v at every node\n", d, want.Colour, wantReasons)
		}
	}
}

// settle waits until every node has published what it decided and every node
// has applied the whole hub log.
func settle(t *testing.T, f *federation, hub *exchange.HubClient, d int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for p, n := range f.Nodes {
		for n.Backlog() > 0 {
			if ctx.Err() != nil {
				t.Fatalf("day %d: %s still has %d attestations to publish", d, p, n.Backlog())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	page, err := hub.Entries(ctx, 0, 1, 0)
	if err != nil {
		t.Fatalf("day %d: hub log size: %v", d, err)
	}
	for p, n := range f.Nodes {
		for n.Applied() < page.Size {
			if ctx.Err() != nil {
				t.Fatalf("day %d: %s applied %d of %d log entries", d, p, n.Applied(), page.Size)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
