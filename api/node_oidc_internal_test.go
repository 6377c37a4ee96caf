package api

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

func TestOIDCLoginsAreBoundedOneUseAndExpire(t *testing.T) {
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	l := &oidcLogins{m: map[string]*oidcLogin{}}
	for i := 0; i < maxOIDCLogins; i++ {
		if err := l.put(strconv.Itoa(i), &oidcLogin{expires: now.Add(oidcLoginTTL)}, now); err != nil {
			t.Fatal(err)
		}
	}
	err := l.put("one-too-many", &oidcLogin{expires: now.Add(oidcLoginTTL)}, now)
	var e *hcx.Error
	if !errors.As(err, &e) || e.Class != hcx.ETooMany || e.Code != "too_many_logins" {
		t.Fatalf("beyond the bound: %v", err)
	}
	if l.take("0", now) == nil {
		t.Fatal("a login under way was not found")
	}
	if l.take("0", now) != nil {
		t.Fatal("a state was used twice")
	}
	later := now.Add(oidcLoginTTL + time.Second)
	if l.take("1", later) != nil {
		t.Fatal("an expired login was taken")
	}
	// Full again; expired logins make room.
	for _, k := range []string{"x1", "x2"} {
		if err := l.put(k, &oidcLogin{expires: now.Add(oidcLoginTTL)}, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.put("new", &oidcLogin{expires: later.Add(oidcLoginTTL)}, later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if len(l.m) != 1 {
		t.Errorf("%d logins kept, want only the new one", len(l.m))
	}
}

func TestSameOriginPath(t *testing.T) {
	for next, want := range map[string]string{
		"":                     "/",
		"/":                    "/",
		"/v1/me?tab=codes#top": "/v1/me?tab=codes#top",
	} {
		got, err := sameOriginPath(next)
		if err != nil || got != want {
			t.Errorf("%q: (%q, %v), want %q", next, got, err, want)
		}
	}
	for _, next := range []string{"//evil.example", "/\\evil.example", "https://evil.example/", "evil", "/a\tb", "/%0d%0a\r\n", "/a\\b"} {
		if _, err := sameOriginPath(next); err == nil {
			t.Errorf("%q accepted", next)
		}
	}
}
