package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// nodeTrail reads the trail of whichever node runs now, in process.
type nodeTrail struct{ n **node.Node }

func (s nodeTrail) AuditPage(ctx context.Context, after uint64) (*node.AuditPage, error) {
	return (*s.n).AuditTrail(ctx, after, node.MaxAuditPage)
}

// auditTrails audits the whole log of hub with the auditor's store in
// state, then Sichuan's trail.
func auditTrails(t *testing.T, f *fed, hub *consensus.Cluster, state string, n **node.Node) *audit.Report {
	t.Helper()
	size := hub.Members[0].State().Size
	checkpointOf(t, hub.URLs()[0], size)
	v, err := audit.OpenVerifier(state, f.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := audit.Run(ctx, audit.Config{
		Hub:    exchange.NewHubClient(hub.URLs(), nil).SignWith(f.provs["440000"], nil),
		Trails: map[hcx.ProvinceCode]audit.TrailSource{"510000": nodeTrail{n}},
		Logger: quietLogger(),
	}, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Trails) != 1 {
		t.Fatalf("trails checked: %v (unreachable %v)", rep.Trails, rep.Unreachable)
	}
	return rep
}

func trailFinding(rep *audit.Report, kind string, seq uint64) bool {
	for _, f := range rep.Findings {
		if f.Kind == kind && f.Province == "510000" && f.Seq == seq {
			return true
		}
	}
	return false
}

// TestTheAuditorCatchesARechainedTrailOnlyThroughTheLoggedHeads: Sichuan
// logs heads at trail seq 4 and 8. A forger who owns the node's disk cuts
// the trail after entry 6, or rewrites entry 2 and recomputes the chain and
// the head: the trail passes its own check, but the auditor, holding the
// logged heads, reports trail_truncated at 8 and trail_rewritten at 4, from
// a fresh store and from one that had checked the trail before.
func TestTheAuditorCatchesARechainedTrailOnlyThroughTheLoggedHeads(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1)
	member := hub.URLs()[0]
	dir := t.TempDir()
	n, stop := runHeadNode(t, f, dir, 100*time.Millisecond, member)
	for _, seq := range []uint64{4, 8} {
		act(t, n, 4)
		waitHeadLogged(t, n, seq)
	}
	if heads := loggedHeads(t, f, member); len(heads) != 2 {
		t.Fatalf("logged heads %+v, want 4 and 8", heads)
	}
	checked := t.TempDir()
	if rep := auditTrails(t, f, hub, checked, &n); len(rep.Findings) != 0 {
		t.Fatalf("an honest trail: %v", rep.Findings)
	}
	// The check is kept: a second run starts at head 8 and passes.
	if rep := auditTrails(t, f, hub, checked, &n); len(rep.Findings) != 0 {
		t.Fatalf("an honest trail, checked again: %v", rep.Findings)
	}

	reopen := func(forge func() error) {
		t.Helper()
		stop()
		if err := forge(); err != nil {
			t.Fatal(err)
		}
		n, stop = runHeadNode(t, f, dir, -1, member)
		if _, err := n.VerifyAuditTrail(); err != nil {
			t.Fatalf("the forged trail does not pass its own check, so this test proves nothing: %v", err)
		}
	}

	reopen(func() error { return node.TruncateTrail(dir, 6) })
	for name, state := range map[string]string{"fresh": t.TempDir(), "resumed": checked} {
		rep := auditTrails(t, f, hub, state, &n)
		if !trailFinding(rep, audit.KindTrailTruncated, 8) {
			t.Errorf("%s: a trail cut after 6 below the head logged at 8: %v, want trail_truncated at 8", name, rep.Findings)
		}
	}

	reopen(func() error {
		return node.RewriteTrail(dir, 2, func(e *node.AuditEntry) { e.Why = "nothing to see" })
	})
	fresh := auditTrails(t, f, hub, t.TempDir(), &n)
	if !trailFinding(fresh, audit.KindTrailRewritten, 4) {
		t.Errorf("fresh: entry 2 rewritten and rechained: %v, want trail_rewritten at 4", fresh.Findings)
	}
	if resumed := auditTrails(t, f, hub, checked, &n); !trailFinding(resumed, audit.KindTrailRewritten, 8) && !trailFinding(resumed, audit.KindTrailTruncated, 8) {
		t.Errorf("resumed from head 8: %v, want a finding at 8", resumed.Findings)
	}
}
