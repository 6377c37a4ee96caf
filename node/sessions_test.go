package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// Add moves the clock on by d.
func (c *testClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

func resident(sub string) *auth.Principal {
	return &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + sub, Subject: hcx.Subject(sub)}
}

// openSessionNode opens a node on a clock the test moves; it is closed when
// the test ends.
func openSessionNode(t *testing.T) (*Node, *testClock) {
	t.Helper()
	clock := newTestClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), clock.Now)
	t.Cleanup(func() { n.Close() })
	return n, clock
}

func wantInvalidSession(t *testing.T, err error) {
	t.Helper()
	var e *hcx.Error
	if !errors.As(err, &e) || e.Code != auth.CodeSessionInvalid || e.Class != hcx.EUnauthorized {
		t.Fatalf("err = %v, want unauthorized %s", err, auth.CodeSessionInvalid)
	}
}

func TestSessionLivesAcrossRestartAndEndsOnLogout(t *testing.T) {
	pki := newTestPKI(t, "440000")
	clock := newTestClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	ctx := context.Background()
	n := openTestNode(t, pki, "440000", dir, clock.Now)
	const sub = "aaaaaaaaaaaaaaaaaaaaaaaaaa"
	secret, exp, err := n.NewSession(ctx, resident(sub))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := exp, clock.Now().Add(DefaultSessionTTL); !got.Equal(want) {
		t.Fatalf("expires %v, want %v", got, want)
	}
	n.Close()

	n = openTestNode(t, pki, "440000", dir, clock.Now)
	defer n.Close()
	p, err := n.Session(ctx, secret)
	if err != nil {
		t.Fatalf("session after restart: %v", err)
	}
	if p.Subject != sub || p.Role != auth.RoleResident || p.Method != auth.MethodSession || len(p.Session) != 64 {
		t.Fatalf("principal %+v", p)
	}
	if err := n.EndSession(ctx, p.Session); err != nil {
		t.Fatal(err)
	}
	_, err = n.Session(ctx, secret)
	wantInvalidSession(t, err)
}

func TestSessionRefusesForgedSecrets(t *testing.T) {
	n, _ := openSessionNode(t)
	random := make([]byte, 32)
	rand.Read(random)
	for name, secret := range map[string]string{
		"reject/random-32-bytes": base64.RawURLEncoding.EncodeToString(random),
		"reject/empty":           "",
		"reject/not-base64":      "!!!!",
		"reject/short":           base64.RawURLEncoding.EncodeToString(random[:16]),
		"reject/padded":          base64.URLEncoding.EncodeToString(random[:31]),
	} {
		t.Run(name, func(t *testing.T) {
			before := n.StoreVersion()
			_, err := n.Session(context.Background(), secret)
			wantInvalidSession(t, err)
			if n.StoreVersion() != before {
				t.Fatal("a refused secret wrote to the store")
			}
		})
	}
}

func TestSessionIdleExpirySlidesAndAbsoluteExpiryHolds(t *testing.T) {
	n, clock := openSessionNode(t)
	ctx := context.Background()

	// Idle: unused for 30 minutes, the session is gone.
	idle, _, err := n.NewSession(ctx, resident("bbbbbbbbbbbbbbbbbbbbbbbbbb"))
	if err != nil {
		t.Fatal(err)
	}
	// Used every 20 minutes, a session lives until its absolute expiry.
	busy, _, err := n.NewSession(ctx, resident("cccccccccccccccccccccccccc"))
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(20 * time.Minute)
	if _, err := n.Session(ctx, idle); err != nil {
		t.Fatalf("idle session at 20 min: %v", err)
	}
	elapsed := 20 * time.Minute
	for ; elapsed < DefaultSessionTTL; elapsed += 20 * time.Minute {
		if _, err := n.Session(ctx, busy); err != nil {
			t.Fatalf("busy session at %v: %v", elapsed, err)
		}
		clock.Add(20 * time.Minute)
		if elapsed == 40*time.Minute { // 20 minutes after the last use, plus 20 more
			_, err = n.Session(ctx, idle)
			wantInvalidSession(t, err)
		}
	}
	_, err = n.Session(ctx, busy)
	wantInvalidSession(t, err)
}

