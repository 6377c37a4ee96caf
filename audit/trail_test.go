package audit

import (
	"strings"
	"testing"

	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

func head(tb testing.TB, s *certs.Signer, at int64, seq uint64, digit string) string {
	tb.Helper()
	raw, err := exchange.SealAuditHead(s, at, seq, strings.Repeat(digit, 64))
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// TestAHeadThatTakesAProvincesTrailBackIsAFindingAcrossARestart: a logged
// trail head with a lower seq than the province's last, or the same seq
// with another hash, is trail_forked naming the province and the seq; the
// same head again and another province's heads are not; the last head is
// kept across a restart of the auditor.
func TestAHeadThatTakesAProvincesTrailBackIsAFindingAcrossARestart(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	v, err := OpenVerifier(dir, p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	at := p.t0.Unix()
	if fs := feed(t, v, p.t0, p.trustListV1, head(t, p.gd, at, 5, "a"), head(t, p.gd, at+1, 5, "a"), head(t, p.bj, at, 1, "b")); len(fs) != 0 {
		t.Fatalf("good heads: %v", fs)
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v = openVerifier(t, dir, p)
	for _, c := range []struct {
		seq    uint64
		digit  string
		detail string
	}{
		{3, "c", "logged trail seq 3 after seq 5"},
		{5, "d", "logged trail seq 5 with hash " + strings.Repeat("d", 64)},
	} {
		fs := feed(t, v, p.t0, head(t, p.gd, at+2, c.seq, c.digit))
		wantOne(t, fs, KindTrailForked, v.Size()-1, c.detail)
		if fs[0].Province != "440000" || fs[0].Seq != c.seq {
			t.Errorf("finding names %s seq %d, want 440000 seq %d", fs[0].Province, fs[0].Seq, c.seq)
		}
	}
	if fs := feed(t, v, p.t0, head(t, p.gd, at+3, 6, "e"), head(t, p.bj, at+3, 2, "f")); len(fs) != 0 {
		t.Fatalf("heads further on: %v", fs)
	}
	if err := v.Commit(); err != nil {
		t.Fatal(err)
	}
	// Two heads of Guangdong wait for a check: 5 and 6.
	heads, err := v.keptHeads("440000", 0)
	if err != nil || len(heads) != 2 || heads[0].Seq != 5 || heads[1].Seq != 6 {
		t.Fatalf("kept heads %+v, %v; want 5 and 6", heads, err)
	}
}
