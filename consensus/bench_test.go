package consensus

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// benchProvinces submit concurrently, each its own batches in sequence, as
// the provinces' publishers do.
var benchProvinces = []hcx.ProvinceCode{"110000", "120000", "130000", "140000", "150000", "210000", "220000", "230000",
	"310000", "320000", "330000", "340000", "350000", "360000", "370000", "410000", "420000", "430000", "440000", "450000",
	"460000", "500000", "510000", "520000", "530000", "540000", "610000", "620000", "630000", "640000", "650000"}

// BenchmarkCommit3Members measures attestations committed per second on a
// 3-member cluster (mutual TLS between members) with batches of 1000, and
// the commit latency of one batch under that load. Each op is one batch.
//
//	go test -run '^$' -bench Commit3Members -benchtime 600x ./consensus
func BenchmarkCommit3Members(b *testing.B) {
	for _, conc := range []int{8, 31} {
		b.Run(fmt.Sprintf("batch1000/provinces%d", conc), func(b *testing.B) { benchCommit(b, conc, 1000, true, 0) })
		b.Run(fmt.Sprintf("batch1000/provinces%d/plain-tcp", conc), func(b *testing.B) { benchCommit(b, conc, 1000, false, 0) })
	}
	// The baseline for turning pipelined replication off (DESIGN.md,
	// "Replication is not pipelined"): Raft's default of 2 RPCs in flight.
	b.Run("batch1000/provinces8/pipelined", func(b *testing.B) { benchCommit(b, 8, 1000, true, 2) })
}

func benchCommit(b *testing.B, provinces, perBatch int, withTLS bool, rpcsInFlight int) {
	now := time.Now()
	root, err := certs.NewRoot("bench root", now, 48*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	p := &pki{root: root, provs: map[hcx.ProvinceCode]*certs.Signer{}}
	tl := &exchange.TrustList{At: now.Unix(), Ver: 1}
	for _, code := range benchProvinces[:provinces] {
		s, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: code, Name: "s" + string(code), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		p.provs[code] = s
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	for i := 0; i < 3; i++ {
		s, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleHub, Name: fmt.Sprintf("hub-%d", i+1), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		p.hubs = append(p.hubs, s)
	}
	if p.trust1, err = exchange.SealTrustList(root, tl); err != nil {
		b.Fatal(err)
	}
	// Batches are made before the clock starts: signing is the provinces'
	// work, not the hub's.
	perProv := (b.N + provinces - 1) / provinces
	batches := make([][]string, provinces)
	var gen sync.WaitGroup
	for pi := range batches {
		gen.Add(1)
		go func() {
			defer gen.Done()
			for s := 0; s < perProv; s++ {
				batches[pi] = append(batches[pi], p.batch(b, benchProvinces[pi], uint64(s+1), perBatch, (pi*perProv+s)*perBatch, hcx.Red, 1))
			}
		}()
	}
	gen.Wait()
	cc := ClusterConfig{N: 3, Dir: b.TempDir(), RootDER: root.Cert.Raw, Signers: p.hubs, Logger: testLogger(b), NoAPI: true,
		Tune: func(c *Config) { c.rpcsInFlight = rpcsInFlight }}
	if withTLS {
		for i := 0; i < 3; i++ {
			cc.TLS = append(cc.TLS, hubTLS(b, root, fmt.Sprintf("hub-%d", i+1)))
		}
	} else {
		cc.InsecurePlaintext = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, cc)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	leader := c.Leader()
	if _, err := leader.Submit(ctx, p.trust1); err != nil {
		b.Fatal(err)
	}
	lat := make([][]time.Duration, provinces)
	busy0 := make([]int64, 3)
	for i, h := range c.Members {
		busy0[i] = h.fsm.busy.Load()
	}
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	total := 0
	for pi := range batches {
		n := min(perProv, b.N-pi*perProv)
		if n <= 0 {
			break
		}
		total += n
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, env := range batches[pi][:n] {
				s := time.Now()
				if _, err := leader.Submit(ctx, env); err != nil {
					b.Error(err)
					return
				}
				lat[pi] = append(lat[pi], time.Since(s))
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(total*perBatch)/el.Seconds(), "atts/s")
	for i, h := range c.Members {
		if h == leader {
			b.ReportMetric(100*float64(h.fsm.busy.Load()-busy0[i])/float64(el), "leader-fsm-busy-%")
			b.ReportMetric(float64(total)/float64(h.fsm.batches.Load()), "entries/ApplyBatch")
		}
	}
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
