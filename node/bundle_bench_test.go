package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/offline"
)

// fillBundleStore makes a node whose store holds count non-green foreign
// attestations, written straight into badger (not through count hub round
// trips), and a log of one leaf (the trust list naming a hub key) with a
// hub checkpoint of it, so that the node can build a bundle a device
// accepts. It returns the node, the national root and a subject's code
// signer.
func fillBundleStore(tb testing.TB, count int) (*Node, *testPKI) {
	tb.Helper()
	pki := newTestPKI(tb, "440000", "510000")
	now := time.Now()
	hub, err := certs.Issue(pki.root, certs.IssueRequest{Role: certs.RoleHub, Name: "hub-1", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	pki.provs["hub"] = hub // trustList lists every signer in provs
	n := openTestNode(tb, pki, "440000", tb.TempDir(), time.Now)
	tb.Cleanup(func() { n.Close() })
	if err := n.apply(0, exchange.Entries{Entries: []string{pki.trustList(tb, 1)}}); err != nil {
		tb.Fatal(err)
	}
	delete(pki.provs, "hub")
	size, root := n.LogTree()
	note, err := exchange.SignCheckpoint(hub, size, root, now)
	if err != nil {
		tb.Fatal(err)
	}
	cp, _ := json.Marshal(&treeCheckpoint{Size: size, Note: string(note)})
	wb := n.db.NewWriteBatch()
	defer wb.Cancel()
	if err := wb.Set([]byte(kFollowCheckpoint), cp); err != nil {
		tb.Fatal(err)
	}
	cols := []hcx.Colour{hcx.Red, hcx.Yellow}
	for i := 0; i < count; i++ {
		iss := hcx.ProvinceCode([]string{"440000", "510000"}[i%2])
		a := exchange.LoggedAttestation{Iss: iss, Index: 0, Attestation: hcx.Attestation{Subject: subjectOf(i), Colour: cols[i%2],
			Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: now.Unix() - 60, Exp: now.Unix() + 7*24*3600, PolicyV: "00112233445566778899aabbccddeeff", N: 1}}
		b, _ := json.Marshal(&a)
		if err := wb.Set([]byte(pForeign+string(a.Subject)+"/"+string(iss)), b); err != nil {
			tb.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		tb.Fatal(err)
	}
	return n, pki
}

func bundleBenchSubjects() int {
	if s, err := strconv.Atoi(os.Getenv("HCX_BENCH_BUNDLE")); err == nil && s > 0 {
		return s
	}
	return 1_000_000
}

// BenchmarkVerificationBundle measures, for HCX_BENCH_BUNDLE (default 1 M)
// non-green subjects: the node's build, the bundle's size, a device's sync
// (download over loopback HTTP and every check), and an offline lookup
// against a raw SM2 verification in the same run.
func BenchmarkVerificationBundle(b *testing.B) {
	count := bundleBenchSubjects()
	n, pki := fillBundleStore(b, count)
	start := time.Now()
	bundle, err := n.VerificationBundle()
	if err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bundle.Path) }))
	defer srv.Close()
	d, err := offline.Open(b.TempDir(), pki.root.Cert.Raw)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	start = time.Now()
	resp, err := http.Get(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	err = d.Install(resp.Body, nil)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	sync := time.Since(start)

	now := time.Now()
	qr, err := exchange.IssueCode(pki.provs["440000"], &exchange.CodeClaims{Iss: "440000", Sub: subjectOf(count / 2), SKV: 1, Col: hcx.Green,
		IssuedAt: now.Unix(), Expires: now.Unix() + 3600})
	if err != nil {
		b.Fatal(err)
	}
	if r, err := d.Verify(qr, now); err != nil || r.Verification.Colour == hcx.Green {
		b.Fatalf("offline answer %+v, %v: want the subject's colour", r, err)
	}
	msg := []byte("a health code's signing input")
	sig, _ := pki.provs["440000"].Sign(msg)
	pub := pki.provs["440000"].Public()
	const rounds = 2000
	start = time.Now()
	for i := 0; i < rounds; i++ {
		if !certs.VerifySM2(pub, msg, sig) {
			b.Fatal("SM2")
		}
	}
	raw := time.Since(start) / rounds
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Verify(qr, now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	off := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(count), "subjects")
	b.ReportMetric(float64(bundle.Bytes), "bundle_bytes")
	b.ReportMetric(float64(bundle.Bytes)/float64(count), "bytes/subject")
	b.ReportMetric(build.Seconds(), "build_s")
	b.ReportMetric(sync.Seconds(), "sync_s")
	b.ReportMetric(float64(raw.Nanoseconds()), "raw_sm2_verify_ns")
	b.ReportMetric(float64(off)/float64(raw), "offline_verify/raw_sm2")
	fmt.Fprintf(os.Stderr, "bundle: %d subjects, %d bytes, build %s, sync %s, offline verify %s, raw SM2 verify %s\n", count, bundle.Bytes, build.Round(time.Millisecond), sync.Round(time.Millisecond), off, raw)
}
