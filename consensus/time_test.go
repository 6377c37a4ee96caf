package consensus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// batchAt seals a one-attestation batch signed with the given at.
func (p *pki) batchAt(t testing.TB, prov hcx.ProvinceCode, seq uint64, at time.Time) string {
	t.Helper()
	b := &exchange.Batch{Iss: prov, Seq: seq, At: at.Unix(), SKV: 1, Atts: []hcx.Attestation{{
		Subject: subjectOf(int(seq)), Colour: hcx.Green, Reasons: []hcx.Reason{hcx.ReasonReleased},
		Eff: at.Unix(), Exp: at.Add(time.Hour).Unix(), PolicyV: "00112233445566778899aabbccddeeff", N: seq}}}
	s, err := exchange.SealBatch(p.provs[prov], b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// revocation seals trust list ver listing every province signer and
// revoking prov's signer at revokedAt.
func (p *pki) revocation(t testing.TB, ver uint64, prov hcx.ProvinceCode, revokedAt time.Time) string {
	t.Helper()
	tl := &exchange.TrustList{At: time.Now().Unix(), Ver: ver,
		Revoked: []exchange.Revocation{{KID: p.provs[prov].KID, At: revokedAt.Unix()}}}
	for _, s := range p.provs {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	for _, s := range p.hubs {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	rev, err := exchange.SealTrustList(p.root, tl)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// startTrusted starts a three-member cluster and commits the PKI's first
// trust list through its leader.
func startTrusted(t *testing.T, p *pki, withTLS bool) (*Cluster, context.Context, *Hub) {
	t.Helper()
	c := startCluster(t, p, 3, withTLS, nil)
	ctx := ctxT(t, 30*time.Second)
	leader := c.Leader()
	if _, err := leader.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	return c, ctx, leader
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var he *hcx.Error
	if !errors.As(err, &he) || he.Code != code {
		t.Fatalf("%s: err = %v, want %s", what, err, code)
	}
	if code == "clock_skew" && he.Field != "at" {
		t.Fatalf("%s: clock_skew names field %q, want \"at\"", what, he.Field)
	}
}

// TestABackdatedEnvelopeFromARevokedKeyIsRefused is issue 8, finding 6: a
// thief holding a revoked key signs batches dated before the revocation. The
// hub refuses an at far from its clock, and decides revocation at the commit
// time, not at the at the thief wrote.
func TestABackdatedEnvelopeFromARevokedKeyIsRefused(t *testing.T) {
	p := newPKI(t, 3)
	c, ctx, leader := startTrusted(t, p, false)
	revokedAt := time.Now().Add(-time.Minute)
	if _, err := leader.Submit(ctx, p.revocation(t, 2, "440000", revokedAt)); err != nil {
		t.Fatal(err)
	}
	t.Run("reject/at-45-minutes-before-the-revocation-is-clock-skew", func(t *testing.T) {
		b := p.batchAt(t, "440000", 1, revokedAt.Add(-45*time.Minute)) // the certificate is valid from an hour ago
		for _, m := range c.Members {
			_, err := m.Submit(ctx, b)
			wantCode(t, m.ID(), err, "clock_skew")
		}
	})
	t.Run("reject/at-just-before-the-revocation-committed-after-it", func(t *testing.T) {
		b := p.batchAt(t, "440000", 1, revokedAt.Add(-30*time.Second))
		for _, m := range c.Members {
			_, err := m.Submit(ctx, b)
			wantCode(t, m.ID(), err, "key_revoked")
		}
		// The FSM decides the same when the envelope reaches it directly
		// (verified before the revocation committed): at the commit time.
		_, err := leader.apply(ctx, encodeEnvelope(time.Now(), b))
		wantCode(t, "fsm", err, "key_revoked")
	})
	t.Run("reject/fsm-refuses-at-far-from-the-proposers-stamp", func(t *testing.T) {
		b := p.batchAt(t, "110000", 1, time.Now())
		_, err := leader.apply(ctx, encodeEnvelope(time.Now().Add(6*time.Minute), b))
		wantCode(t, "fsm", err, "clock_skew")
	})
	t.Run("other-provinces-are-untouched-and-leaves-carry-commit-times", func(t *testing.T) {
		before := time.Now().Unix()
		b := p.batchAt(t, "510000", 1, time.Now().Add(-4*time.Minute))
		if _, err := c.Members[0].Submit(ctx, b); err != nil {
			t.Fatal(err)
		}
		leaves := converge(t, c.Members...)
		if len(leaves) != 3 {
			t.Fatalf("%d leaves, want the two trust lists and Sichuan's batch", len(leaves))
		}
		for _, m := range c.Members {
			es, err := m.Entries(ctx, 0, 10, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(es.Times) != 3 {
				t.Fatalf("%s: %d times for 3 entries", m.ID(), len(es.Times))
			}
			if got := es.Times[2]; got < before || got > time.Now().Unix() {
				t.Errorf("%s: Sichuan's batch committed at %d, want within [%d, now]: the hub's clock, not the at it carries", m.ID(), got, before)
			}
			for i := 1; i < 3; i++ {
				if es.Times[i] < es.Times[i-1] {
					t.Errorf("%s: commit times go back: %v", m.ID(), es.Times)
				}
			}
		}
	})
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// TestCommitTimesNeverGoBackAndOldEntriesStayReadable: a leader whose clock
// is behind the last commit time (a new leader, a clock stepped back) does
// not make the log's times go back, across a restart too; and an entry from
// before commit times (an unstamped command) still applies, decided at its
// signed at, and is served with time 0.
func TestCommitTimesNeverGoBackAndOldEntriesStayReadable(t *testing.T) {
	p := newPKI(t, 1)
	dir := t.TempDir()
	t0 := time.Now().Truncate(time.Second)
	clk := &clock{now: t0}
	h := startOne(t, p, dir, func(c *Config) { c.Now = clk.Now })
	ctx := ctxT(t, 30*time.Second)
	if _, err := h.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	// A legacy, unstamped command.
	legacy := p.batchAt(t, "440000", 1, t0.Add(-time.Hour))
	if _, err := h.apply(ctx, encodeCmd(cmdEnvelope, []byte(legacy))); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(-3 * time.Minute))
	if _, err := h.Submit(ctx, p.batchAt(t, "440000", 2, t0.Add(-4*time.Minute))); err != nil {
		t.Fatal(err)
	}
	h.Close()
	clk.Set(t0.Add(-2 * time.Minute))
	h = startOne(t, p, dir, func(c *Config) { c.Now = clk.Now })
	defer h.Close()
	if _, err := h.Submit(ctx, p.batchAt(t, "440000", 3, t0.Add(-2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(time.Minute))
	if _, err := h.Submit(ctx, p.batchAt(t, "440000", 4, t0)); err != nil {
		t.Fatal(err)
	}
	es, err := h.Entries(ctx, 0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{t0.Unix(), 0, t0.Unix(), t0.Unix(), t0.Add(time.Minute).Unix()}
	if len(es.Times) != len(want) {
		t.Fatalf("times %v, want %v", es.Times, want)
	}
	for i := range want {
		if es.Times[i] != want[i] {
			t.Fatalf("times %v, want %v", es.Times, want)
		}
	}
	if got := es.Committed(1); !got.IsZero() {
		t.Errorf("a legacy leaf's commit time reads %v, want zero (readers decide at its at)", got)
	}
}
