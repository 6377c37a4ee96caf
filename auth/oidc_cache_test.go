package auth

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func wantRefused(t *testing.T, o *OIDC, raw, code string) {
	t.Helper()
	p, err := o.Authenticate(bearer(raw))
	if p != nil {
		t.Fatalf("accepted as %+v", p)
	}
	if class, c := errCode(err); class != hcx.EUnauthorized || c != code {
		t.Fatalf("err = %v (%s/%s), want unauthorized/%s", err, class, c, code)
	}
}

func TestOIDCCachedTokenIsRefusedOnceExpired(t *testing.T) {
	idp := startIdP(t)
	clock := &fakeClock{t: time.Now()}
	o := nodeOIDC(idp, clock.now)
	good := devToken(t, idp, "op-440000")
	for i := range 2 {
		p, err := o.Authenticate(bearer(good))
		if err != nil || p.Role != RoleOperator || p.Province != "440000" || p.Method != MethodBearer {
			t.Fatalf("call %d: %+v, %v", i, p, err)
		}
	}
	if o.cache.get(good, clock.now()) == nil || o.cache.len() != 1 {
		t.Fatalf("a verified token is not cached (%d entries)", o.cache.len())
	}
	clock.add(devidp.IDTokenLifetime + time.Second)
	wantRefused(t, o, good, "token_expired")
	if n := o.cache.len(); n != 0 {
		t.Errorf("an expired token is still cached (%d entries)", n)
	}
}

func TestOIDCCacheIsBounded(t *testing.T) {
	idp := startIdP(t)
	o := nodeOIDC(idp, nil)
	o.CachedTokens = 2
	users := []string{"op-440000", "op-510000", "auditor", "li-lei"}
	tokens := make([]string, len(users))
	for i, u := range users {
		tokens[i] = devToken(t, idp, u)
	}
	for range 2 {
		for i, raw := range tokens {
			p, err := o.Authenticate(bearer(raw))
			if err != nil || !strings.HasSuffix(p.Actor, "#"+users[i]) {
				t.Fatalf("%s: %+v, %v", users[i], p, err)
			}
			if n := o.cache.len(); n > 2 {
				t.Fatalf("%d cached tokens, bound 2", n)
			}
		}
	}
	if n := o.cache.len(); n != 2 {
		t.Errorf("%d cached tokens, want 2 (full)", n)
	}

	off := nodeOIDC(idp, nil)
	off.CachedTokens = -1
	if _, err := off.Authenticate(bearer(tokens[0])); err != nil {
		t.Fatal(err)
	}
	if n := off.cache.len(); n != 0 {
		t.Errorf("CachedTokens -1 cached %d tokens", n)
	}
}

func TestOIDCTamperedTokenNeverHitsTheCache(t *testing.T) {
	idp := startIdP(t)
	o := nodeOIDC(idp, nil)
	good := devToken(t, idp, "op-440000")
	if _, err := o.Authenticate(bearer(good)); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	flipped := flipSignature(good)
	// Other bytes are another cache key: checked in full, and refused.
	for name, raw := range map[string]string{"signature-changed": flipped, "payload-changed": parts[0] + "." + parts[1] + "x." + parts[2]} {
		t.Run("reject/"+name, func(t *testing.T) {
			if o.cache.get(raw, time.Now()) != nil {
				t.Fatal("a different token hits the cache")
			}
			p, err := o.Authenticate(bearer(raw))
			if p != nil || err == nil {
				t.Fatalf("accepted as %+v", p)
			}
			if class, _ := errCode(err); class != hcx.EUnauthorized {
				t.Fatalf("err = %v, want unauthorized", err)
			}
		})
	}
	if n := o.cache.len(); n != 1 {
		t.Errorf("%d cached tokens, want only the good one", n)
	}
}

func TestOIDCFailedTokenIsNeverCached(t *testing.T) {
	idp := startIdP(t)
	good := devToken(t, idp, "op-440000")
	for _, tc := range []struct {
		name string
		o    *OIDC
		code string
	}{
		// The signature checks out, the claims do not.
		{"reject/province-the-issuer-may-not-vouch-for", &OIDC{Issuers: []IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.CLIClientID, Provinces: []hcx.ProvinceCode{"510000"}}}}, "token_claims"},
		{"reject/another-audience", &OIDC{Issuers: []IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.NodeClientID("440000")}}}, "token_wrong_audience"},
		{"reject/expired", nodeOIDC(idp, func() time.Time { return time.Now().Add(devidp.IDTokenLifetime + time.Minute) }), "token_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 {
				wantRefused(t, tc.o, good, tc.code)
			}
			if n := tc.o.cache.len(); n != 0 {
				t.Errorf("a refused token is cached (%d entries)", n)
			}
		})
	}
	// VerifyIdentity caches only a token whose identity checks out: an
	// operator's token carries none.
	o := nodeOIDC(idp, nil)
	if _, err := o.VerifyIdentity(t.Context(), good); err == nil {
		t.Fatal("an operator's token gave an identity")
	}
	if n := o.cache.len(); n != 0 {
		t.Errorf("a token refused by VerifyIdentity is cached (%d entries)", n)
	}
}
