package node

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// testPKI is a national root with province signers, made by the test.
type testPKI struct {
	root  *certs.Signer
	provs map[hcx.ProvinceCode]*certs.Signer
}

func newTestPKI(t testing.TB, provinces ...hcx.ProvinceCode) *testPKI {
	t.Helper()
	now := time.Now()
	root, err := certs.NewRoot("test root", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{root: root, provs: map[hcx.ProvinceCode]*certs.Signer{}}
	for _, prov := range provinces {
		s, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: prov, Name: "province-" + string(prov), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		p.provs[prov] = s
	}
	return p
}

func (p *testPKI) trustList(t testing.TB, ver uint64) string {
	t.Helper()
	tl := exchange.TrustList{At: time.Now().Unix(), Ver: ver}
	for _, s := range p.provs {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	jws, err := exchange.SealTrustList(p.root, &tl)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

var subjectKey = certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)}

func openTestNode(t testing.TB, pki *testPKI, prov hcx.ProvinceCode, dir string, now func() time.Time) *Node {
	t.Helper()
	n, err := New(Config{
		Province: prov, Dir: dir, Signer: pki.provs[prov], RootDER: pki.root.Cert.Raw,
		SubjectKey: subjectKey, FieldKeys: map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1,
		RulesPath: "../configs/rules/" + string(prov) + ".yaml",
		Hub:       exchange.NewHubClient([]string{"http://127.0.0.1:1"}, nil),
		Now:       now,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRegisterRejectsBadDocumentsNamingTheField(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	ctx := testCtx
	for _, tc := range []struct {
		name string
		req  RegisterRequest
		code string
	}{
		{"reject/check-digit", RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070027", Name: "张三"}, "invalid_doc_number"},
		{"reject/short-id", RegisterRequest{DocType: hcx.DocCNID, DocNumber: "44010619900307", Name: "张三"}, "invalid_doc_number"},
		{"reject/unknown-doc-type", RegisterRequest{DocType: "XX", DocNumber: "123", Name: "张三"}, "invalid_doc_type"},
		{"reject/empty-name", RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: " "}, "invalid_name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.Register(ctx, tc.req)
			var e *hcx.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Class != hcx.EInvalid {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
		})
	}
	r, err := n.Register(ctx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: " 440106199003070028 ", Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Register(ctx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三"}); hcx.ClassOf(err) != hcx.EConflict {
		t.Errorf("second registration: err = %v, want a conflict", err)
	}
	if want := subjectKey.Subject(hcx.DocCNID, "440106199003070028"); r.Subject != want {
		t.Errorf("subject = %s, want %s", r.Subject, want)
	}
}

func TestIdentityIsEncryptedAtRest(t *testing.T) {
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	n := openTestNode(t, pki, "440000", dir, time.Now)
	if _, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三丰", Phone: "13800138000"}); err != nil {
		t.Fatal(err)
	}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, _ := it.Item().ValueCopy(nil)
			for _, secret := range []string{"440106199003070028", "张三丰", "13800138000"} {
				if bytes.Contains(v, []byte(secret)) || bytes.Contains(it.Item().Key(), []byte(secret)) {
					t.Errorf("key %s holds %q in clear", it.Item().Key(), secret)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
}

func TestPositiveLabWritesOneAttestationAndSurvivesRestart(t *testing.T) {
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	ctx := testCtx
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	n := openTestNode(t, pki, "440000", dir, clock)
	r, err := n.Register(ctx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := n.Ingest(ctx, r.Subject, Event{Lab: &policy.LabResult{Positive: true, At: now.Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Colour != hcx.Red || len(st.Reasons) == 0 || st.Reasons[0].Code != hcx.ReasonLabPositive || len(st.Release) == 0 {
		t.Errorf("status = %+v, want red for lab.positive with release conditions", st)
	}
	// A second positive result does not change the colour: no new attestation.
	if _, err := n.Ingest(ctx, r.Subject, Event{Lab: &policy.LabResult{Positive: true, At: now}}); err != nil {
		t.Fatal(err)
	}
	n.Close()

	n = openTestNode(t, pki, "440000", dir, clock)
	defer n.Close()
	p, err := n.nextBatch()
	if err != nil || p == nil {
		t.Fatalf("nextBatch = %v, %v; want the outbox's batch", p, err)
	}
	if p.Seq != 1 || p.Count != 1 {
		t.Errorf("batch seq %d with %d attestations, want seq 1 with 1", p.Seq, p.Count)
	}
	// The pending batch is stored: asking again gives the same bytes.
	again, err := n.nextBatch()
	if err != nil || again.JWS != p.JWS {
		t.Errorf("pending batch changed between calls")
	}
	ts, _ := certs.NewTrustStoreDER(pki.root.Cert.Raw)
	if _, err := exchange.ApplyTrustList(ts, pki.trustList(t, 1)); err != nil {
		t.Fatal(err)
	}
	env, err := exchange.Open(ts, p.JWS)
	if err != nil {
		t.Fatal(err)
	}
	b, err := exchange.DecodeBatch(env)
	if err != nil {
		t.Fatal(err)
	}
	a := b.Atts[0]
	if a.Subject != r.Subject || a.Colour != hcx.Red || a.N != 1 || a.Eff != now.Unix() || a.PolicyV != n.PolicyVersion() {
		t.Errorf("attestation = %+v", a)
	}
}

func TestVerifyAppliesTheRecognitionRuleOverTheLog(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	ctx := testCtx
	now := time.Now()
	gd := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer gd.Close()
	sc := openTestNode(t, pki, "510000", t.TempDir(), time.Now)
	defer sc.Close()

	r, err := gd.Register(ctx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	code, err := gd.IssueCode(ctx, r.Subject, false)
	if err != nil {
		t.Fatal(err)
	}
	// Before Sichuan has the trust list, the code's key is unknown there.
	if _, err := sc.Verify(ctx, code.QR); !errors.Is(err, exchange.ErrUnknownIssuer) {
		t.Fatalf("verify without trust list: err = %v, want unknown_issuer", err)
	}
	batch, err := exchange.SealBatch(pki.provs["440000"], &exchange.Batch{Iss: "440000", Seq: 1, At: now.Unix(), SKV: 1,
		Atts: []hcx.Attestation{{Subject: r.Subject, Colour: hcx.Red, Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: now.Unix() - 1, Exp: now.Unix() + 3600, PolicyV: gd.PolicyVersion(), N: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	// A batch by a key Sichuan does not know is skipped, not fatal.
	other := newTestPKI(t, "440000")
	forged, err := exchange.SealBatch(other.provs["440000"], &exchange.Batch{Iss: "440000", Seq: 2, At: now.Unix(), SKV: 1,
		Atts: []hcx.Attestation{{Subject: r.Subject, Colour: hcx.Green, Reasons: []hcx.Reason{hcx.ReasonClear}, Eff: now.Unix() - 1, Exp: now.Unix() + 3600, PolicyV: gd.PolicyVersion(), N: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.apply(0, exchange.Entries{Entries: []string{pki.trustList(t, 1), batch, forged}}); err != nil {
		t.Fatal(err)
	}
	if got := sc.Applied(); got != 3 {
		t.Errorf("applied = %d, want 3", got)
	}
	v, err := sc.Verify(ctx, code.QR)
	if err != nil {
		t.Fatal(err)
	}
	if v.Colour != hcx.Red || v.LogIndex != 3 || v.Name != "张*" || v.IDTail != "0028" {
		t.Errorf("verification = %+v, want red at log size 3", v)
	}
}

func TestFailedRuleReloadKeepsTheRulesInForce(t *testing.T) {
	n, rules, good := openNodeWithOwnRules(t, time.Now)
	defer n.Close()
	before := n.PolicyVersion()
	if len(before) != 32 {
		t.Fatalf("policy version %q, want 32 hex characters", before)
	}
	broken := bytes.Replace(good, []byte("labs.positive_count > 0"), []byte("labs.positive_count >"), 1)
	if err := os.WriteFile(rules, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	err := n.ReloadRules()
	if err == nil || !strings.Contains(err.Error(), "440000.yaml") || !strings.Contains(err.Error(), "positive-lab-result") {
		t.Fatalf("reload of a broken file: err = %v, want one naming the file and the rule", err)
	}
	if got := n.PolicyVersion(); got != before {
		t.Errorf("policy version changed to %s after a failed reload", got)
	}
	changed := bytes.Replace(good, []byte("days: 14"), []byte("days: 21"), 1)
	if err := os.WriteFile(rules, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadRules(); err != nil {
		t.Fatal(err)
	}
	if n.PolicyVersion() == before {
		t.Error("policy version unchanged after a real change")
	}
}

// openNodeWithOwnRules opens a Guangdong node whose rule file is a copy the
// test may change; it returns the node, the file and its first contents.
func openNodeWithOwnRules(t testing.TB, now func() time.Time) (n *Node, rules string, good []byte) {
	t.Helper()
	pki := newTestPKI(t, "440000")
	dir := t.TempDir()
	rules = dir + "/440000.yaml"
	good, err := os.ReadFile("../configs/rules/440000.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rules, good, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err = New(Config{
		Province: "440000", Dir: dir + "/db", Signer: pki.provs["440000"], RootDER: pki.root.Cert.Raw,
		SubjectKey: subjectKey, FieldKeys: map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1,
		RulesPath: rules, Hub: exchange.NewHubClient([]string{"http://127.0.0.1:1"}, nil),
		Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, rules, good
}
