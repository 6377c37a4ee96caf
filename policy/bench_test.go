package policy

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// syntheticResident makes a resident with n events spread over the last 30
// days: labs, travel with risk areas, declarations, venue exposures,
// vaccinations, and now and then a contact flag or an order. The mix is
// chosen so that residents end up green, yellow and red.
func syntheticResident(r *rand.Rand, n int) *Facts {
	divs := []hcx.DivisionCode{"110105", "310115", "440106", "440305", "510104", "510107"}
	at := func() time.Time { return t0.Add(-time.Duration(r.Int64N(int64(30 * day)))) }
	f := &Facts{Current: hcx.Green, CurrentSince: t0.Add(-90 * day)}
	f.RiskAreas = []RiskArea{
		{Div: "440106", Level: "medium", From: ago(20 * day), Issuer: "440000"},
		{Div: "510100", Level: "high", From: ago(10 * day), To: ptr(ago(2 * day)), Issuer: "510000"},
	}
	for i := 0; len(f.Labs)+len(f.Travel)+len(f.Declarations)+len(f.Venues)+len(f.Vaccinations)+len(f.Contacts)+len(f.Orders)+len(f.RiskAreas) < n; i++ {
		switch k := r.IntN(100); {
		case k < 45:
			f.Labs = append(f.Labs, LabResult{At: at(), Kind: []string{"pcr", "antigen"}[r.IntN(2)], Positive: r.IntN(60) == 0})
		case k < 70:
			f.Travel = append(f.Travel, TravelRecord{Div: divs[r.IntN(len(divs))], At: at()})
		case k < 84:
			d := Declaration{At: at(), TempC: 36.2 + r.Float64()*1.5}
			if r.IntN(10) == 0 {
				d.Symptoms = []string{"cough"}
			}
			f.Declarations = append(f.Declarations, d)
		case k < 93:
			f.Venues = append(f.Venues, VenueExposure{VenueID: fmt.Sprint("v", i), Div: divs[r.IntN(len(divs))], At: at(), Level: []string{"low", "medium", "high"}[r.IntN(3)]})
		case k < 99:
			f.Vaccinations = append(f.Vaccinations, Vaccination{At: t0.Add(-200 * day), Dose: len(f.Vaccinations) + 1, CourseDoses: 2})
		case r.IntN(2) == 0:
			f.Contacts = append(f.Contacts, ContactFlag{Issuer: "440000", At: at()})
		default:
			f.Orders = append(f.Orders, Order{ID: fmt.Sprint("o", i), Colour: hcx.Red, At: at(), LocalConfirmed: true, NationalConfirmed: r.IntN(2) == 0})
		}
	}
	return f
}

// BenchmarkDecide50Events is one decision for a resident with 50 events.
func BenchmarkDecide50Events(b *testing.B) {
	for _, p := range provinces {
		b.Run(string(p), func(b *testing.B) {
			rs := rules(b, p)
			r := rand.New(rand.NewPCG(1, 2))
			pool := make([]*Facts, 256)
			for i := range pool {
				pool[i] = syntheticResident(r, 50)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := rs.Decide(pool[i%len(pool)], t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkMassReevaluation1M re-evaluates 1,000,000 residents with 20 events
// each, once per iteration, on GOMAXPROCS goroutines (a node re-deciding
// everyone after a rule change). Residents are drawn from a pool of 65,536
// distinct fact sets so the pool fits in memory; every decision is computed
// afresh. Run with: go test ./policy -run '^$' -bench MassReevaluation -benchtime 3x
func BenchmarkMassReevaluation1M(b *testing.B) {
	const residents = 1_000_000
	rs := rules(b, "440000")
	pool := make([]*Facts, 1<<16)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range pool {
		pool[i] = syntheticResident(r, 20)
	}
	workers := runtime.GOMAXPROCS(0)
	var colours [4]atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					// Claim residents in chunks of 1024 to keep the counter cool.
					start := next.Add(1024) - 1024
					if start >= residents {
						return
					}
					end := min(start+1024, residents)
					for j := start; j < end; j++ {
						d, err := rs.Decide(pool[j&(1<<16-1)], t0)
						if err != nil {
							b.Error(err)
							return
						}
						colours[d.Colour.Severity()].Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	secs := b.Elapsed().Seconds()
	perSec := float64(b.N*residents) / secs
	b.ReportMetric(secs/float64(b.N), "s/1M-residents")
	b.ReportMetric(perSec, "decisions/s")
	b.ReportMetric(perSec/float64(workers), "decisions/s/core")
	total := float64(b.N * residents)
	b.ReportMetric(float64(colours[3].Load())/total*100, "%red")
	b.ReportMetric(float64(colours[2].Load())/total*100, "%yellow")
}
