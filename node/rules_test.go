package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// An explanation under the rules in force gives each resident the decision
// the node holds for them: it decides from the same facts, the risk areas
// of their stays and their colour in force included (decisionFacts).
func TestExplainUnderTheRulesInForceIsTheNodesDecision(t *testing.T) {
	n, clock := newTravelNode(t)
	subs := registerN(t, n, 4)
	now := clock.now()
	traveller, positive, contact, nobody := subs[0], subs[1], subs[2], subs[3]
	if _, err := n.IngestItinerary(testCtx, traveller, itin(stayDay(localDate(now, 3), "440106"))); err != nil {
		t.Fatal(err)
	}
	designate(t, n, "440100", exchange.RiskHigh, now.Add(-5*24*time.Hour), nil)
	if _, err := n.RunRiskJobs(testCtx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(feedCtx, positive, Event{Lab: &policy.LabResult{Positive: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(feedCtx, contact, Event{Contact: &policy.ContactFlag{Issuer: "440000"}}); err != nil {
		t.Fatal(err)
	}
	want := map[hcx.Subject]string{traveller: "high-risk-travel", positive: "positive-lab-result", contact: "close-contact", nobody: "default"}
	for _, sub := range subs {
		r, err := n.Resident(testCtx, sub)
		if err != nil {
			t.Fatal(err)
		}
		ex, err := n.ExplainResident(testCtx, ExplainRequest{Subject: sub})
		if err != nil {
			t.Fatal(err)
		}
		d := ex.Decision
		if d.Rule != want[sub] || d.Colour != r.Status.Colour || d.Rule != r.Status.Rule || fmt.Sprint(d.Reasons) != fmt.Sprint(r.Status.Reasons) ||
			d.Vaccinated != r.Status.Vaccinated || len(d.Release) != len(r.Status.ReleaseTexts) || ex.Policy != n.PolicyVersion() || ex.Current.Colour != r.Status.Colour {
			t.Errorf("resident %s: explained %+v, the node holds %+v", sub, d, r.Status)
		}
		for i := range d.Release {
			if d.Release[i].Texts != r.Status.ReleaseTexts[i] {
				t.Errorf("resident %s: release %d explained %v, held %v", sub, i, d.Release[i].Texts, r.Status.ReleaseTexts[i])
			}
		}
	}
	if _, err := n.ExplainResident(testCtx, ExplainRequest{Subject: "aaaaaaaaaaaaaaaaaaaaaaaaaa"}); !errors.Is(err, ErrUnknownResident) {
		t.Errorf("explain an unknown resident: %v", err)
	}
}

// A publish whose reload fails (here: the node is closing, so the trail
// cannot record it) leaves the rule file as it was: a restart must not put
// in force what the operator was told failed.
func TestPublishThatDoesNotTakeEffectPutsTheFileBack(t *testing.T) {
	n, path, good := openNodeWithOwnRules(t, time.Now)
	before := n.PolicyVersion()
	n.Close()
	_, err := n.PublishRules(testCtx, bytes.Replace(good, []byte("days: 14"), []byte("days: 21"), 1), before)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("publish at a closed node: %v, want ErrClosed", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, good) {
		t.Error("the rule file is not put back after a publish that did not take effect")
	}
	if n.PolicyVersion() != before {
		t.Error("the rules in force changed")
	}
}

// Of publishes against the same version at once exactly one wins; the
// others are told the rules changed, and the file is the winner's.
func TestConcurrentPublishesOneWins(t *testing.T) {
	n, path, good := openNodeWithOwnRules(t, time.Now)
	defer n.Close()
	base := n.PolicyVersion()
	const racers = 6
	srcs := make([][]byte, racers)
	errs := make([]error, racers)
	vers := make([]string, racers)
	var wg sync.WaitGroup
	for i := range racers {
		srcs[i] = bytes.Replace(good, []byte("days: 14"), fmt.Appendf(nil, "days: %d", 20+i), 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := n.PublishRules(testCtx, srcs[i], base)
			errs[i] = err
			if err == nil {
				vers[i] = p.Version
			}
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		var he *hcx.Error
		switch {
		case err == nil && won < 0:
			won = i
		case errors.As(err, &he) && he.Code == CodeRulesChanged:
		default:
			t.Errorf("publish %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no publish won")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, srcs[won]) {
		t.Error("the rule file is not the winner's")
	}
	if prev, _ := os.ReadFile(path + ".prev"); !bytes.Equal(prev, good) {
		t.Error(".prev is not the file before the publish")
	}
	if n.PolicyVersion() != vers[won] {
		t.Errorf("in force %s, the winner published %s", n.PolicyVersion(), vers[won])
	}
}

// A rule file the node cannot write (a read-only mount; here, a directory
// in the way of <file>.prev) is a 503 that says so; nothing changes.
func TestPublishToAnUnwritableRuleFileSaysSo(t *testing.T) {
	n, path, good := openNodeWithOwnRules(t, time.Now)
	defer n.Close()
	before := n.PolicyVersion()
	if err := os.MkdirAll(path+".prev/in-the-way", 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := n.PublishRules(testCtx, bytes.Replace(good, []byte("days: 14"), []byte("days: 21"), 1), before)
	var he *hcx.Error
	if !errors.As(err, &he) || he.Class != hcx.EUnavailable || he.Code != CodeRulesNotWritable || strings.Contains(he.Message, path) {
		t.Fatalf("publish to an unwritable file: %v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, good) || n.PolicyVersion() != before {
		t.Error("a publish that could not write changed the rules")
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}
