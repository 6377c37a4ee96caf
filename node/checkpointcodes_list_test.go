package node

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// The checkpoint codes' listing (issue 16 follow-ups): newest first in
// pages that follow one another without gap or repeat, with each code's
// state (issued, used, revoked) and never a code; a cursor the node did
// not give is refused naming before.
func TestCheckpointCodesList(t *testing.T) {
	pki := newTestPKI(t, "440000")
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	n := openTestNode(t, pki, "440000", t.TempDir(), clock)
	defer n.Close()
	ctx := auth.WithRequest(testCtx, auth.Request{ID: "req-1", Reason: "gates for the fair"})

	empty, err := n.CheckpointCodes(ctx, "", 0)
	if err != nil || len(empty.Codes) != 0 || empty.Next != "" {
		t.Fatalf("no codes yet: %+v, %v", empty, err)
	}
	var issued []*CheckpointCode
	for i := range 5 {
		c, err := n.IssueCheckpointCode(ctx, CheckpointCodeRequest{Name: "Gate " + string(rune('A'+i)), Unit: "Fair"})
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, c)
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
	}
	if _, err := n.UseCheckpointCode(testCtx, issued[1].Code); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RevokeCheckpointCode(ctx, issued[3].ID); err != nil {
		t.Fatal(err)
	}

	var got []CheckpointCode
	before, pages := "", 0
	for {
		page, err := n.CheckpointCodes(ctx, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, page.Codes...)
		if page.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("the pages do not end")
		}
		before = page.Next
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("%d codes in %d pages of 2, want 5 in 3", len(got), pages)
	}
	for i, c := range got {
		want := issued[4-i]
		if c.ID != want.ID || c.Name != want.Name || !c.Issued.Equal(want.Expires.Add(-CheckpointCodeTTL)) || c.IssuedBy == "" {
			t.Errorf("code %d: %+v, want %s issued %v (newest first)", i, c, want.Name, want.Expires.Add(-CheckpointCodeTTL))
		}
		if c.Code != "" {
			t.Errorf("the listing carries code %s's code", c.ID)
		}
	}
	if got[3].Used == nil || got[3].Revoked != nil || got[1].Revoked == nil || got[0].Used != nil || got[0].Revoked != nil {
		t.Errorf("states: used %v, revoked %v, fresh %+v", got[3].Used, got[1].Revoked, got[0])
	}
	for _, bad := range []string{"xyz", strings.Repeat("g", 16), "../cpcode/00000000"} {
		_, err := n.CheckpointCodes(ctx, bad, 2)
		if e := wantErr(t, "cursor "+bad, err, hcx.EInvalid, "invalid_before"); e.Field != "before" {
			t.Errorf("cursor %q: field %q, want before", bad, e.Field)
		}
	}
}
