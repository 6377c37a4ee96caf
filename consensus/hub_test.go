package consensus

import (
	"errors"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

func codeOf(err error) string {
	var he *hcx.Error
	if errors.As(err, &he) {
		return he.Code
	}
	return ""
}

func TestSingleMemberSubmitIsIdempotentAndOrdered(t *testing.T) {
	p := newPKI(t, 1)
	h := startOne(t, p, t.TempDir(), nil)
	defer h.Close()
	ctx := ctxT(t, 20*time.Second)

	// Before the trust list, a province batch is from an unknown issuer.
	b1 := p.batch(t, "440000", 1, 3, 0, hcx.Red, 1)
	if _, err := h.Submit(ctx, b1); codeOf(err) != "unknown_issuer" {
		t.Fatalf("batch before trust list: got %v, want unknown_issuer", err)
	}
	tr, err := h.Submit(ctx, p.trust1)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Index != 0 {
		t.Fatalf("trust list index %d, want 0", tr.Index)
	}
	r1, err := h.Submit(ctx, b1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.Submit(ctx, b1)
	if err != nil || again != r1 {
		t.Fatalf("resubmission: got %+v %v, want %+v", again, err, r1)
	}
	other := p.batch(t, "440000", 1, 2, 100, hcx.Green, 1)
	_, err = h.Submit(ctx, other)
	var he *hcx.Error
	if !errors.As(err, &he) || he.Code != "sequence_conflict" || he.Detail["expected"] != uint64(2) {
		t.Fatalf("same seq other bytes: got %v, want sequence_conflict expected 2", err)
	}
	gap := p.batch(t, "440000", 5, 2, 100, hcx.Green, 1)
	if _, err := h.Submit(ctx, gap); !errors.As(err, &he) || he.Code != "sequence_conflict" || he.Detail["expected"] != uint64(2) {
		t.Fatalf("gap: got %v, want sequence_conflict expected 2", err)
	}
	b2 := p.batch(t, "440000", 2, 1, 0, hcx.Yellow, 2)
	r2, err := h.Submit(ctx, b2)
	if err != nil || r2.Index != 2 {
		t.Fatalf("second batch: %+v %v", r2, err)
	}
	es, err := h.Entries(ctx, 0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if es.Size != 3 || len(es.Entries) != 3 || es.Entries[1] != b1 {
		t.Fatalf("entries: size %d, %d entries", es.Size, len(es.Entries))
	}
	ans, err := h.Subject(ctx, subjectOf(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Attestations) != 1 || ans.Attestations[0].Colour != hcx.Yellow || ans.Attestations[0].Index != 2 || ans.Applied != 3 {
		t.Fatalf("subject: %+v", ans)
	}
	// Long-poll: a wait for index 3 returns when it commits.
	done := make(chan exchange.Entries, 1)
	go func() {
		e, _ := h.Entries(ctx, 3, 10, 5*time.Second)
		done <- e
	}()
	time.Sleep(50 * time.Millisecond)
	b3 := p.batch(t, "110000", 1, 1, 7, hcx.Green, 1)
	if _, err := h.Submit(ctx, b3); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if len(e.Entries) != 1 || e.Entries[0] != b3 {
			t.Fatalf("long-poll got %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll did not return")
	}
	trust, err := h.Trust(ctx)
	if err != nil || trust != p.trust1 {
		t.Fatalf("trust: %v", err)
	}
}
