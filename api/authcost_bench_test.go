package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// authCostFixture is one Guangdong node (real badger) behind the handler
// cmd/hcx serves (session cookies, SM2 request tokens and OIDC bearer
// tokens in one chain, behind cross-origin protection), once without and
// once with abuse limits, with one credential of each kind.
type authCostFixture struct {
	plain, limited http.Handler
	feed           *certs.Signer // a Guangdong lab feed in the request tokens' trust list
	cookie         string        // a resident's session secret
	bearer         string        // an operator's ID token from the dev IdP
}

func newAuthCostFixture(b *testing.B) *authCostFixture {
	b.Helper()
	n := benchNode(b, b.TempDir())
	b.Cleanup(func() { n.Close() })
	sub := registerResidents(b, n, 1)[0]

	// Machines: a feed certificate from a national root, in the trust list
	// the request tokens are checked against.
	now := time.Now()
	root, err := certs.NewRoot("bench machine root", now, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ts, err := certs.NewTrustStore(root.Cert)
	if err != nil {
		b.Fatal(err)
	}
	feed, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleFeed, Province: "440000", Name: "lab-gz-1",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ts.Add(feed.Cert.Raw); err != nil {
		b.Fatal(err)
	}
	tokens := &auth.RequestTokens{Trust: func() *certs.TrustStore { return ts }, Replay: auth.NewReplayCache(0)}

	// Residents: a server-side session in the node's store.
	sess := auth.NewSessions(n, auth.SessionConfig{})
	cookie, _, err := n.NewSession(context.Background(), &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + string(sub), Subject: sub})
	if err != nil {
		b.Fatal(err)
	}

	// Operators: an ID token from a real dev IdP on loopback, fetched once
	// through the code flow; the node caches the IdP's key set.
	idp, err := devidp.Start("127.0.0.1:0", devidp.Config{Provinces: []hcx.ProvinceCode{"440000"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { idp.Close() })
	var bearer string
	for _, u := range idp.Users() {
		if u.Name == devidp.OperatorName("440000") {
			if bearer, err = devidp.FetchToken(context.Background(), nil, idp.Issuer(), u.Name, u.Password); err != nil {
				b.Fatal(err)
			}
		}
	}
	if bearer == "" {
		b.Fatal("the dev IdP has no Guangdong operator")
	}
	oidc := &auth.OIDC{Issuers: []auth.IssuerConfig{{URL: idp.Issuer(), ClientID: devidp.NodeClientID("440000"), Audiences: []string{devidp.CLIClientID}}}}

	// The chain in cmd/hcx's order (nodeapi.go).
	opts := api.NodeOptions{Authn: auth.Chain{sess, tokens, oidc}, StartSession: sess.Start, EndSession: sess.End, ClearSession: sess.Clear, OIDC: oidc}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &authCostFixture{plain: api.WithCSRF(api.NewNodeHandler(n, log, opts)), feed: feed, cookie: cookie, bearer: bearer}
	// The limiter's buckets are real but too deep to refuse anyone: what is
	// measured is their book-keeping, not 429s.
	opts.Limits = api.NewLimits(api.LimitsConfig{PerRole: map[auth.Role]api.RoleLimit{auth.RoleAnonymous: {Rate: 1e9, Burst: 1e9}}})
	f.limited = api.WithCSRF(api.NewNodeHandler(n, log, opts))

	// Each credential must be taken for what it is, or the benchmark would
	// time an anonymous caller (GET /healthz lets anyone in).
	chain := opts.Authn
	for _, k := range f.kinds() {
		if k.method == "" {
			continue
		}
		r := httptest.NewRequest(http.MethodGet, "http://node.example/healthz", nil)
		if err := k.credential(r); err != nil {
			b.Fatal(err)
		}
		p, err := chain.Authenticate(r)
		if err != nil || p == nil || p.Method != k.method {
			b.Fatalf("%s: the chain made %v of the credential (err %v), want method %s", k.name, p, err, k.method)
		}
	}
	return f
}

// authKind is one way of calling GET /healthz: a credential put on the
// request and the handler that serves it; base is the anonymous call on the
// handler without limits, which every kind is compared against.
type authKind struct {
	name       string
	method     auth.Method // what the chain must make of the credential; "" anonymous
	limited    bool        // served with abuse limits
	credential func(r *http.Request) error
}

// noCredential leaves the request anonymous.
func noCredential(*http.Request) error { return nil }

func (f *authCostFixture) kinds() []authKind {
	return []authKind{
		// The baseline against itself: the noise of the method.
		{name: "anonymous", credential: noCredential},
		{name: "anonymous+limits", limited: true, credential: noCredential},
		{name: "sm2-request-token", method: auth.MethodRequestToken, credential: func(r *http.Request) error {
			return auth.SignRequest(r, nil, f.feed, time.Now())
		}},
		{name: "session-cookie", method: auth.MethodSession, credential: func(r *http.Request) error {
			r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: f.cookie})
			return nil
		}},
		{name: "oidc-bearer", method: auth.MethodBearer, credential: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+f.bearer)
			return nil
		}},
	}
}

