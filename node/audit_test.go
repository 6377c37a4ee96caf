package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// testCtx carries the principal the node's tests act as: an operator of
// Guangdong, signed in with OIDC.
var testCtx = auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleOperator, Actor: "oidc:https://idp.test#op-1", Name: "op-1", Province: "440000", Method: auth.MethodBearer})

// feedCtx is Guangdong's lab feed, with the request's id and reason.
var feedCtx = auth.WithRequest(
	auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleFeed, Actor: "cert:feed-kid", Province: "440000", Method: auth.MethodRequestToken}),
	auth.Request{ID: "req-42", Reason: "nightly PCR batch"})

func trail(t testing.TB, n *Node) []AuditRecord {
	t.Helper()
	page, err := n.AuditTrail(context.Background(), 0, MaxAuditPage)
	if err != nil {
		t.Fatal(err)
	}
	if page.More {
		t.Fatal("trail longer than one page")
	}
	return page.Entries
}

func TestEveryMutatingMethodWithoutAPrincipalFailsAndWritesNothing(t *testing.T) {
	n, rules, good := openNodeWithOwnRules(t, time.Now)
	defer n.Close()
	r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rules, bytes.Replace(good, []byte("days: 14"), []byte("days: 21"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	policyBefore := n.PolicyVersion()
	bare := context.Background()
	for name, call := range map[string]func() error{
		"register": func() error {
			_, err := n.Register(bare, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "11010519491231002X", Name: "李四"})
			return err
		},
		"ingest/lab": func() error {
			_, err := n.Ingest(bare, r.Subject, Event{Lab: &policy.LabResult{Positive: true}})
			return err
		},
		"ingest/contact": func() error {
			_, err := n.Ingest(bare, r.Subject, Event{Contact: &policy.ContactFlag{Issuer: "440000"}})
			return err
		},
		"order/place": func() error {
			_, err := n.PlaceOrder(bare, r.Subject, OrderRequest{Colour: hcx.Red})
			return err
		},
		"order/confirm": func() error { _, err := n.ConfirmOrder(bare, r.Subject, "o-1"); return err },
		"order/lift":    func() error { _, err := n.LiftOrder(bare, r.Subject, "o-1"); return err },
		"reload-rules":  func() error { return n.ReloadRulesAs(bare) },
		"audit-read":    func() error { return n.AuditRead(bare, ActionResidentReadIdentity, r.Subject, "check") },
	} {
		t.Run(name, func(t *testing.T) {
			before := n.StoreVersion()
			err := call()
			var e *hcx.Error
			if !errors.As(err, &e) || e.Code != "no_actor" {
				t.Fatalf("err = %v, want no_actor", err)
			}
			if after := n.StoreVersion(); after != before {
				t.Errorf("store version moved from %d to %d", before, after)
			}
		})
	}
	if got := n.PolicyVersion(); got != policyBefore {
		t.Errorf("rules changed to %s without a principal", got)
	}
	if st, _ := n.Resident(testCtx, r.Subject); st.Status.Colour != hcx.Green {
		t.Errorf("colour %s after refused events, want green", st.Status.Colour)
	}
	if got := len(trail(t, n)); got != 1 {
		t.Errorf("%d trail entries, want 1 (the registration)", got)
	}
}

func TestCommitterRefusesAWriteWithoutATrailEntry(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	bad := &write{}
	bad.set("res/sneaky", []byte("{}"))
	good := &write{}
	good.record(&AuditEntry{Actor: "test", Role: auth.RoleOperator, Action: "test.write"})
	good.set("res/honest", []byte("{}"))
	// Both in one group: the committer refuses the bad one alone.
	bad.done, good.done = make(chan error, 1), make(chan error, 1)
	n.writes <- bad
	n.writes <- good
	if err := <-bad.done; !errors.Is(err, errNoAuditEntry) {
		t.Errorf("write without an entry: err = %v, want no_audit_entry", err)
	}
	if err := <-good.done; err != nil {
		t.Errorf("write with an entry: %v", err)
	}
	err := n.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte("res/sneaky")); !errors.Is(err, badger.ErrKeyNotFound) {
			t.Errorf("the write without an entry is in the store (err %v)", err)
		}
		_, err := txn.Get([]byte("res/honest"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := trail(t, n); len(got) != 1 || got[0].Action != "test.write" {
		t.Errorf("trail %+v, want the one entry", got)
	}
}

func TestTrailRecordsWhoDidWhatWhyInCommitOrder(t *testing.T) {
	clock := newTestClock(time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC))
	n, rules, good := openNodeWithOwnRules(t, clock.Now)
	r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: "440106199003070028", Name: "张三"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(feedCtx, r.Subject, Event{Lab: &policy.LabResult{Positive: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Ingest(feedCtx, r.Subject, Event{Contact: &policy.ContactFlag{Issuer: "440000"}}); err != nil {
		t.Fatal(err)
	}
	if err := n.AuditRead(testCtx, ActionResidentReadIdentity, r.Subject, "appeal 7 needs the document"); err != nil {
		t.Fatal(err)
	}
	old := n.PolicyVersion()
	if err := os.WriteFile(rules, bytes.Replace(good, []byte("days: 14"), []byte("days: 21"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadRulesAs(testCtx); err != nil {
		t.Fatal(err)
	}
	// A reload that changes nothing records nothing.
	if err := n.ReloadRulesAs(testCtx); err != nil {
		t.Fatal(err)
	}
	got := trail(t, n)
	type want struct {
		action, actor string
		role          auth.Role
		method        auth.Method
		why, req      string
	}
	wants := []want{
		{ActionResidentRegister, "oidc:https://idp.test#op-1", auth.RoleOperator, auth.MethodBearer, "", ""},
		{ActionLabPost, "cert:feed-kid", auth.RoleFeed, auth.MethodRequestToken, "nightly PCR batch", "req-42"},
		{ActionContactPost, "cert:feed-kid", auth.RoleFeed, auth.MethodRequestToken, "nightly PCR batch", "req-42"},
		{ActionResidentReadIdentity, "oidc:https://idp.test#op-1", auth.RoleOperator, auth.MethodBearer, "appeal 7 needs the document", ""},
		{ActionRulesReload, "oidc:https://idp.test#op-1", auth.RoleOperator, auth.MethodBearer, "", ""},
	}
	if len(got) != len(wants) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		e := got[i]
		if e.Seq != uint64(i+1) || e.Action != w.action || e.Actor != w.actor || e.Role != w.role || e.Method != w.method ||
			e.Province != "440000" || e.Why != w.why || e.RequestID != w.req || !e.At.Equal(clock.Now()) {
			t.Errorf("entry %d = %+v, want %+v at %s", i+1, e.AuditEntry, w, clock.Now())
		}
		if w.action != ActionRulesReload && e.Subject != r.Subject {
			t.Errorf("entry %d subject %q, want %q", i+1, e.Subject, r.Subject)
		}
	}
	if note := got[4].Note; note != "policy "+old+" -> "+n.PolicyVersion() {
		t.Errorf("reload note %q", note)
	}
	// Nothing in the trail names the resident.
	b, _ := json.Marshal(got)
	for _, secret := range []string{"张三", "440106199003070028", "0028"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the trail carries %q", secret)
		}
	}
	head, err := n.VerifyAuditTrail()
	if err != nil {
		t.Fatal(err)
	}
	if head.Seq != 5 || head.Hash != got[4].Hash {
		t.Errorf("head %+v, want seq 5 and the last hash %s", head, got[4].Hash)
	}
	// The chain continues after a restart, without a gap.
	n.Close()
	pki := newTestPKI(t, "440000")
	n2 := openTestNode(t, pki, "440000", n.cfg.Dir, clock.Now)
	n2.cfg.RulesPath = rules
	defer n2.Close()
	if _, err := n2.Ingest(feedCtx, r.Subject, Event{Lab: &policy.LabResult{Positive: false}}); err != nil {
		t.Fatal(err)
	}
	all := trail(t, n2)
	if len(all) != 6 || all[5].Seq != 6 || all[5].Prev != got[4].Hash {
		t.Fatalf("after restart: %+v, want entry 6 chained to %s", all[len(all)-1].AuditEntry, got[4].Hash)
	}
	if _, err := n2.VerifyAuditTrail(); err != nil {
		t.Fatal(err)
	}
}

func TestTrailPagesAndTheirChainCheckOut(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	subs := registerN(t, n, 25)
	for _, sub := range subs {
		if err := n.AuditRead(testCtx, ActionResidentReadIdentity, sub, ""); err != nil {
			t.Fatal(err)
		}
	}
	prev, after := zeroHash, uint64(0)
	pages := 0
	for {
		page, err := n.AuditTrail(context.Background(), after, 7)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if prev, err = VerifyAuditRecords(prev, after, page.Entries); err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(page.Entries) > 0 {
			after = page.Entries[len(page.Entries)-1].Seq
		}
		if !page.More {
			if after != 50 || prev != page.Head.Hash || page.Head.Seq != 50 {
				t.Fatalf("ended at %d with %s, head %+v", after, prev, page.Head)
			}
			break
		}
	}
	if pages != 8 {
		t.Errorf("%d pages of 7 for 50 entries, want 8", pages)
	}
	// The node vouches for the head with its province signature.
	page, err := n.AuditTrail(context.Background(), 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	// It is the envelope the node logs at the hub: it opens against the
	// trust list and reads strictly.
	ts, err := certs.NewTrustStoreDER(pki.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange.ApplyTrustList(ts, pki.trustList(t, 1)); err != nil {
		t.Fatal(err)
	}
	env, err := exchange.Open(ts, page.SignedHead)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exchange.DecodeAuditHead(env)
	if err != nil {
		t.Fatal(err)
	}
	if sh.Iss != "440000" || sh.Seq != 50 || sh.Hash != prev {
		t.Errorf("signed head %+v, want 440000 at 50 with %s", sh, prev)
	}
	// An auditor finds a record edited on the way.
	page, _ = n.AuditTrail(context.Background(), 0, 3)
	page.Entries[1].Why = "nothing to see"
	if _, err := VerifyAuditRecords(zeroHash, 0, page.Entries); err == nil {
		t.Error("an edited record checks out")
	}
	for _, limit := range []int{-1, MaxAuditPage + 1} {
		if _, err := n.AuditTrail(context.Background(), 0, limit); hcx.ClassOf(err) != hcx.EInvalid {
			t.Errorf("limit %d: err %v, want invalid", limit, err)
		}
	}
}

func TestVerifyAuditTrailFindsDeletedEditedAndCutEntries(t *testing.T) {
	for name, tamper := range map[string]func(txn *badger.Txn) error{
		"deleted-in-the-middle": func(txn *badger.Txn) error { return txn.Delete(auditKey(3)) },
		"cut-off-the-end":       func(txn *badger.Txn) error { return txn.Delete(auditKey(5)) },
		"edited-why": func(txn *badger.Txn) error {
			return rewrite(txn, 2, false, func(e *AuditEntry) { e.Why = "routine" })
		},
		"edited-actor-and-rechained-locally": func(txn *badger.Txn) error {
			// The forger rewrites entry 2 and fixes entry 3's prev; the head
			// (or entry 4) still gives it away.
			return rewrite(txn, 2, true, func(e *AuditEntry) { e.Actor = "someone-else" })
		},
		"not-canonical": func(txn *badger.Txn) error {
			item, err := txn.Get(auditKey(1))
			if err != nil {
				return err
			}
			b, _ := item.ValueCopy(nil)
			return txn.Set(auditKey(1), append([]byte(" "), b...))
		},
		"renumbered": func(txn *badger.Txn) error {
			// The seq is the key: a renumbered entry is one moved to another key.
			item, err := txn.Get(auditKey(4))
			if err != nil {
				return err
			}
			b, _ := item.ValueCopy(nil)
			if err := txn.Delete(auditKey(4)); err != nil {
				return err
			}
			return txn.Set(auditKey(40), b)
		},
		"not-canonical-subject-as-text": func(txn *badger.Txn) error {
			// The same entry with its subject stored as text although it
			// decodes exactly: the same meaning, another byte string.
			item, err := txn.Get(auditKey(2))
			if err != nil {
				return err
			}
			var e AuditEntry
			if err := item.Value(func(b []byte) error { e, err = decodeAuditEntry(2, b); return err }); err != nil {
				return err
			}
			b, err := encodeAuditEntry(&e, 2, [32]byte{})
			if err != nil {
				return err
			}
			raw, _ := subjectText.raw(string(e.Subject))
			i := bytes.Index(b, raw)
			b[1] &^= auditFlagRawSubject
			text := append([]byte{byte(len(e.Subject))}, e.Subject...)
			b = append(append(append([]byte{}, b[:i-1]...), text...), b[i+len(raw):]...)
			return txn.Set(auditKey(2), b)
		},
		"anchor-prev-edited": func(txn *badger.Txn) error {
			item, err := txn.Get(auditKey(1))
			if err != nil {
				return err
			}
			b, _ := item.ValueCopy(nil)
			b[len(b)-1] ^= 1
			return txn.Set(auditKey(1), b)
		},
		"truncated": func(txn *badger.Txn) error {
			item, err := txn.Get(auditKey(3))
			if err != nil {
				return err
			}
			b, _ := item.ValueCopy(nil)
			return txn.Set(auditKey(3), b[:len(b)-3])
		},
	} {
		t.Run(name, func(t *testing.T) {
			pki := newTestPKI(t, "440000")
			n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
			defer n.Close()
			registerN(t, n, 5)
			if _, err := n.VerifyAuditTrail(); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			if err := n.db.Update(tamper); err != nil {
				t.Fatal(err)
			}
			_, err := n.VerifyAuditTrail()
			var e *hcx.Error
			if !errors.As(err, &e) || e.Code != auditBrokenCode {
				t.Fatalf("err = %v, want %s", err, auditBrokenCode)
			}
			t.Log(err)
		})
	}
}

// rewrite changes entry seq in place, in its canonical stored form. With
// rechain the forger also fixes what follows: the stored form carries no
// prev outside anchor entries, so the next entry needs no change; the entry
// is re-encoded with the prev it claims.
func rewrite(txn *badger.Txn, seq uint64, rechain bool, change func(*AuditEntry)) error {
	item, err := txn.Get(auditKey(seq))
	if err != nil {
		return err
	}
	var e AuditEntry
	if err := item.Value(func(b []byte) error { e, err = decodeAuditEntry(seq, b); return err }); err != nil {
		return err
	}
	change(&e)
	var prev [32]byte
	if e.Prev != "" {
		p, _ := hex.DecodeString(e.Prev)
		copy(prev[:], p)
	}
	b, err := encodeAuditEntry(&e, seq, prev)
	if err != nil {
		return err
	}
	if err := txn.Set(auditKey(seq), b); err != nil || !rechain {
		return err
	}
	return nil
}

// TestWriteAndTrailEntrySurviveACrashTogether runs a node in a child process
// that registers residents from several goroutines and kills it with SIGKILL;
// in the store it left, every resident has its registration entry and every
// registration entry its resident, and the chain checks out.
func TestWriteAndTrailEntrySurviveACrashTogether(t *testing.T) {
	if dir := os.Getenv("HCX_AUDIT_CRASH_DIR"); dir != "" {
		auditCrashChild(t, dir)
		return
	}
	dir := t.TempDir()
	acked := map[hcx.Subject]bool{}
	if !killChildAfter(t, "TestWriteAndTrailEntrySurviveACrashTogether", "HCX_AUDIT_CRASH_DIR", dir, func(line string) bool {
		if sub, ok := strings.CutPrefix(line, "ack "); ok {
			acked[hcx.Subject(sub)] = true
		}
		return len(acked) >= 200
	}) {
		t.Fatalf("the child acknowledged only %d registrations before it ended", len(acked))
	}
	db, err := openBadger(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := verifyAuditTrail(db); err != nil {
		t.Fatalf("after the crash: %v", err)
	}
	residents, entries := map[hcx.Subject]bool{}, map[hcx.Subject]bool{}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			switch {
			case strings.HasPrefix(k, pResident):
				residents[hcx.Subject(strings.TrimPrefix(k, pResident))] = true
			case strings.HasPrefix(k, pAudit):
				var e AuditEntry
				seq := binary.BigEndian.Uint64(it.Item().Key()[len(pAudit):])
				if err := it.Item().Value(func(b []byte) (err error) { e, err = decodeAuditEntry(seq, b); return err }); err != nil {
					return err
				}
				if e.Action != ActionResidentRegister {
					return fmt.Errorf("entry %d is %s", e.Seq, e.Action)
				}
				entries[e.Subject] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for sub := range acked {
		if !residents[sub] {
			t.Errorf("resident %s acknowledged but gone", sub)
		}
	}
	for sub := range residents {
		if !entries[sub] {
			t.Errorf("resident %s is stored without its trail entry", sub)
		}
	}
	for sub := range entries {
		if !residents[sub] {
			t.Errorf("trail entry for %s without its resident", sub)
		}
	}
	t.Logf("%d acknowledged, %d stored with %d entries", len(acked), len(residents), len(entries))
}

func auditCrashChild(t *testing.T, dir string) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", dir, time.Now)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				r, err := n.Register(testCtx, RegisterRequest{DocType: hcx.DocCNID, DocNumber: testIDNumber(w*5000 + i), Name: "张三"})
				if err != nil {
					fmt.Fprintln(os.Stderr, "register:", err)
					return
				}
				mu.Lock()
				fmt.Printf("ack %s\n", r.Subject)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// killChildAfter runs the test named test in a child process with key=dir in
// its environment, hands each line the child prints to take until take has
// had enough, then kills the child with SIGKILL. It reports whether take had
// enough before the child ended.
func killChildAfter(t *testing.T, test, key, dir string, take func(line string) (enough bool)) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), key+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	enough := false
	for sc := bufio.NewScanner(out); !enough && sc.Scan(); {
		enough = take(sc.Text())
	}
	cmd.Process.Kill()
	cmd.Wait()
	return enough
}