func TestSessionWritesItsLastUseAtMostOnceAMinute(t *testing.T) {
	n, clock := openSessionNode(t)
	ctx := context.Background()
	secret, _, err := n.NewSession(ctx, resident("dddddddddddddddddddddddddd"))
	if err != nil {
		t.Fatal(err)
	}
	before := n.StoreVersion()
	for range 5 {
		clock.Add(10 * time.Second)
		if _, err := n.Session(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if n.StoreVersion() != before {
		t.Fatal("a session used within a minute wrote its last use")
	}
	clock.Add(20 * time.Second)
	if _, err := n.Session(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if n.StoreVersion() == before {
		t.Fatal("a session used after a minute did not slide")
	}
}

func TestSessionsPerActorAreCappedOldestFirst(t *testing.T) {
	n, clock := openSessionNode(t)
	ctx := context.Background()
	p := resident("eeeeeeeeeeeeeeeeeeeeeeeeee")
	var secrets []string
	for range DefaultSessionsPerActor + 2 {
		clock.Add(time.Second)
		s, _, err := n.NewSession(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, s)
	}
	for i, s := range secrets {
		_, err := n.Session(ctx, s)
		if i < 2 {
			wantInvalidSession(t, err)
		} else if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	// Another actor's sessions are not touched by the cap or by ending.
	other, _, err := n.NewSession(ctx, resident("ffffffffffffffffffffffffff"))
	if err != nil {
		t.Fatal(err)
	}
	keep, err := n.Session(ctx, secrets[len(secrets)-1])
	if err != nil {
		t.Fatal(err)
	}
	ended, err := n.EndSessions(ctx, p.Actor, keep.Session)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ended, DefaultSessionsPerActor-1; got != want {
		t.Fatalf("ended %d sessions, want %d", got, want)
	}
	for i, s := range secrets[:len(secrets)-1] {
		if _, err := n.Session(ctx, s); err == nil {
			t.Fatalf("session %d survived EndSessions", i)
		}
	}
	if _, err := n.Session(ctx, keep.Session); err == nil {
		t.Fatal("a session id (not its secret) opened a session")
	}
	for _, s := range []string{secrets[len(secrets)-1], other} {
		if _, err := n.Session(ctx, s); err != nil {
			t.Fatalf("kept session: %v", err)
		}
	}
}

func TestPurgeSessionsDeletesExpiredOnly(t *testing.T) {
	n, clock := openSessionNode(t)
	ctx := context.Background()
	for _, sub := range []string{"gggggggggggggggggggggggggg", "hhhhhhhhhhhhhhhhhhhhhhhhhh"} {
		if _, _, err := n.NewSession(ctx, resident(sub)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(DefaultSessionTTL + time.Second)
	fresh, _, err := n.NewSession(ctx, resident("jjjjjjjjjjjjjjjjjjjjjjjjjj")) // sweeps the two lapsed ones
	if err != nil {
		t.Fatal(err)
	}
	if k, err := n.PurgeSessions(); err != nil || k != 0 {
		t.Fatalf("purge after the sweep: %d, %v; want 0", k, err)
	}
	if _, err := n.Session(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	clock.Add(DefaultSessionTTL)
	if k, err := n.PurgeSessions(); err != nil || k != 1 {
		t.Fatalf("purge: %d, %v; want 1", k, err)
	}
}

func TestNewSessionRefusesAnonymous(t *testing.T) {
	n, _ := openSessionNode(t)
	for _, p := range []*auth.Principal{nil, auth.Anonymous, {Role: auth.RoleResident}} {
		if _, _, err := n.NewSession(context.Background(), p); hcx.ClassOf(err) != hcx.EInvalid {
			t.Fatalf("NewSession(%+v) = %v, want invalid", p, err)
		}
	}
}