// BenchmarkAuthCost measures what authenticating a caller adds to a request
// on the node's cheapest route (GET /healthz, open to anyone, so that every
// kind of caller reaches the same handler), as a ratio to the anonymous
// call in the same run. Each sub-benchmark alternates blocks of anonymous
// calls and calls with its credential, so that both see the same machine
// load, and reports:
//
//	base-ns/req   the anonymous call
//	ns/req        the call with the credential (for the SM2 token without
//	              the client's signing)
//	sign-ns/req   the client signing the SM2 request token
//	added-µs/req  ns/req - base-ns/req
//	ratio         ns/req / base-ns/req
//
// (ns/op is one call of each, signing included.) "inproc" calls the handler
// directly (httptest.NewRecorder), "http" goes through a real loopback HTTP
// server with keep-alive connections.
//
//	go test ./api -run '^$' -bench AuthCost -count 5
func BenchmarkAuthCost(b *testing.B) {
	f := newAuthCostFixture(b)
	b.Run("inproc", func(b *testing.B) {
		call := func(h http.Handler) caller {
			return func(cred func(*http.Request) error) (time.Duration, time.Duration, error) {
				r := httptest.NewRequest(http.MethodGet, "http://node.example/healthz", nil)
				w := httptest.NewRecorder()
				t0 := time.Now()
				if err := cred(r); err != nil {
					return 0, 0, err
				}
				t1 := time.Now()
				h.ServeHTTP(w, r)
				t2 := time.Now()
				if w.Code != http.StatusOK {
					return 0, 0, fmt.Errorf("GET /healthz: %d %s", w.Code, w.Body)
				}
				return t1.Sub(t0), t2.Sub(t1), nil
			}
		}
		f.runKinds(b, call(f.plain), call(f.limited))
	})
	b.Run("http", func(b *testing.B) {
		plain, limited := httptest.NewServer(f.plain), httptest.NewServer(f.limited)
		defer plain.Close()
		defer limited.Close()
		client := &http.Client{Timeout: 10 * time.Second}
		call := func(url string) caller {
			return func(cred func(*http.Request) error) (time.Duration, time.Duration, error) {
				r, err := http.NewRequest(http.MethodGet, url+"/healthz", nil)
				if err != nil {
					return 0, 0, err
				}
				t0 := time.Now()
				if err := cred(r); err != nil {
					return 0, 0, err
				}
				t1 := time.Now()
				res, err := client.Do(r)
				if err != nil {
					return 0, 0, err
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				t2 := time.Now()
				if res.StatusCode != http.StatusOK {
					return 0, 0, fmt.Errorf("GET /healthz: %s %s", res.Status, body)
				}
				return t1.Sub(t0), t2.Sub(t1), nil
			}
		}
		f.runKinds(b, call(plain.URL), call(limited.URL))
	})
}

// caller makes one GET /healthz with the credential and returns how long
// putting the credential on took and how long the call took; an error if
// either failed or the answer was not 200.
type caller func(cred func(*http.Request) error) (prep, call time.Duration, err error)

// authCostBlock is how many calls of one kind run before switching to the
// other: short enough that both see the same load, long enough that the
// switch does not dominate.
const authCostBlock = 16

func (f *authCostFixture) runKinds(b *testing.B, plain, limited caller) {
	for _, k := range f.kinds() {
		b.Run(k.name, func(b *testing.B) {
			h := plain
			if k.limited {
				h = limited
			}
			var base, with, sign time.Duration
			b.ResetTimer()
			for done := 0; done < b.N; done += authCostBlock {
				m := min(authCostBlock, b.N-done)
				for range m {
					_, d, err := plain(noCredential)
					if err != nil {
						b.Fatal(err)
					}
					base += d
				}
				for range m {
					s, d, err := h(k.credential)
					if err != nil {
						b.Fatalf("%s: %v", k.name, err)
					}
					sign += s
					with += d
				}
			}
			b.StopTimer()
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(base), "base-ns/req")
			b.ReportMetric(per(with), "ns/req")
			if k.method == auth.MethodRequestToken {
				b.ReportMetric(per(sign), "sign-ns/req")
			}
			b.ReportMetric((per(with)-per(base))/1000, "added-µs/req")
			b.ReportMetric(float64(with)/float64(base), "ratio")
		})
	}
}
