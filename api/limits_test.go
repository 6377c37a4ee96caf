package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/time/rate"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// asPrincipal is a test-only authenticator: the caller names its role,
// actor, province and subject in X-Test-As ("role actor province|- [subject]"). Other packages
// bring the real credentials; these tests exercise the limits and the trail.
var asPrincipal = auth.AuthenticatorFunc(func(r *http.Request) (*auth.Principal, error) {
	v := r.Header.Get("X-Test-As")
	if v == "" {
		return nil, nil
	}
	if v == "forged" {
		return nil, hcx.Errorf(hcx.EUnauthorized, "bad_credential", "the credential does not check out")
	}
	f := strings.Fields(v)
	p := &auth.Principal{Role: auth.Role(f[0]), Actor: f[1], Method: auth.MethodBearer}
	if len(f) > 2 && f[2] != "-" {
		p.Province = hcx.ProvinceCode(f[2])
	}
	if len(f) > 3 {
		p.Subject = hcx.Subject(f[3])
	}
	return p, nil
})

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testGate is a gate over asPrincipal with limits l.
func testGate(l *Limits) *gate {
	return &gate{authn: asPrincipal, limits: l, inScope: func(*http.Request, *auth.Principal, Scope) error { return nil },
		onError: func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, quiet(), err) }}
}

var everyone = []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}

func ok(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// call drives h with one request from addr as who ("" anonymous).
func call(h http.Handler, method, path, addr, who string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = addr
	if who != "" {
		r.Header.Set("X-Test-As", who)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct {
			Code  string `json:"code"`
			Field string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %d %q: %v", w.Code, w.Body, err)
	}
	return body.Error.Code
}

func TestBurstOverTheLimitGets429WithRetryAfterAndRecovers(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC)}
	l := NewLimits(LimitsConfig{PerRole: map[auth.Role]RoleLimit{
		auth.RoleResident:  {Rate: 0.5, Burst: 3},
		auth.RoleAnonymous: {Rate: 1, Burst: 2},
	}, Now: clock.Now})
	h := testGate(l).wrap(&Rule{Method: "GET", Path: "/x", Priority: PriorityResident, Allow: everyone, Handler: ok})
	alice, bob := "resident resident:alice", "resident resident:bob"
	for i := range 3 {
		if w := call(h, "GET", "/x", "10.0.0.1:1000", alice); w.Code != 200 {
			t.Fatalf("request %d of the burst: %d %s", i+1, w.Code, w.Body)
		}
	}
	w := call(h, "GET", "/x", "10.0.0.1:1000", alice)
	if w.Code != http.StatusTooManyRequests || errorCode(t, w) != "rate_limited" || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("over the burst: %d Retry-After %q %s; want 429 rate_limited after 2 s (0.5/s)", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// Identities are independent: Bob, from the same address, is served.
	if w := call(h, "GET", "/x", "10.0.0.1:1000", bob); w.Code != 200 {
		t.Fatalf("another resident: %d %s", w.Code, w.Body)
	}
	// A refused request costs nothing: after the Retry-After delay, one
	// more request is served, and the next is refused again.
	clock.add(2 * time.Second)
	if w := call(h, "GET", "/x", "10.0.0.1:1000", alice); w.Code != 200 {
		t.Fatalf("after Retry-After: %d %s", w.Code, w.Body)
	}
	if w := call(h, "GET", "/x", "10.0.0.1:1000", alice); w.Code != http.StatusTooManyRequests {
		t.Fatalf("right after: %d, want 429", w.Code)
	}

	// Anonymous callers by address; IPv6 by /64.
	for _, tc := range []struct {
		name, addr string
		want       int
	}{
		{"v4/first", "192.0.2.1:1", 200},
		{"v4/second", "192.0.2.1:2", 200},
		{"v4/over", "192.0.2.1:3", 429},
		{"v4/other-address", "192.0.2.2:1", 200},
		{"v6/first", "[2001:db8:1:2::1]:1", 200},
		{"v6/same-64", "[2001:db8:1:2:ffff::9]:1", 200},
		{"v6/same-64-over", "[2001:db8:1:2:abcd::1]:1", 429},
		{"v6/other-64", "[2001:db8:1:3::1]:1", 200},
		{"v4-mapped-is-v4", "[::ffff:192.0.2.1]:1", 429},
	} {
		if w := call(h, "GET", "/x", tc.addr, ""); w.Code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, w.Code, tc.want)
		}
	}
	m := limitsMetrics(t, l)
	for _, line := range []string{`hcx_api_rate_limited_total{role="resident"} 2`, `hcx_api_rate_limited_total{role="anonymous"} 3`} {
		if !strings.Contains(m.String(), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, m.String())
		}
	}
}

