package consensus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// pki is a federation's keys made by the test: a root, province signers and
// hub signers, and the first trust list listing them.
type pki struct {
	root   *certs.Signer
	provs  map[hcx.ProvinceCode]*certs.Signer
	hubs   []*certs.Signer
	trust1 string
}

func newPKI(t testing.TB, hubs int) *pki {
	t.Helper()
	now := time.Now()
	root, err := certs.NewRoot("hcx test root", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{root: root, provs: map[hcx.ProvinceCode]*certs.Signer{}}
	tl := &exchange.TrustList{At: now.Unix(), Ver: 1}
	for _, code := range []hcx.ProvinceCode{"110000", "440000", "510000"} {
		s, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: code, Name: "signer " + string(code), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		p.provs[code] = s
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	for i := 0; i < hubs; i++ {
		s, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleHub, Name: fmt.Sprintf("hub-%d", i+1), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		p.hubs = append(p.hubs, s)
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	if p.trust1, err = exchange.SealTrustList(root, tl); err != nil {
		t.Fatal(err)
	}
	return p
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HCX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// subjectOf makes a valid 26-character subject from a number.
func subjectOf(i int) hcx.Subject {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := []byte(strings.Repeat("a", 26))
	for j := 25; j >= 0 && i > 0; j-- {
		b[j] = alphabet[i%32]
		i /= 32
	}
	return hcx.Subject(b)
}

// batch seals a colour batch of n attestations for subjects from first.
func (p *pki) batch(t testing.TB, prov hcx.ProvinceCode, seq uint64, n, first int, col hcx.Colour, subN uint64) string {
	t.Helper()
	now := time.Now().Unix()
	b := &exchange.Batch{Iss: prov, Seq: seq, At: now, SKV: 1}
	for i := 0; i < n; i++ {
		b.Atts = append(b.Atts, hcx.Attestation{Subject: subjectOf(first + i), Colour: col, Reasons: []hcx.Reason{hcx.ReasonLabPositive},
			Eff: now - 10, Exp: now + 3600, PolicyV: "00112233445566778899aabbccddeeff", N: subN})
	}
	s, err := exchange.SealBatch(p.provs[prov], b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startOne(t testing.TB, p *pki, dir string, tune func(*Config)) *Hub {
	t.Helper()
	cfg := Config{ID: "hub-1", Dir: dir, Bootstrap: true, RootDER: p.root.Cert.Raw, Signer: p.hubs[0], Logger: testLogger(t), NoAPI: true, InsecurePlaintext: true}
	if tune != nil {
		tune(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.WaitLeader(ctx); err != nil {
		h.Close()
		t.Fatal(err)
	}
	return h
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// restoredCopy is a state machine of its own restored from a snapshot of
// h's: what a member installing that snapshot would hold. (Restoring into
// h's own state machine would race with its Raft's apply loop, which Raft
// never lets happen.)
func restoredCopy(t *testing.T, p *pki, h *Hub) *fsm {
	t.Helper()
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&memSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	f, err := openFSM(t.TempDir(), p.root.Cert.Raw, testLogger(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	if err := f.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	return f
}
