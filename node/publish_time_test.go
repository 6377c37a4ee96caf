package node_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// TestABatchTheHubRefusesAsStaleIsSignedAgain: the hub refuses an envelope
// whose at is more than 5 minutes from its clock. A node whose pending batch
// was signed long ago (its clock was wrong, or it was down before the batch
// went out) signs the same attestations again under the same sequence with
// its clock now, instead of resubmitting the stale bytes forever.
func TestABatchTheHubRefusesAsStaleIsSignedAgain(t *testing.T) {
	now := time.Now()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	root, err := certs.NewRoot("test root", now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(req certs.IssueRequest) *certs.Signer {
		req.NotBefore, req.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		s, err := certs.Issue(root, req)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	gd := issue(certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "province-440000"})
	hubSigner := issue(certs.IssueRequest{Role: certs.RoleHub, Name: "hub-1"})
	hub, err := consensus.New(consensus.Config{ID: "hub-1", Dir: t.TempDir(), Bootstrap: true, RootDER: root.Cert.Raw,
		Signer: hubSigner, Logger: log, Handler: api.HubHandlerFunc(log, api.HubOptions{}), InsecurePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ctx, cancel := context.WithTimeout(auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleFeed, Actor: "cert:test-feed", Province: "440000", Method: auth.MethodRequestToken}), 30*time.Second)
	defer cancel()
	if err := hub.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	tl, err := exchange.SealTrustList(root, &exchange.TrustList{At: now.Unix(), Ver: 1, Certs: []exchange.TrustedCert{exchange.TrustedCertOf(gd)}})
	if err != nil {
		t.Fatal(err)
	}
	// The node signs its requests with its own province key on the real
	// clock (request tokens allow a minute of skew; its envelopes carry
	// the slow clock).
	client := exchange.NewHubClient([]string{hub.URL()}, nil).SignWith(gd, nil)
	if _, err := exchange.NewHubClient([]string{hub.URL()}, nil).SignWith(root, nil).Submit(ctx, tl); err != nil {
		t.Fatal(err)
	}
	ts, err := certs.NewTrustStore(root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange.ApplyTrustList(ts, tl); err != nil {
		t.Fatal(err)
	}

	clk := &testClock{now: now.Add(-10 * time.Minute)} // the node's clock is 10 minutes slow
	n, err := node.New(node.Config{Province: "440000", Dir: t.TempDir(), Signer: gd, RootDER: root.Cert.Raw,
		SubjectKey: certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)}, FieldKeys: map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1,
		RulesPath: "../configs/rules/440000.yaml", Hub: client, Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { n.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	r, err := n.Register(ctx, node.RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(ctx, r.Subject, node.Event{Lab: &policy.LabResult{Positive: true}}); err != nil {
		t.Fatal(err)
	}
	// The first batch is sealed with the slow clock and refused as stale.
	time.Sleep(1500 * time.Millisecond)
	if got := batches(ctx, t, hub, ts); len(got) != 0 {
		t.Fatalf("the hub logged a batch signed 10 minutes ago: %v", got)
	}
	clk.Set(time.Now()) // the operator fixes the clock
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := batches(ctx, t, hub, ts)
		if len(got) == 1 {
			if got[0].Seq != 1 || len(got[0].Atts) != 1 || got[0].Atts[0].Subject != r.Subject || got[0].Atts[0].Colour != hcx.Red {
				t.Fatalf("logged batch %+v, want sequence 1 with the resident's red attestation", got[0])
			}
			if d := time.Since(time.Unix(got[0].At, 0)); d > time.Minute {
				t.Fatalf("logged batch at is %s old, want the clock after the fix", d)
			}
			return
		}
		if len(got) > 1 || time.Now().After(deadline) {
			t.Fatalf("%d batches in the log, want the one signed again", len(got))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// batches reads the colour batches in the hub's log, verified against ts.
func batches(ctx context.Context, t *testing.T, hub *consensus.Hub, ts *certs.TrustStore) []*exchange.Batch {
	t.Helper()
	es, err := hub.Entries(ctx, 0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []*exchange.Batch
	for _, e := range es.Entries {
		env, err := exchange.Open(ts, e)
		if err != nil {
			t.Fatal(err)
		}
		if env.Typ != exchange.TypBatch {
			continue
		}
		b, err := exchange.DecodeBatch(env)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
