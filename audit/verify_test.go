package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// pki is a national root with two provinces and a hub key, all real SM2.
type pki struct {
	t0          time.Time
	root, hub   *certs.Signer
	gd, bj      *certs.Signer
	trustListV1 string
}

func newPKI(tb testing.TB) *pki {
	tb.Helper()
	t0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	root, err := certs.NewRoot("audit test root", t0.Add(-time.Hour), 365*24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(role certs.Role, prov hcx.ProvinceCode, name string) *certs.Signer {
		s, err := certs.Issue(root, certs.IssueRequest{Role: role, Province: prov, Name: name, NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(300 * 24 * time.Hour)})
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
	p := &pki{t0: t0, root: root, hub: issue(certs.RoleHub, "", "hub-1"), gd: issue(certs.RoleProvince, "440000", "province-440000"), bj: issue(certs.RoleProvince, "110000", "province-110000")}
	p.trustListV1 = p.trustList(tb, 1, t0)
	return p
}

// trustList seals version ver naming every key, revoking at the times given.
func (p *pki) trustList(tb testing.TB, ver uint64, at time.Time, revoked ...exchange.Revocation) string {
	tb.Helper()
	tl := &exchange.TrustList{At: at.Unix(), Ver: ver, Revoked: revoked,
		Certs: []exchange.TrustedCert{exchange.TrustedCertOf(p.hub), exchange.TrustedCertOf(p.gd), exchange.TrustedCertOf(p.bj)}}
	raw, err := exchange.SealTrustList(p.root, tl)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// batch seals a batch of subjects (each given n) by s.
func batch(tb testing.TB, s *certs.Signer, seq uint64, at time.Time, n uint64, subjects ...string) string {
	tb.Helper()
	b := &exchange.Batch{Iss: s.Province, Seq: seq, At: at.Unix(), SKV: 1}
	for _, sub := range subjects {
		b.Atts = append(b.Atts, hcx.Attestation{Subject: hcx.Subject(sub), Colour: hcx.Red, Reasons: []hcx.Reason{"lab.positive"},
			Eff: at.Unix(), Exp: at.Add(14 * 24 * time.Hour).Unix(), PolicyV: "00", N: n})
	}
	raw, err := exchange.SealBatch(s, b)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// subject is a distinct valid pseudonym per i (base32 letters).
func subject(i int) string {
	b := []byte(strings.Repeat("a", 26))
	for k := 25; i > 0; k-- {
		b[k] = byte('a' + i%26)
		i /= 26
	}
	return string(b)
}

func openVerifier(tb testing.TB, dir string, p *pki) *Verifier {
	tb.Helper()
	v, err := OpenVerifier(dir, p.root.Cert.Raw)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// feed appends leaves committed at t0 and returns all findings.
func feed(tb testing.TB, v *Verifier, at time.Time, leaves ...string) []Finding {
	tb.Helper()
	var out []Finding
	for _, raw := range leaves {
		fs, err := v.Append(raw, at)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, fs...)
	}
	return out
}

func wantOne(t *testing.T, fs []Finding, kind string, index uint64, detail string) {
	t.Helper()
	if len(fs) != 1 || fs[0].Kind != kind || fs[0].Index == nil || *fs[0].Index != index || !strings.Contains(fs[0].Detail, detail) {
		t.Fatalf("want one %s finding at index %d saying %q, got %v", kind, index, detail, fs)
	}
}

func TestAGoodLogHasNoFindings(t *testing.T) {
	p := newPKI(t)
	v := openVerifier(t, t.TempDir(), p)
	fs := feed(t, v, p.t0, p.trustListV1, batch(t, p.gd, 1, p.t0, 1, subject(1), subject(2)), batch(t, p.bj, 1, p.t0, 1, subject(1)), batch(t, p.gd, 2, p.t0, 2, subject(1)))
	if len(fs) != 0 {
		t.Fatalf("findings on a good log: %v", fs)
	}
}

func TestSeqGapAndRepeatAreFindings(t *testing.T) {
	p := newPKI(t)
	v := openVerifier(t, t.TempDir(), p)
	feed(t, v, p.t0, p.trustListV1, batch(t, p.gd, 1, p.t0, 1, subject(1)))
	wantOne(t, feed(t, v, p.t0, batch(t, p.gd, 3, p.t0, 2, subject(1))), KindSeq, 2, "seq 3 skips: the last batch had seq 1")
	wantOne(t, feed(t, v, p.t0, batch(t, p.gd, 3, p.t0, 3, subject(1))), KindSeq, 3, "seq 3 repeats")
}

func TestNNotIncreasingIsAFindingAcrossARestart(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	v, err := OpenVerifier(dir, p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	feed(t, v, p.t0, p.trustListV1, batch(t, p.gd, 1, p.t0, 5, subject(1)))
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v = openVerifier(t, dir, p) // state from disk: trust list, seq, n, tree
	if v.Size() != 2 {
		t.Fatalf("resumed at %d leaves, want 2", v.Size())
	}
	wantOne(t, feed(t, v, p.t0, batch(t, p.gd, 2, p.t0, 5, subject(1))), KindN, 2, "n 5 is not above the last n 5")
	// Another issuer's n for the same subject is its own sequence.
	if fs := feed(t, v, p.t0, batch(t, p.bj, 1, p.t0, 1, subject(1))); len(fs) != 0 {
		t.Fatalf("another issuer's n: %v", fs)
	}
}

func TestReplayAfterACrashIsNotARepeat(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	v := openVerifier(t, dir, p)
	feed(t, v, p.t0, p.trustListV1)
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	leaf := batch(t, p.gd, 1, p.t0, 1, subject(1))
	feed(t, v, p.t0, leaf)
	// The per-subject n reach the store, the position does not (a crash
	// inside Commit): simulate with a second verifier on the same state.
	wb := v.db.NewWriteBatch()
	for k, val := range v.pending {
		wb.Set([]byte(k), append([]byte(nil), val[:]...))
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v2, err := OpenVerifier(dir, p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if fs := feed(t, v2, p.t0, leaf); len(fs) != 0 {
		t.Fatalf("re-reading a leaf after a crash: %v", fs)
	}
}

func TestRevokedKeyAfterItsRevocationCommitted(t *testing.T) {
	p := newPKI(t)
	v := openVerifier(t, t.TempDir(), p)
	rev := p.t0.Add(time.Hour)
	feed(t, v, p.t0, p.trustListV1)
	feed(t, v, rev, p.trustList(t, 2, rev, exchange.Revocation{KID: p.gd.KID, At: rev.Unix()}))
	// Signed before the revocation (backdated) but committed after it.
	fs := feed(t, v, rev.Add(time.Minute), batch(t, p.gd, 1, p.t0, 1, subject(1)))
	wantOne(t, fs, KindEnvelope, 2, "revoked")
	// The same leaf committed before the revocation counts.
	v2 := openVerifier(t, t.TempDir(), p)
	if fs := feed(t, v2, p.t0, p.trustListV1, batch(t, p.gd, 1, p.t0, 1, subject(1))); len(fs) != 0 {
		t.Fatal(fs)
	}
}

func TestSignerSpeaksOnlyForItsProvince(t *testing.T) {
	p := newPKI(t)
	v := openVerifier(t, t.TempDir(), p)
	feed(t, v, p.t0, p.trustListV1)
	b := &exchange.Batch{Iss: "110000", Seq: 1, At: p.t0.Unix(), SKV: 1, Atts: []hcx.Attestation{{Subject: hcx.Subject(subject(1)), Colour: hcx.Red, Reasons: []hcx.Reason{"lab.positive"}, Eff: p.t0.Unix(), Exp: p.t0.Add(time.Hour).Unix(), PolicyV: "00", N: 1}}}
	raw, err := exchange.SealBatch(p.gd, b)
	if err != nil {
		t.Fatal(err)
	}
	wantOne(t, feed(t, v, p.t0, raw), KindEnvelope, 1, "may not speak for this issuer")
}

func TestUnsignedLeafAndUnknownKey(t *testing.T) {
	p := newPKI(t)
	v := openVerifier(t, t.TempDir(), p)
	// Before any trust list, a province key is unknown.
	wantOne(t, feed(t, v, p.t0, batch(t, p.gd, 1, p.t0, 1, subject(1))), KindEnvelope, 0, "")
	wantOne(t, feed(t, v, p.t0, "not a jws"), KindEnvelope, 1, "not a signed envelope")
}

// TestTheAuditorsWitnessStateSurvivesARestartBesideWhatItVerified: the
// witness of hcx audit --watch keeps the largest checkpoint it cosigned in
// the auditor's store, and the verifier's own commits do not disturb it.
func TestTheAuditorsWitnessStateSurvivesARestartBesideWhatItVerified(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	v := openVerifier(t, dir, p)
	feed(t, v, p.t0, p.trustListV1, batch(t, p.gd, 1, p.t0, 1, subject(1)))
	root := v.Root()
	note, err := exchange.SignCheckpoint(p.hub, v.Size(), root, p.t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WitnessStore().Advance(0, v.Size(), root, note); err != nil {
		t.Fatal(err)
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	size := v.Size()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = openVerifier(t, dir, p)
	got, gotRoot, err := v.WitnessStore().Latest()
	if err != nil || got != size || string(gotRoot) != string(root) {
		t.Fatalf("witness state after a restart: size %d root %x (%v), want %d %x", got, gotRoot, err, size, root)
	}
	if v.Size() != size {
		t.Errorf("the verifier resumed at %d, want %d", v.Size(), size)
	}
}
