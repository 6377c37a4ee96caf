package node

import (
	"context"

	"github.com/hcxfed/hcx/exchange"
	"testing"
	"time"
)

// BenchmarkVerifyWithCheckHistory compares Verify with the receipt queued
// for the check history (a checkpoint's call) and without (no caller):
// the background writer keeps the difference to the cost of a channel send.
//
//	go test ./node -run '^$' -bench VerifyWithCheckHistory -benchtime 2s
func BenchmarkVerifyWithCheckHistory(b *testing.B) {
	pki := newTestPKI(b, "440000")
	n := openTestNode(b, pki, "440000", b.TempDir(), time.Now)
	defer n.Close()
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(b, 1)}}); err != nil {
		b.Fatal(err)
	}
	sub := registerN(b, n, 1)[0]
	c, err := n.IssueCode(testCtx, sub, true)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{{"recorded", checkpointCtx("440000", "bench gate")}, {"not-recorded", context.Background()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := n.Verify(bc.ctx, c.QR); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(n.checks.dropped.Load()), "dropped")
		})
	}
}
