package consensus

import (
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// BenchmarkLeafReading measures the two per-batch readings of a hub member
// on a batch of 1000 attestations: the check before proposing (Open and
// DecodeBatch, on the receiving member) and the FSM's parseLeaf (on every
// member). The throughput benchmark is Commit3Members; this isolates the
// reading so that before/after comparisons are not drowned by a loaded
// machine.
func BenchmarkLeafReading(b *testing.B) {
	p := newPKI(b, 1)
	ts, err := certs.NewTrustStore(p.root.Cert)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := exchange.ApplyTrustList(ts, p.trust1); err != nil {
		b.Fatal(err)
	}
	env := p.batch(b, "440000", 1, 1000, 0, hcx.Red, 1)
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(int64(len(env)))
		for b.Loop() {
			e, err := exchange.Open(ts, env)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := exchange.DecodeBatch(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parseLeaf", func(b *testing.B) {
		b.SetBytes(int64(len(env)))
		for b.Loop() {
			if _, err := parseLeaf([]byte(env)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
