package audit

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// auditLog is a log of a trust list then batches of 1,000 attestations by
// one province, atts in all, each subject once per batch with n = batch seq.
func auditLog(tb testing.TB, p *pki, atts int) []string {
	tb.Helper()
	leaves := []string{p.trustListV1}
	subs := make([]string, exchange.MaxBatchAttestations)
	for seq := uint64(1); atts > 0; seq++ {
		k := min(atts, exchange.MaxBatchAttestations)
		for i := range k {
			subs[i] = subject(int(seq)*exchange.MaxBatchAttestations + i)
		}
		leaves = append(leaves, batch(tb, p.gd, seq, p.t0, 1, subs[:k]...))
		atts -= k
	}
	return leaves
}

// auditAll verifies leaves from where v stands, committing every Page, and
// returns the findings.
func auditAll(tb testing.TB, v *Verifier, leaves []string, at time.Time) int {
	tb.Helper()
	found := 0
	for i, raw := range leaves {
		fs, err := v.Append(raw, at)
		if err != nil {
			tb.Fatal(err)
		}
		found += len(fs)
		if (i+1)%Page == 0 || i == len(leaves)-1 {
			if err := v.Commit(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return found
}

// The same workload as the benchmark, small: every leaf verifies, and a
// restart resumes after the prefix with the per-subject n kept on disk.
func TestAuditWorkloadResumes(t *testing.T) {
	p := newPKI(t)
	leaves := auditLog(t, p, 12_000)
	dir := t.TempDir()
	v, err := OpenVerifier(dir, p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if n := auditAll(t, v, leaves[:len(leaves)-3], p.t0); n != 0 {
		t.Fatalf("%d findings on a good log", n)
	}
	v.Close()
	v = openVerifier(t, dir, p)
	if v.Size() != uint64(len(leaves)-3) {
		t.Fatalf("resumed at %d, want %d", v.Size(), len(leaves)-3)
	}
	if n := auditAll(t, v, leaves[len(leaves)-3:], p.t0); n != 0 {
		t.Fatalf("%d findings after resuming", n)
	}
	// Replaying a batch after it is a repeat of seq and of every n.
	fs, err := v.Append(leaves[len(leaves)-1], p.t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1+exchange.MaxBatchAttestations {
		t.Fatalf("a replayed batch: %d findings, want the seq and %d n", len(fs), exchange.MaxBatchAttestations)
	}
}

// BenchmarkAudit audits, from a cold start, a log of HCX_BENCH_AUDIT_ATTS
// attestations (default 100,000; make bench-audit: 1,000,000) in batches of
// 1,000, then resumes a store holding all but the last 10,000 and audits
// those. Baseline, in the same run: the raw SM3 leaf hashes and SM2
// envelope signature checks of the same leaves. Reported: cold_s, resume_s,
// raw_s and cold/raw.
//
//	HCX_BENCH_AUDIT_ATTS=1000000 go test ./audit -run '^$' -bench Audit -benchtime 1x -timeout 30m
func BenchmarkAudit(b *testing.B) {
	atts := 100_000
	if s := os.Getenv("HCX_BENCH_AUDIT_ATTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 20_000 {
			b.Fatalf("HCX_BENCH_AUDIT_ATTS=%q: want a number of attestations, at least 20000", s)
		}
		atts = n
	}
	p := newPKI(b)
	leaves := auditLog(b, p, atts)
	tail := 10_000 / exchange.MaxBatchAttestations
	b.ResetTimer()
	var cold, resume, raw time.Duration
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		v, err := OpenVerifier(dir, p.root.Cert.Raw)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if n := auditAll(b, v, leaves, p.t0); n != 0 {
			b.Fatalf("%d findings", n)
		}
		cold += time.Since(t0)
		b.StopTimer()
		v.Close()
		// A store that stopped before the last 10,000 attestations.
		dir2 := b.TempDir()
		v, err = OpenVerifier(dir2, p.root.Cert.Raw)
		if err != nil {
			b.Fatal(err)
		}
		auditAll(b, v, leaves[:len(leaves)-tail], p.t0)
		v.Close()
		b.StartTimer()
		t0 = time.Now()
		v, err = OpenVerifier(dir2, p.root.Cert.Raw)
		if err != nil {
			b.Fatal(err)
		}
		if n := auditAll(b, v, leaves[len(leaves)-tail:], p.t0); n != 0 {
			b.Fatalf("%d findings after resuming", n)
		}
		resume += time.Since(t0)
		v.Close()
		// Baseline: hash every leaf, check every batch's signature.
		t0 = time.Now()
		for i, l := range leaves {
			certs.SM3([]byte(l))
			if i == 0 {
				continue
			}
			if _, err := certs.VerifyJWSWithKey(l, p.gd.Public()); err != nil {
				b.Fatal(err)
			}
		}
		raw += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()/n, "cold_s")
	b.ReportMetric(resume.Seconds()/n, "resume_s")
	b.ReportMetric(raw.Seconds()/n, "raw_s")
	b.ReportMetric(cold.Seconds()/raw.Seconds(), "cold/raw")
	b.ReportMetric(float64(atts)/(cold.Seconds()/n), "atts/s")
}