// A prober polling health checks from one address is never rate limited,
// while the same address is on another route (it failed before: /healthz
// shared the anonymous bucket, 2 per second).
func TestHealthChecksAreNotRateLimited(t *testing.T) {
	l := NewLimits(LimitsConfig{PerRole: map[auth.Role]RoleLimit{auth.RoleAnonymous: {Rate: 1, Burst: 2}}})
	g := testGate(l)
	health := g.wrap(&Rule{Method: "GET", Path: "/healthz", Priority: PriorityOps, Allow: everyone, Handler: ok})
	other := g.wrap(&Rule{Method: "GET", Path: "/x", Priority: PriorityResident, Allow: everyone, Handler: ok})
	for i := range 50 {
		if w := call(health, "GET", "/healthz", "192.0.2.9:1", ""); w.Code != 200 {
			t.Fatalf("health check %d: %d %s", i+1, w.Code, w.Body)
		}
	}
	codes := []int{call(other, "GET", "/x", "192.0.2.9:1", "").Code, call(other, "GET", "/x", "192.0.2.9:1", "").Code, call(other, "GET", "/x", "192.0.2.9:1", "").Code}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Errorf("another route from the same address: %v, want 200 200 429", codes)
	}
}

func TestBadCredentialsAreChargedToTheAddress(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC)}
	l := NewLimits(LimitsConfig{PerRole: map[auth.Role]RoleLimit{auth.RoleAnonymous: {Rate: 1, Burst: 3}}, Now: clock.Now})
	h := testGate(l).wrap(&Rule{Method: "GET", Path: "/x", Priority: PriorityResident, Allow: everyone, Handler: ok})
	for i := range 3 {
		if w := call(h, "GET", "/x", "198.51.100.7:1", "forged"); w.Code != http.StatusUnauthorized {
			t.Fatalf("forged credential %d: %d, want 401", i+1, w.Code)
		}
	}
	if w := call(h, "GET", "/x", "198.51.100.7:1", "forged"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("a fourth forged credential: %d %q, want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestRateBucketsStayBoundedUnderManyIdentities(t *testing.T) {
	l := NewLimits(DefaultLimitsConfig())
	r := httptest.NewRequest("GET", "/x", nil)
	const identities = 120_000
	for i := range identities {
		if err := l.allow(r, &auth.Principal{Role: auth.RoleResident, Actor: fmt.Sprintf("resident:%d", i)}); err != nil {
			t.Fatalf("identity %d: %v", i, err)
		}
	}
	if got := l.Len(); got > DefaultLimitsConfig().MaxIdentities || got < DefaultLimitsConfig().MaxIdentities*9/10 {
		t.Errorf("%d buckets after %d identities; want at most %d and most of them kept", got, identities, DefaultLimitsConfig().MaxIdentities)
	}
	// The most recent identity is still limited by its own bucket.
	last := &auth.Principal{Role: auth.RoleResident, Actor: fmt.Sprintf("resident:%d", identities-1)}
	var refused bool
	for range 25 {
		refused = refused || l.allow(r, last) != nil
	}
	if !refused {
		t.Error("the newest identity was never limited in 25 calls (burst 20)")
	}
}

func TestBulkSaturatedLeavesCheckpointsTheirCapacity(t *testing.T) {
	l := NewLimits(LimitsConfig{InFlight: map[Priority]int{PriorityCheckpoint: 2, PriorityResident: 2, PriorityOperator: 2, PriorityBulk: 2},
		PerRole: map[auth.Role]RoleLimit{auth.RoleAnonymous: {Rate: rate.Inf}}})
	hold := make(chan struct{})
	entered := make(chan struct{}, 8)
	blocked := func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-hold
		ok(w, r)
	}
	router := mux.NewRouter()
	testGate(l).mount(router, []Rule{
		{Method: "POST", Path: "/bulk", Priority: PriorityBulk, Allow: everyone, Handler: blocked},
		{Method: "POST", Path: "/verify", Priority: PriorityCheckpoint, Allow: everyone, Handler: ok},
		{Method: "GET", Path: "/healthz", Priority: PriorityOps, Allow: everyone, Handler: ok},
	})
	srv := httptest.NewServer(router)
	defer srv.Close()
	post := func(path string) *http.Response {
		resp, err := http.Post(srv.URL+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp := post("/bulk"); resp.StatusCode != 200 {
				t.Errorf("held bulk request: %d", resp.StatusCode)
			}
		}()
	}
	<-entered
	<-entered
	if resp := post("/bulk"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("a third bulk request: %d Retry-After %q, want 503 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := post("/verify"); resp.StatusCode != 200 {
		t.Errorf("a checkpoint verification while bulk is saturated: %d, want 200", resp.StatusCode)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("health check while bulk is saturated: %v %v", resp, err)
	}
	resp.Body.Close()
	m := limitsMetrics(t, l)
	for _, line := range []string{`hcx_api_shed_total{class="bulk"} 1`, `hcx_api_shed_total{class="checkpoint"} 0`, `hcx_api_in_flight{class="bulk"} 2`} {
		if !strings.Contains(m.String(), line+"\n") {
			t.Errorf("metrics lack %q:\n%s", line, m.String())
		}
	}
	close(hold)
	wg.Wait()
	if resp := post("/bulk"); resp.StatusCode != 200 {
		t.Errorf("bulk after the held requests ended: %d", resp.StatusCode)
	}
}

func TestNodeBusyAnswersRetryAfter(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, quiet(), node.ErrBusy)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("ErrBusy: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	w = httptest.NewRecorder()
	WriteError(w, quiet(), hcx.Errorf(hcx.EInvalid, "x", "no retry"))
	if w.Header().Get("Retry-After") != "" {
		t.Error("Retry-After on an error without retry_after")
	}
}

// fakeNode is a Node whose AuditRead is a function field; every other
// method panics (the gate never calls them).
type fakeNode struct {
	Node
	auditRead func(ctx context.Context, action string, sub hcx.Subject, why string) error
}

func (f *fakeNode) Province() hcx.ProvinceCode { return "440000" }
func (f *fakeNode) AuditRead(ctx context.Context, action string, sub hcx.Subject, why string) error {
	return f.auditRead(ctx, action, sub, why)
}

func TestAuditedReadIsRecordedBeforeTheAnswerAndOperatorsSayWhy(t *testing.T) {
	type read struct {
		action, why, req string
		sub              hcx.Subject
		p                *auth.Principal
	}
	var reads []read
	var fail error
	fn := &fakeNode{auditRead: func(ctx context.Context, action string, sub hcx.Subject, why string) error {
		if fail != nil {
			return fail
		}
		req := auth.RequestFrom(ctx)
		reads = append(reads, read{action, req.Reason, req.ID, sub, auth.FromContext(ctx)})
		return nil
	}}
	h := &nodeHandler{n: fn, log: quiet()}
	g := testGate(nil)
	g.auditRead = h.auditRead
	served := 0
	router := mux.NewRouter()
	g.mount(router, []Rule{
		{Method: "GET", Path: "/v1/residents/{sub}/identity", Priority: PriorityOperator, Allow: []Grant{{Role: auth.RoleOperator, Scope: ScopeProvince}},
			Audited: true, Action: node.ActionResidentReadIdentity, Handler: func(w http.ResponseWriter, r *http.Request) { served++; ok(w, r) }},
		{Method: "POST", Path: "/v1/residents/{sub}/labs", Priority: PriorityBulk, Allow: []Grant{{Role: auth.RoleFeed, Scope: ScopeProvince}, {Role: auth.RoleOperator, Scope: ScopeProvince}},
			Audited: true, Handler: func(w http.ResponseWriter, r *http.Request) { served++; ok(w, r) }},
	})
	sub := strings.Repeat("a", 26)
	op := "operator oidc:idp#op-1 440000"
	path := "/v1/residents/" + sub + "/identity"

	if w := call(router, "GET", path, "10.0.0.1:1", op); w.Code != 400 || errorCode(t, w) != "reason_required" {
		t.Fatalf("an operator's read without a reason: %d %s", w.Code, w.Body)
	}
	for name, why := range map[string]string{"too-long": strings.Repeat("因", auth.MaxReason+1), "control": "a\x01b"} {
		if w := call(router, "GET", path, "10.0.0.1:1", op, auth.HeaderReason, why); w.Code != 400 || errorCode(t, w) != "invalid_reason" {
			t.Errorf("reason %s: %d %s, want 400", name, w.Code, w.Body)
		}
	}
	if served != 0 || len(reads) != 0 {
		t.Fatalf("refused reads served %d times, recorded %d", served, len(reads))
	}
	w := call(router, "GET", path, "10.0.0.1:1", op, auth.HeaderReason, "appeal 7: check the document", auth.HeaderRequestID, "req-1")
	if w.Code != 200 || served != 1 || len(reads) != 1 {
		t.Fatalf("a read with a reason: %d %s, served %d, recorded %d", w.Code, w.Body, served, len(reads))
	}
	if got := reads[0]; got.action != node.ActionResidentReadIdentity || string(got.sub) != sub || got.why != "appeal 7: check the document" ||
		got.req != "req-1" || got.p.Actor != "oidc:idp#op-1" {
		t.Errorf("recorded %+v", got)
	}
	if w.Header().Get(auth.HeaderRequestID) != "req-1" {
		t.Errorf("request id echoed as %q", w.Header().Get(auth.HeaderRequestID))
	}
	// No entry, no answer.
	fail = node.ErrBusy
	if w := call(router, "GET", path, "10.0.0.1:1", op, auth.HeaderReason, "again"); w.Code != 503 || served != 1 {
		t.Errorf("a read whose entry could not be written: %d, served %d", w.Code, served)
	}
	fail = nil
	// Writes are recorded by the node in their own transaction, not by the
	// gate; a feed needs no reason, an operator does.
	if w := call(router, "POST", "/v1/residents/"+sub+"/labs", "10.0.0.1:1", "feed cert:lab 440000"); w.Code != 200 {
		t.Errorf("a feed's audited write: %d %s", w.Code, w.Body)
	}
	if w := call(router, "POST", "/v1/residents/"+sub+"/labs", "10.0.0.1:1", op); w.Code != 400 {
		t.Errorf("an operator's audited write without a reason: %d", w.Code)
	}
	if len(reads) != 1 {
		t.Errorf("the gate recorded %d reads, want 1 (writes are the node's)", len(reads))
	}
}

// BenchmarkLimiter measures what the limits add to a request through the
// gate: the same route with and without them, from 1000 identities, in the
// same run. go test ./api -run '^$' -bench Limiter
func BenchmarkLimiter(b *testing.B) {
	rule := &Rule{Method: "GET", Path: "/x", Priority: PriorityResident, Allow: everyone,
		Handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }}
	l := NewLimits(LimitsConfig{PerRole: map[auth.Role]RoleLimit{auth.RoleResident: {Rate: rate.Inf}}})
	without, with := testGate(nil).wrap(rule), testGate(l).wrap(rule)
	reqs := make([]*http.Request, 1000)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", "/x", nil)
		reqs[i].Header.Set("X-Test-As", fmt.Sprintf("resident resident:%d", i))
	}
	run := func(h http.HandlerFunc) time.Duration {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			h(httptest.NewRecorder(), reqs[i%len(reqs)])
		}
		return time.Since(start)
	}
	b.ResetTimer()
	base := run(without)
	limited := run(with)
	b.StopTimer()
	b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "ns/req-without")
	b.ReportMetric(float64(limited.Nanoseconds())/float64(b.N), "ns/req-with")
	b.ReportMetric(float64(limited)/float64(base), "ratio")
}

// TestBulkFeedsHaveTheirOwnSmallClass: a bulk feed request may hold
// MaxFeedBody while its token is checked, so feeds have their own class
// whose bound keeps the bodies held at once to a few tens of MiB (in the
// bulk class, shared with single records, 64 of them could hold 512 MiB).
func TestBulkFeedsHaveTheirOwnSmallClass(t *testing.T) {
	h := &nodeHandler{}
	rules := h.feedsRules()
	if len(rules) == 0 {
		t.Fatal("no feed routes")
	}
	for _, r := range rules {
		if r.Priority != PriorityFeed {
			t.Errorf("%s %s is in class %s, want %s", r.Method, r.Path, r.Priority, PriorityFeed)
		}
	}
	n := DefaultLimitsConfig().InFlight[PriorityFeed]
	if n < 1 || int64(n)*MaxFeedBody > 64<<20 {
		t.Errorf("%d feeds in flight may hold %d MiB of bodies, want 1 to 64 MiB", n, int64(n)*MaxFeedBody>>20)
	}
}

// limitsMetrics is the text exposition of l registered alone in a registry,
// as a component's /metrics serves it.
func limitsMetrics(t *testing.T, l *Limits) *strings.Builder {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(l)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return &b
}
