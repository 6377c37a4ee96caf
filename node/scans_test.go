package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// scanPKI is a root with the signers of 440000 and 510000, valid from
// since, and a feed of 510000 whose certificate the trust list also holds
// (a key that is not a province's).
type scanPKI struct {
	*testPKI
	feed *certs.Signer
}

func newScanPKI(t testing.TB, since time.Time) *scanPKI {
	t.Helper()
	root, err := certs.NewRoot("test root", since, 200*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &scanPKI{testPKI: &testPKI{root: root, provs: map[hcx.ProvinceCode]*certs.Signer{}}}
	for _, prov := range []hcx.ProvinceCode{"440000", "510000"} {
		if p.provs[prov], err = certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: prov, Name: "province-" + string(prov), NotBefore: since, NotAfter: since.Add(150 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if p.feed, err = certs.Issue(root, certs.IssueRequest{Role: certs.RoleFeed, Province: "510000", Name: "feed-510000", NotBefore: since, NotAfter: since.Add(150 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return p
}

// scanNode is a 440000 node of p on clock, trusting p's list.
func (p *scanPKI) node(t testing.TB, clock *movableClock, dir string) *Node {
	t.Helper()
	n := openTestNode(t, p.testPKI, "440000", dir, clock.now)
	tl := exchange.TrustList{At: clock.now().Unix(), Ver: 1}
	for _, s := range p.provs {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	tl.Certs = append(tl.Certs, exchange.TrustedCertOf(p.feed))
	jws, err := exchange.SealTrustList(p.root, &tl)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.apply(0, exchange.Entries{Entries: []string{jws}}); err != nil {
		t.Fatal(err)
	}
	// These tests sign venue codes by hand, without applying for the
	// venues: no venue of this province counts as retired here.
	// TestScanOfOwnProvinceVenueFollowsItsState holds the real rule.
	n.retiredVenue = func(hcx.ProvinceCode, string) bool { return false }
	return n
}

func venueCode(t testing.TB, s *certs.Signer, iss hcx.ProvinceCode, vid string, div hcx.DivisionCode, name string, at time.Time) string {
	t.Helper()
	qr, err := exchange.IssueVenueCode(s, &exchange.VenueClaims{Iss: iss, VID: vid, Div: div, Name: name, Cat: "mall", IssuedAt: at.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return qr
}

// newScanNode is a 440000 node of a scan PKI on a movable clock at now,
// closed at the end, with one resident.
func newScanNode(t testing.TB) (*scanPKI, *Node, *movableClock, hcx.Subject) {
	t.Helper()
	clock := newClock(time.Now())
	p := newScanPKI(t, clock.now().Add(-time.Hour))
	n := p.node(t, clock, t.TempDir())
	t.Cleanup(func() { n.Close() })
	return p, n, clock, registerN(t, n, 1)[0]
}

func TestScanAnyProvincesVenueCodeUnveilsAndIsListed(t *testing.T) {
	p, n, clock, sub := newScanNode(t)
	now := clock.now()
	sc := venueCode(t, p.provs["510000"], "510000", "cd/taikoo-li", "510104", "太古里", now)
	gd := venueCode(t, p.provs["440000"], "440000", "gz-001", "440106", "天河城", now)

	r, err := n.Scan(testCtx, sub, &ScanRequest{Code: sc})
	if err != nil {
		t.Fatal(err)
	}
	if r.Venue.Name != "太古里" || r.Venue.Div != "510104" || r.Venue.Iss != "510000" || r.Venue.ID != "cd/taikoo-li" ||
		!r.EnteredAt.Equal(now) || r.Colour != hcx.Green || r.Name == "" || r.Subject != sub {
		t.Fatalf("unveiled: %+v", r)
	}
	clock.add(time.Minute)
	// An offline scan of a minute ago counts at its own time.
	offline := clock.now().Add(-time.Minute + time.Second)
	if r, err = n.Scan(testCtx, sub, &ScanRequest{Code: " " + gd + "\n", At: &offline}); err != nil || !r.EnteredAt.Equal(offline.UTC()) {
		t.Fatalf("offline scan: %+v %v", r, err)
	}
	// Every entry is a new scan: the same code again is another entry.
	clock.add(time.Minute)
	if _, err = n.Scan(testCtx, sub, &ScanRequest{Code: sc}); err != nil {
		t.Fatal(err)
	}
	list, err := n.Scans(testCtx, sub, 10)
	if err != nil || len(list) != 3 || list[0].Venue.ID != "cd/taikoo-li" || list[1].Venue.Name != "天河城" || list[2].EnteredAt.After(list[1].EnteredAt) {
		t.Fatalf("scans: %+v %v", list, err)
	}
	got, err := n.scannedAt("510000", "cd/taikoo-li", now, clock.now().Add(time.Second), clock.now(), 10)
	if err != nil || len(got) != 2 || got[0] != sub {
		t.Fatalf("venue window: %v %v", got, err)
	}
	if got, _ := n.scannedAt("510000", "cd/taikoo-li", now.Add(time.Second), clock.now().Add(-time.Second), clock.now(), 10); len(got) != 0 {
		t.Fatalf("venue window between the scans: %v", got)
	}
	// The trail has one scan.post entry per scan, naming no venue.
	var scans int
	for _, e := range trail(t, n) {
		if e.Action == ActionScanPost {
			scans++
			if strings.Contains(e.Note, "taikoo") || e.Subject != sub {
				t.Errorf("trail entry %+v", e)
			}
		}
	}
	if scans != 3 {
		t.Fatalf("%d scan.post entries, want 3", scans)
	}
}

func TestScanRefusesBadInputWritingNothing(t *testing.T) {
	p, n, clock, sub := newScanNode(t)
	now := clock.now()
	good := venueCode(t, p.provs["510000"], "510000", "v1", "510104", "太古里", now)
	old, future := now.Add(-24*time.Hour), now.Add(10*time.Minute)
	stranger, err := n.SubjectOf(hcx.DocCNID, testIDNumber(99))
	if err != nil {
		t.Fatal(err)
	}
	n.retiredVenue = func(iss hcx.ProvinceCode, vid string) bool { return vid == "retired" }
	// Sign a venue code with the feed's key by hand: IssueVenueCode would
	// sign it, the trust list holds the key, but the key is not a province's.
	byFeed := venueCode(t, p.feed, "510000", "v2", "510104", "假场所", now)
	before := n.StoreVersion()
	for _, c := range []struct {
		name  string
		sub   hcx.Subject
		req   ScanRequest
		check func(error) bool
	}{
		{"not a venue code", sub, ScanRequest{Code: "https://example.com/"}, isNotVenue},
		{"health code text", sub, ScanRequest{Code: "HCX1:abc.def.ghi"}, isNotVenue},
		{"tampered", sub, ScanRequest{Code: good[:len(good)-4] + "AAAA"}, isNotVenue},
		{"signed by a feed key", sub, ScanRequest{Code: byFeed}, isNotVenue},
		{"replayed from yesterday", sub, ScanRequest{Code: good, At: &old}, invalid("at")},
		{"from the future", sub, ScanRequest{Code: good, At: &future}, invalid("at")},
		{"retired venue", sub, ScanRequest{Code: venueCode(t, p.provs["440000"], "440000", "retired", "440106", "旧场所", now)}, func(err error) bool { return errors.Is(err, ErrVenueRetired) }},
		{"not a resident here", stranger, ScanRequest{Code: good}, func(err error) bool {
			var he *hcx.Error
			return errors.As(err, &he) && he.Class == hcx.ENotFound
		}},
	} {
		_, err := n.Scan(testCtx, c.sub, &c.req)
		if !c.check(err) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Another province's venue of the same id is not this province's to retire.
	if _, err := n.Scan(testCtx, sub, &ScanRequest{Code: venueCode(t, p.provs["510000"], "510000", "retired", "510104", "x", now)}); err != nil {
		t.Errorf("510000's venue 'retired': %v", err)
	}
	if after := n.StoreVersion(); after != before+1 {
		t.Fatalf("store version %d -> %d: the refused scans wrote", before, after)
	}
}

func isNotVenue(err error) bool { return errors.Is(err, exchange.ErrNotVenueCode) }

func invalid(field string) func(error) bool {
	return func(err error) bool {
		var he *hcx.Error
		return errors.As(err, &he) && he.Class == hcx.EInvalid && he.Field == field
	}
}

// TestScansAreGoneAtRestAfter60Days scans 61 days ago (by the node's clock),
// moves the clock to now, and then reads the stored bytes: every key
// version badger holds, and every file of the store, after the node is
// closed and the LSM tree flattened. badger drops a key at its expiry by
// the wall clock, so the scans are written on a clock 61 days behind it.
func TestScansAreGoneAtRestAfter60Days(t *testing.T) {
	clock := newClock(time.Now().Add(-61 * 24 * time.Hour))
	p := newScanPKI(t, clock.now().Add(-time.Hour))
	dir := t.TempDir()
	n := p.node(t, clock, dir)
	subs := registerN(t, n, 2)
	const vid = "venue-retention-7f3a"
	qr := venueCode(t, p.provs["510000"], "510000", vid, "510104", "太古里", clock.now())
	if _, err := n.Scan(testCtx, subs[0], &ScanRequest{Code: qr}); err != nil {
		t.Fatal(err)
	}
	// Written (badger holds both keys, already past their expiry by the
	// wall clock, so only an AllVersions read shows them).
	var written int
	n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if bytes.Contains(it.Item().Key(), []byte(vid)) {
				written++
			}
		}
		return nil
	})
	if written != 2 {
		t.Fatalf("%d keys of the scan written, want 2", written)
	}
	clock.add(61 * 24 * time.Hour)
	// A scan of today, by the other resident, stays.
	qr2 := venueCode(t, p.provs["510000"], "510000", "venue-today", "510104", "今天", clock.now())
	if _, err := n.Scan(testCtx, subs[1], &ScanRequest{Code: qr2}); err != nil {
		t.Fatal(err)
	}
	if l, _ := n.Scans(testCtx, subs[0], 10); len(l) != 0 {
		t.Fatalf("scans after 61 days: %+v", l)
	}
	if got, _ := n.scannedAt("510000", vid, time.Time{}, clock.now(), clock.now(), 10); len(got) != 0 {
		t.Fatalf("venue window after 61 days: %v", got)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// Compaction is what removes an expired key's bytes: badger runs it as
	// data flows; here the store is opened again without compactors of its
	// own and closed compacting level 0 into the tree, deterministically.
	opts := badger.DefaultOptions(dir).WithLogger(nil).WithNumCompactors(0).WithCompactL0OnClose(true)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = badger.Open(opts); err != nil {
		t.Fatal(err)
	}
	var kept int
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if bytes.Contains(k, []byte(subs[0])) && (bytes.HasPrefix(k, []byte(pScanVenue)) || bytes.HasPrefix(k, []byte(pScanResident))) {
				t.Errorf("key at rest after 61 days: %s (expires %d)", k, it.Item().ExpiresAt())
			}
			if bytes.Contains(k, []byte("venue-today")) {
				kept++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if kept != 2 {
		t.Fatalf("today's scan: %d keys at rest, want 2", kept)
	}
	// No file of the store holds the old venue's id.
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(vid)) {
			t.Errorf("%s holds %q after 61 days", filepath.Base(path), vid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkScan scans venue codes (100 venues of two provinces) for
// HCX_BENCH_SCAN_RESIDENTS residents (default 20,000) from 512 concurrent
// callers, each scan verified, recorded synced with its audit entry, and
// answered with the unveiled code. In the same run, "raw" writes the same
// bytes to a fresh badger with the node's options in the same number of
// synced transactions. Run:
//
//	go test ./node -run '^$' -bench Scan -benchtime 200000x
func BenchmarkScan(b *testing.B) {
	residents := benchEnv(b, "HCX_BENCH_SCAN_RESIDENTS", 20_000)
	const callers, venues = 512, 100
	clock := newClock(time.Now())
	p := newScanPKI(b, clock.now().Add(-time.Hour))
	n := p.node(b, clock, b.TempDir())
	defer n.Close()
	subs := registerBulk(b, n, residents)
	codes := make([]string, venues)
	for i := range codes {
		iss, div := hcx.ProvinceCode("440000"), hcx.DivisionCode("440106")
		if i%2 == 1 {
			iss, div = "510000", "510104"
		}
		codes[i] = venueCode(b, p.provs[iss], iss, fmt.Sprintf("venue-%03d", i), div, "场所", clock.now())
	}
	commits0, bytes0 := n.metrics.commits.Load(), n.metrics.written.Load()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if _, err := n.Scan(testCtx, subs[(i*7919)%residents], &ScanRequest{Code: codes[i%venues]}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el, used := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	reportWriteRate(b, n, "scan", el, used, commits0, bytes0)
}

// A venue code verified once is remembered, but only under the trust list
// it was verified with and while its key is not revoked: a list revoking
// 510000's key refuses the code at once.
func TestScanVenueCacheFollowsTheTrustList(t *testing.T) {
	p, n, clock, sub := newScanNode(t)
	qr := venueCode(t, p.provs["510000"], "510000", "v1", "510104", "太古里", clock.now())
	for range 2 {
		if _, err := n.Scan(testCtx, sub, &ScanRequest{Code: qr}); err != nil {
			t.Fatal(err)
		}
	}
	tl := exchange.TrustList{At: clock.now().Unix() + 1, Ver: 2, Revoked: []exchange.Revocation{{KID: p.provs["510000"].KID, At: clock.now().Unix() - 1}}}
	for _, s := range []*certs.Signer{p.provs["440000"], p.provs["510000"], p.feed} {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	jws, err := exchange.SealTrustList(p.root, &tl)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.apply(1, exchange.Entries{Entries: []string{jws}}); err != nil {
		t.Fatal(err)
	}
	if n.trust.Version() != 2 {
		t.Fatalf("trust list version %d, want 2", n.trust.Version())
	}
	if _, err := n.Scan(testCtx, sub, &ScanRequest{Code: qr}); !isNotVenue(err) {
		t.Fatalf("scan after 510000's key was revoked: %v", err)
	}
}

// BenchmarkScanVenueWindow stores HCX_BENCH_SCANS scans (default
// 1,000,000) over 1,000 venues spread across 59 days, then measures finding
// the residents who scanned one venue in a one-day window (the exposure
// query of issue 11 item 3) — one range read of the venue index. Run:
//
//	go test ./node -run '^$' -bench ScanVenueWindow -benchtime 200x
func BenchmarkScanVenueWindow(b *testing.B) {
	total := benchEnv(b, "HCX_BENCH_SCANS", 1_000_000)
	const venues = 1000
	clock := newClock(time.Now())
	p := newScanPKI(b, clock.now().Add(-time.Hour))
	n := p.node(b, clock, b.TempDir())
	defer n.Close()
	now := clock.now()
	span := 59 * 24 * time.Hour
	claims := make([]*exchange.VenueClaims, venues)
	for i := range claims {
		claims[i] = &exchange.VenueClaims{Iss: "510000", VID: fmt.Sprintf("venue-%04d", i), Div: "510104", Name: "场所", Cat: "mall"}
	}
	const per = 5000
	var wg sync.WaitGroup
	for start := 0; start < total; start += per {
		w := &write{system: "bench"}
		for i := start; i < min(start+per, total); i++ {
			at := now.Add(-span + time.Duration(int64(span)/int64(total)*int64(i)))
			n.addScan(w, subjectOf(i), claims[(i*7919)%venues], at)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.write(w); err != nil {
				b.Error(err)
			}
		}()
		if start/per%8 == 7 {
			wg.Wait()
		}
	}
	wg.Wait()
	from := now.Add(-30 * 24 * time.Hour)
	b.ResetTimer()
	found := 0
	for i := range b.N {
		subs, err := n.scannedAt("510000", claims[i%venues].VID, from, from.Add(24*time.Hour), now, 100_000)
		if err != nil {
			b.Fatal(err)
		}
		found += len(subs)
	}
	b.ReportMetric(float64(found)/float64(b.N), "residents/window")
}

// TestScanOfOwnProvinceVenueFollowsItsState: a venue code of the node's own
// province scans while the venue is passed; a code the node never passed (a
// venue unknown here) and the code of a retired venue are refused with
// ErrVenueRetired, writing nothing.
func TestScanOfOwnProvinceVenueFollowsItsState(t *testing.T) {
	p, n, clock, sub := newScanNode(t)
	n.retiredVenue = nil // the venues store decides
	mr, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(77), Name: "店长"})
	if err != nil {
		t.Fatal(err)
	}
	manager := mr.Subject
	v, err := n.ApplyVenue(managerCtx(manager), manager, VenueApplication{Name: "天河城", Division: "440106", Category: "mall", USCC: testUSCC("9144010600000000")})
	if err != nil {
		t.Fatal(err)
	}
	if v, err = n.ReviewVenue(testCtx, v.ID, VenueReview{Decision: "passed", Reason: "checked"}); err != nil || v.Code == "" {
		t.Fatalf("review: %+v %v", v, err)
	}
	if _, err := n.Scan(testCtx, sub, &ScanRequest{Code: v.Code}); err != nil {
		t.Fatalf("scan of a passed venue: %v", err)
	}
	unknown := venueCode(t, p.provs["440000"], "440000", "never-applied", "440106", "无名", clock.now())
	if _, err := n.RetireVenue(testCtx, v.ID, "closed"); err != nil {
		t.Fatal(err)
	}
	before := n.StoreVersion()
	for name, code := range map[string]string{"retired": v.Code, "unknown here": unknown} {
		if _, err := n.Scan(testCtx, sub, &ScanRequest{Code: code}); !errors.Is(err, ErrVenueRetired) {
			t.Errorf("scan of a venue %s: %v, want ErrVenueRetired", name, err)
		}
	}
	if n.StoreVersion() != before {
		t.Error("a refused scan wrote")
	}
}
