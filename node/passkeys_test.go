package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/hcxfed/hcx"
)

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if e, ok := err.(*hcx.Error); !ok || e.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func TestPasskeyHandleIsRandomStableAndLeadsBack(t *testing.T) {
	n, _ := openSessionNode(t)
	ctx := context.Background()
	const sub hcx.Subject = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	h1, err := n.PasskeyHandle(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := n.PasskeyHandle(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.PasskeyHandle(ctx, "bbbbbbbbbbbbbbbbbbbbbbbbbb")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h1, h2) || len(h1) != 32 || bytes.Equal(h1, other) {
		t.Fatalf("handles %x %x %x", h1, h2, other)
	}
	if got, err := n.PasskeyOwner(ctx, h1); err != nil || got != sub {
		t.Fatalf("owner %q, %v", got, err)
	}
	_, err = n.PasskeyOwner(ctx, bytes.Repeat([]byte{1}, 32))
	wantCode(t, err, "passkey_unknown")
	_, err = n.PasskeyHandle(ctx, "NOT-A-SUBJECT")
	wantCode(t, err, "invalid_sub")
}

func TestAddPasskeyRefusesDuplicatesAndBoundsEachResident(t *testing.T) {
	n, _ := openSessionNode(t)
	ctx := context.Background()
	const a, b hcx.Subject = "aaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbb"
	pk := func(i int) Passkey {
		return Passkey{ID: []byte(fmt.Sprintf("cred-%02d", i)), Credential: json.RawMessage(`{}`)}
	}
	for i := range MaxPasskeys {
		if err := n.AddPasskey(ctx, a, pk(i)); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, n.AddPasskey(ctx, a, pk(MaxPasskeys)), "passkey_limit")
	// A credential id belongs to one resident only.
	wantCode(t, n.AddPasskey(ctx, b, pk(0)), "passkey_exists")
	wantCode(t, n.AddPasskey(ctx, b, Passkey{}), "invalid_id")
	// Removing frees the id and a place.
	left, err := n.RemovePasskey(ctx, a, pk(0).ID)
	if err != nil || left != MaxPasskeys-1 {
		t.Fatalf("remove: %d, %v", left, err)
	}
	if err := n.AddPasskey(ctx, b, pk(0)); err != nil {
		t.Fatal(err)
	}
	_, err = n.RemovePasskey(ctx, a, pk(0).ID) // now b's
	wantCode(t, err, "passkey_not_found")
}

func TestUsePasskeyLetsOneOfTwoRacingLoginsWithOneCounterPass(t *testing.T) {
	n, _ := openSessionNode(t)
	ctx := context.Background()
	const sub hcx.Subject = "cccccccccccccccccccccccccc"
	id := []byte("cred")
	if err := n.AddPasskey(ctx, sub, Passkey{ID: id, Counter: 0, Credential: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = n.UsePasskey(ctx, sub, id, 5, json.RawMessage(`{}`)) })
	}
	wg.Wait()
	passed := 0
	for _, err := range errs {
		if err == nil {
			passed++
		} else {
			wantCode(t, err, "passkey_counter")
		}
	}
	if passed != 1 {
		t.Fatalf("%d logins with counter 5 passed, want 1", passed)
	}
	wantCode(t, n.UsePasskey(ctx, sub, id, 4, nil), "passkey_counter")
	if err := n.UsePasskey(ctx, sub, id, 6, json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, n.UsePasskey(ctx, sub, []byte("gone"), 9, nil), "passkey_unknown")
}
