package node

import (
	"context"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// BenchmarkVerifyForeignCode is Verify at Sichuan's node of a Guangdong
// code, with the receipt queued for Guangdong (a checkpoint's call) and
// without (no caller): what the receipts add to Verify is a channel send.
// The queue is drained (SendReceipts, which seals nothing: no box key) so
// that it never fills.
//
//	go test ./node -run '^$' -bench VerifyForeignCode -benchtime 2s
func BenchmarkVerifyForeignCode(b *testing.B) {
	pki := newTestPKI(b, "440000", "510000")
	gd := openTestNode(b, pki, "440000", b.TempDir(), time.Now)
	defer gd.Close()
	sc := openTestNode(b, pki, "510000", b.TempDir(), time.Now)
	defer sc.Close()
	for _, n := range []*Node{gd, sc} {
		if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(b, 1)}}); err != nil {
			b.Fatal(err)
		}
	}
	sub := registerN(b, gd, 1)[0]
	c, err := gd.IssueCode(testCtx, sub, true)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{{"receipt-queued", checkpointCtx("510000", "bench gate")}, {"no-receipt", context.Background()}} {
		b.Run(bc.name, func(b *testing.B) {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
						sc.SendReceipts()
						sc.rcpt.held = map[hcx.ProvinceCode][]queuedReceipt{}
						sc.rcpt.nHeld = 0
					}
				}
			}()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := sc.Verify(bc.ctx, c.QR); err != nil {
						b.Fatal(err)
					}
				}
			})
			close(stop)
			<-done
			b.ReportMetric(float64(sc.ReceiptStats().Dropped), "dropped")
		})
	}
}
