package node

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// A checkpoint code (issue 16): issued by an operator, stored only as SM3,
// used once for a checkpoint principal of the province, refused when
// unknown, used, expired or revoked; revoking it ends the session it
// started; every step is in the trail, never the code.
func TestCheckpointCodeIssueUseRevoke(t *testing.T) {
	pki := newTestPKI(t, "440000")
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	setClock := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	n := openTestNode(t, pki, "440000", t.TempDir(), clock)
	defer n.Close()
	ctx := auth.WithRequest(testCtx, auth.Request{ID: "req-9", Reason: "school gate, morning shift"})

	// Bad input names the field and writes nothing.
	before := n.StoreVersion()
	for _, bad := range []struct {
		req   CheckpointCodeRequest
		field string
	}{
		{CheckpointCodeRequest{Name: "", Unit: "Baiyun school"}, "name"},
		{CheckpointCodeRequest{Name: "Gate 3", Unit: "  "}, "unit"},
		{CheckpointCodeRequest{Name: strings.Repeat("门", MaxCheckpointNameLen+1), Unit: "x"}, "name"},
		{CheckpointCodeRequest{Name: "Gate\n3", Unit: "x"}, "name"},
	} {
		_, err := n.IssueCheckpointCode(ctx, bad.req)
		if e := wantErr(t, "bad request", err, hcx.EInvalid, "invalid_"+bad.field); e.Field != bad.field {
			t.Errorf("%+v: field %q, want %q", bad.req, e.Field, bad.field)
		}
	}
	if n.StoreVersion() != before {
		t.Error("a refused request wrote something")
	}

	c, err := n.IssueCheckpointCode(ctx, CheckpointCodeRequest{Name: "3号门", Unit: "白云小学"})
	if err != nil {
		t.Fatal(err)
	}
	if !enrolmentCodeForm.MatchString(c.Code) || len(c.ID) != 16 || c.Province != "440000" || !c.Expires.Equal(clock().UTC().Add(24*time.Hour)) {
		t.Fatalf("issued %+v: want a code XXXXX-XXXXX-XXXXX-XXXXX, an id, 440000, valid 24 h", c)
	}
	raw := strings.ReplaceAll(c.Code, "-", "")
	wantNotStored(t, n, raw)

	// Malformed and unknown codes.
	_, err = n.UseCheckpointCode(context.Background(), "not-a-code")
	if e := wantErr(t, "malformed", err, hcx.EInvalid, "invalid_code"); e.Field != "code" || !strings.Contains(e.Message, "checkpoint code") {
		t.Errorf("malformed: %+v", e)
	}
	_, err = n.UseCheckpointCode(context.Background(), "00000-00000-00000-00000")
	wantErr(t, "unknown", err, hcx.EUnauthorized, "checkpoint_code_unknown")

	// Expired a second after its day; typed in lower case it works a
	// second before.
	start := clock()
	setClock(start.Add(CheckpointCodeTTL))
	_, err = n.UseCheckpointCode(context.Background(), c.Code)
	wantErr(t, "expired", err, hcx.EUnauthorized, "checkpoint_code_expired")
	setClock(start.Add(CheckpointCodeTTL - time.Second))
	p, err := n.UseCheckpointCode(context.Background(), strings.ToLower(raw))
	if err != nil {
		t.Fatal(err)
	}
	if p.Role != auth.RoleCheckpoint || p.Province != "440000" || p.Name != "3号门" || p.Actor != "checkpoint-code:"+c.ID || p.Subject != "" {
		t.Fatalf("principal %+v", p)
	}
	// Attack: a code used twice.
	_, err = n.UseCheckpointCode(context.Background(), c.Code)
	wantErr(t, "second use", err, hcx.EConflict, "checkpoint_code_used")

	// The session the code started ends when the operator revokes it.
	secret, _, err := n.NewSession(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if sp, err := n.Session(context.Background(), secret); err != nil || sp.Role != auth.RoleCheckpoint {
		t.Fatalf("session = %+v, %v", sp, err)
	}
	r, err := n.RevokeCheckpointCode(ctx, c.ID)
	if err != nil || r.Revoked == nil || r.Code != "" {
		t.Fatalf("revoke = %+v, %v", r, err)
	}
	if _, err := n.Session(context.Background(), secret); err == nil {
		t.Error("the session of a revoked checkpoint code still works")
	}
	// Revoking again answers the same state and writes no second entry.
	if r2, err := n.RevokeCheckpointCode(ctx, c.ID); err != nil || !r2.Revoked.Equal(*r.Revoked) {
		t.Fatalf("revoke again = %+v, %v", r2, err)
	}
	_, err = n.RevokeCheckpointCode(ctx, "0123456789abcdef")
	wantErr(t, "revoke unknown", err, hcx.ENotFound, "checkpoint_code_unknown")
	_, err = n.RevokeCheckpointCode(ctx, "../x")
	wantErr(t, "revoke malformed", err, hcx.EInvalid, "invalid_id")

	// An unused code, revoked, is refused as revoked.
	c2, err := n.IssueCheckpointCode(ctx, CheckpointCodeRequest{Name: "Gate 4", Unit: "Baiyun school"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.RevokeCheckpointCode(ctx, c2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = n.UseCheckpointCode(context.Background(), c2.Code)
	wantErr(t, "revoked", err, hcx.EUnauthorized, "checkpoint_code_revoked")

	// Without an operator, nothing is issued.
	_, err = n.IssueCheckpointCode(context.Background(), CheckpointCodeRequest{Name: "x", Unit: "y"})
	wantErr(t, "no principal", err, hcx.EInternal, "no_actor")

	issued, used, revoked := trailOf(t, n, ActionCheckpointCodeIssue), trailOf(t, n, ActionCheckpointCodeUse), trailOf(t, n, ActionCheckpointCodeRevoke)
	if len(issued) != 2 || issued[0].Actor != "oidc:https://idp.test#op-1" || issued[0].Why != "school gate, morning shift" || issued[0].Note != "checkpoint code "+c.ID {
		t.Errorf("issue entries %+v", issued)
	}
	if len(used) != 1 || used[0].Actor != "checkpoint-code:"+c.ID || used[0].Role != auth.RoleCheckpoint {
		t.Errorf("use entries %+v", used)
	}
	if len(revoked) != 2 {
		t.Errorf("%d revoke entries, want 2 (one per code)", len(revoked))
	}
	wantNoIdentityInTrail(t, n, raw, strings.ReplaceAll(c2.Code, "-", ""))
	if _, err := n.VerifyAuditTrail(); err != nil {
		t.Fatalf("trail: %v", err)
	}
}

// wantNotStored fails if any key or value of n's store holds secret in
// clear (a one-time code: only its SM3 is kept).
func wantNotStored(t *testing.T, n *Node, secret string) {
	t.Helper()
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if bytes.Contains(v, []byte(secret)) || bytes.Contains(it.Item().Key(), []byte(secret)) {
				t.Errorf("key %s stores the code in clear", it.Item().Key())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Attack: one checkpoint code used at the same time from several browsers:
// exactly one wins.
func TestCheckpointCodeSingleUseUnderConcurrency(t *testing.T) {
	pki := newTestPKI(t, "440000")
	n := openTestNode(t, pki, "440000", t.TempDir(), time.Now)
	defer n.Close()
	for round := range 5 {
		c, err := n.IssueCheckpointCode(testCtx, CheckpointCodeRequest{Name: "Gate", Unit: "Unit"})
		if err != nil {
			t.Fatal(err)
		}
		raceUses(t, round, "checkpoint_code_used", func() error {
			_, err := n.UseCheckpointCode(context.Background(), c.Code)
			return err
		})
	}
	if got := len(trailOf(t, n, ActionCheckpointCodeUse)); got != 5 {
		t.Errorf("%d checkpoint_code.use entries, want 5", got)
	}
}

// raceUses runs use from 4 goroutines at once and fails unless exactly
// one succeeds and the others are refused with the code used.
func raceUses(t *testing.T, round int, used string, use func() error) {
	t.Helper()
	const racers = 4
	var wg sync.WaitGroup
	errs := make([]error, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = use()
		})
	}
	close(start)
	wg.Wait()
	if won := successes(t, errs, used); won != 1 {
		t.Fatalf("round %d: %d uses of one code succeeded, want exactly 1 (%v)", round, won, errs)
	}
}
