package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// runHeadNode runs Sichuan's node on dir with AuditHeadEvery every.
func runHeadNode(t *testing.T, f *fed, dir string, every time.Duration, member string) (*node.Node, func()) {
	t.Helper()
	return runNodeWith(t, f, dir, func(c *node.Config) { c.AuditHeadEvery = every }, member)
}

// waitHeadLogged waits until the node reports the head at trail seq as
// logged.
func waitHeadLogged(t *testing.T, n *node.Node, seq uint64) {
	t.Helper()
	want := fmt.Sprintf("hcx_node_audit_head_logged_seq{province=%q} %d\n", "510000", seq)
	waitFor(t, fmt.Sprintf("head %d to be logged", seq), func() bool { return strings.Contains(metricsOf(n), want) })
}

// loggedHeads reads the whole log and returns Sichuan's trail heads in it.
func loggedHeads(t *testing.T, f *fed, member string) []exchange.AuditHead {
	t.Helper()
	cl := exchange.NewHubClient([]string{member}, nil).SignWith(f.provs["510000"], nil)
	ts, err := certs.NewTrustStoreDER(f.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []exchange.AuditHead
	for start := uint64(0); ; {
		page, err := cl.Entries(context.Background(), start, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range page.Entries {
			if h, _ := certs.ParseHeader(raw); h.Typ == exchange.HdrTrust {
				if _, err := exchange.ApplyTrustList(ts, raw); err != nil {
					t.Fatal(err)
				}
				continue
			}
			env, err := exchange.Open(ts, raw)
			if err != nil {
				t.Fatal(err)
			}
			if env.Typ == exchange.TypAuditHead {
				h, err := exchange.DecodeAuditHead(env)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, *h)
			}
		}
		start += uint64(len(page.Entries))
		if len(page.Entries) == 0 || start >= page.Size {
			return out
		}
	}
}

// act adds n entries to the node's trail, as Sichuan's operator reading a
// resident's identity.
func act(t *testing.T, n *node.Node, count int) {
	t.Helper()
	ctx := auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleOperator, Actor: "oidc:https://idp.test#op-1", Name: "op-1", Province: "510000", Method: auth.MethodBearer})
	for i := 0; i < count; i++ {
		if err := n.AuditRead(ctx, node.ActionResidentReadIdentity, "", "a test"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNodeLogsItsTrailHeadWhenTheTrailGrewAndOnlyThen: the node logs its
// trail's head at the hub, once per head (a restart does not log the same
// head again), follows its own head leaf without rejecting it, reports the
// head in its metrics, and logs nothing when AuditHeadEvery is negative.
func TestNodeLogsItsTrailHeadWhenTheTrailGrewAndOnlyThen(t *testing.T) {
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1)
	member := hub.URLs()[0]
	dir := t.TempDir()
	n, stop := runHeadNode(t, f, dir, 100*time.Millisecond, member)
	act(t, n, 3)
	head, err := n.VerifyAuditTrail()
	if err != nil || head.Seq != 3 {
		t.Fatalf("trail head %+v, %v", head, err)
	}
	waitHeadLogged(t, n, 3)
	heads := loggedHeads(t, f, member)
	if len(heads) != 1 || heads[0].Iss != "510000" || heads[0].Seq != 3 || heads[0].Hash != head.Hash {
		t.Fatalf("logged heads %+v, want one of 510000 at 3 with %s", heads, head.Hash)
	}
	size := hub.Members[0].State().Size
	waitFor(t, "the node to follow its own head", func() bool { return n.Applied() >= size })
	if m := metricsOf(n); !strings.Contains(m, `hcx_node_log_entries_rejected_total{province="510000"} 0`) {
		t.Errorf("the node rejected a log entry:\n%s", m)
	}

	// A restart does not log the same head again; a grown trail is logged.
	stop()
	n, stop = runHeadNode(t, f, dir, 100*time.Millisecond, member)
	if !strings.Contains(metricsOf(n), `hcx_node_audit_head_logged_seq{province="510000"} 3`) {
		t.Error("the restarted node forgot its logged head")
	}
	time.Sleep(1500 * time.Millisecond)
	if heads := loggedHeads(t, f, member); len(heads) != 1 {
		t.Fatalf("after a restart with the trail as it was: %d heads logged, want 1", len(heads))
	}
	act(t, n, 2)
	waitHeadLogged(t, n, 5)
	if heads := loggedHeads(t, f, member); len(heads) != 2 || heads[1].Seq != 5 {
		t.Fatalf("logged heads %+v, want 3 then 5", heads)
	}

	// Negative: never.
	stop()
	n, _ = runHeadNode(t, f, dir, -1, member)
	act(t, n, 1)
	time.Sleep(1500 * time.Millisecond)
	if heads := loggedHeads(t, f, member); len(heads) != 2 {
		t.Fatalf("with AuditHeadEvery negative: %d heads logged, want still 2", len(heads))
	}
}
