package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// memStore is a SessionStore in a map, one function per method.
type memStore struct {
	m map[string]*auth.Principal
}

func (s *memStore) NewSession(_ context.Context, p *auth.Principal) (string, time.Time, error) {
	secret := "secret-" + p.Actor
	cp := *p
	cp.Method, cp.Session = auth.MethodSession, "id-"+p.Actor
	s.m[secret] = &cp
	return secret, time.Date(2026, 11, 24, 21, 0, 0, 0, time.UTC), nil
}

func (s *memStore) Session(_ context.Context, secret string) (*auth.Principal, error) {
	if p, ok := s.m[secret]; ok {
		return p, nil
	}
	return nil, auth.InvalidSession()
}

func (s *memStore) EndSession(_ context.Context, id string) error {
	for k, p := range s.m {
		if p.Session == id {
			delete(s.m, k)
		}
	}
	return nil
}

func TestSessionsReadWriteAndEndCookies(t *testing.T) {
	store := &memStore{m: map[string]*auth.Principal{}}
	now := func() time.Time { return time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC) }
	s := auth.NewSessions(store, auth.SessionConfig{Secure: true, Now: now})

	// No cookie: not this authenticator's kind, and the chain says anonymous.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if p, err := s.Authenticate(r); p != nil || err != nil {
		t.Fatalf("no cookie: %v, %v", p, err)
	}
	if p, err := (auth.Chain{s}).Authenticate(r); err != nil || !p.IsAnonymous() {
		t.Fatalf("chain without cookie: %v, %v", p, err)
	}

	rec := httptest.NewRecorder()
	resident := &auth.Principal{Role: auth.RoleResident, Actor: "resident:x", Subject: "x"}
	if err := s.Start(rec, r, resident); err != nil {
		t.Fatal(err)
	}
	c := rec.Result().Cookies()[0]
	// Secure by configuration on a plain request (TLS ends at a proxy).
	if c.Name != auth.SessionCookie || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 12*3600 {
		t.Fatalf("cookie %+v", c)
	}
	r = httptest.NewRequest(http.MethodPost, "/v1/auth/logout", nil)
	r.AddCookie(c)
	p, err := (auth.Chain{s}).Authenticate(r)
	if err != nil || p.Subject != "x" || p.Method != auth.MethodSession {
		t.Fatalf("with cookie: %+v, %v", p, err)
	}
	rec = httptest.NewRecorder()
	if err := s.End(rec, r, p); err != nil {
		t.Fatal(err)
	}
	if cleared := rec.Result().Cookies()[0]; cleared.MaxAge >= 0 {
		t.Fatalf("End set %+v", cleared)
	}
	if _, err := s.Authenticate(r); hcx.ClassOf(err) != hcx.EUnauthorized {
		t.Fatalf("ended session: %v", err)
	}
	// Logging out a principal that came without a session is a 400.
	if err := s.End(httptest.NewRecorder(), r, &auth.Principal{Role: auth.RoleOperator, Actor: "oidc:x", Method: auth.MethodBearer}); hcx.ClassOf(err) != hcx.EInvalid {
		t.Fatalf("End without a session: %v", err)
	}
	// An empty or over-long cookie is refused without asking the store.
	for _, v := range []string{"", strings.Repeat("A", 200)} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", auth.SessionCookie+"="+v)
		if _, err := s.Authenticate(r); hcx.ClassOf(err) != hcx.EUnauthorized {
			t.Fatalf("cookie %q: %v", v, err)
		}
	}
}
