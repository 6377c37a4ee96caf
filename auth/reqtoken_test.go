package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// machinePKI is a national root, a trust store and one certificate per
// machine role, all made by the test.
type machinePKI struct {
	now                                          time.Time
	root                                         *certs.Signer
	ts                                           *certs.TrustStore
	feedGD, checkpointGD, province, auditor, hub *certs.Signer
	stranger                                     *certs.Signer // issued by the root, never added to the trust store
}

func newMachinePKI(t testing.TB) *machinePKI {
	t.Helper()
	now := time.Now()
	root, err := certs.NewRoot("test national root", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := certs.NewTrustStore(root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(role certs.Role, prov hcx.ProvinceCode, name string, trust bool) *certs.Signer {
		s, err := certs.Issue(root, certs.IssueRequest{Role: role, Province: prov, Name: name, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if trust {
			if _, err := ts.Add(s.Cert.Raw); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	return &machinePKI{
		now: now, root: root, ts: ts,
		feedGD:       issue(certs.RoleFeed, "440000", "lab-gz-1", true),
		checkpointGD: issue(certs.RoleCheckpoint, "440000", "gate-7", true),
		province:     issue(certs.RoleProvince, "510000", "province-510000", true),
		auditor:      issue(certs.RoleAuditor, "", "auditor-1", true),
		hub:          issue(certs.RoleHub, "", "hub-1", true),
		stranger:     issue(certs.RoleFeed, "440000", "lab-unlisted", false),
	}
}

// echoServer authenticates with a, then answers the principal and the body
// the handler read; errors as {"code"} with the status of their class.
func echoServer(t testing.TB, a *RequestTokens) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			var e *hcx.Error
			if !errors.As(err, &e) {
				t.Errorf("Authenticate returned %T %v, want *hcx.Error", err, err)
				w.WriteHeader(500)
				return
			}
			if s, ok := e.Detail["retry_after"].(int); ok {
				w.Header().Set("Retry-After", itoa(s))
			}
			w.WriteHeader(statusOfClass(e.Class))
			json.NewEncoder(w).Encode(map[string]string{"code": e.Code, "message": e.Error()})
			return
		}
		if p == nil {
			p = Anonymous
		}
		body, _ := io.ReadAll(r.Body)
		json.NewEncoder(w).Encode(map[string]any{"principal": p, "body": string(body)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func statusOfClass(c hcx.ErrorCode) int {
	switch c {
	case hcx.EUnauthorized:
		return 401
	case hcx.EUnavailable:
		return 503
	case hcx.ETooLarge:
		return 413
	case hcx.EInvalid:
		return 400
	}
	return 500
}

type answer struct {
	status    int
	code      string
	message   string
	principal Principal
	body      string
	header    http.Header
}

func send(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Code, Message string
		Principal     Principal
		Body          string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer %d is not JSON: %v", resp.StatusCode, err)
	}
	return answer{resp.StatusCode, out.Code, out.Message, out.Principal, out.Body, resp.Header}
}

// signed builds a request to url signed by s at time at over signedBody,
// then sends sentBody.
func signed(t testing.TB, method, url string, s *certs.Signer, at time.Time, signedBody, sentBody []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(sentBody))
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(req, signedBody, s, at); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRequestTokenAuthenticatesAMachine(t *testing.T) {
	p := newMachinePKI(t)
	srv := echoServer(t, &RequestTokens{Trust: func() *certs.TrustStore { return p.ts }, Replay: NewReplayCache(0)})
	client := &http.Client{Transport: &SigningTransport{Signer: p.feedGD}}
	body := `{"records":[1,2,3]}`
	resp, err := client.Post(srv.URL+"/v1/feeds/labs?dry=1", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Principal Principal
		Body      string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	want := Principal{Role: RoleFeed, Actor: "cert:" + p.feedGD.KID, Name: "lab-gz-1", Province: "440000", Method: MethodRequestToken}
	if out.Principal != want {
		t.Errorf("principal = %+v, want %+v", out.Principal, want)
	}
	if out.Body != body {
		t.Errorf("the handler read %q after authentication, want the whole body %q", out.Body, body)
	}
	// Every role that may sign request tokens maps to its own role.
	for _, tc := range []struct {
		s    *certs.Signer
		role Role
		prov hcx.ProvinceCode
	}{{p.checkpointGD, RoleCheckpoint, "440000"}, {p.province, RoleProvince, "510000"}, {p.auditor, RoleAuditor, ""}, {p.hub, RoleHub, ""}} {
		a := send(t, signed(t, "GET", srv.URL+"/v1/entries", tc.s, time.Now(), nil, nil))
		if a.status != 200 || a.principal.Role != tc.role || a.principal.Province != tc.prov {
			t.Errorf("%s: status %d principal %+v, want role %s province %q", tc.s.Cert.Subject.CommonName, a.status, a.principal, tc.role, tc.prov)
		}
	}
}

func TestRequestTokenAttacksFail(t *testing.T) {
	p := newMachinePKI(t)
	var clock atomic.Int64
	clock.Store(p.now.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	a := &RequestTokens{Trust: func() *certs.TrustStore { return p.ts }, Now: now, Replay: NewReplayCache(0), MaxBody: 1024}
	srv := echoServer(t, a)
	u := srv.URL + "/v1/feeds/labs"
	body := []byte(`{"n":1}`)

	tamperSig := func(r *http.Request) *http.Request {
		h := r.Header.Get("Authorization")
		i := strings.LastIndexByte(h, '.') + 10
		c := byte('A')
		if h[i] == 'A' {
			c = 'B'
		}
		r.Header.Set("Authorization", h[:i]+string(c)+h[i+1:])
		return r
	}
	withPayload := func(payload string) *http.Request {
		r, _ := http.NewRequest("POST", u, bytes.NewReader(body))
		tok, err := p.feedGD.SignJWS(TypRequest, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", TokenScheme+" "+tok)
		return r
	}
	withTyp := func(typ string) *http.Request {
		r, _ := http.NewRequest("POST", u, bytes.NewReader(body))
		if err := SignRequest(r, body, p.feedGD, now()); err != nil {
			t.Fatal(err)
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), TokenScheme+" ")
		payload := tok[strings.IndexByte(tok, '.')+1 : strings.LastIndexByte(tok, '.')]
		raw, _ := b64u.DecodeString(payload)
		tok2, err := p.feedGD.SignJWS(typ, raw)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", TokenScheme+" "+tok2)
		return r
	}
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"reject/token-for-another-url", func() *http.Request {
			r := signed(t, "POST", srv.URL+"/v1/feeds/vaccinations", p.feedGD, now(), body, body)
			r.URL.Path = "/v1/feeds/labs"
			return r
		}, 401, "token_wrong_url"},
		{"reject/token-for-another-query", func() *http.Request {
			r := signed(t, "POST", u+"?province=440000", p.feedGD, now(), body, body)
			r.URL.RawQuery = "province=510000"
			return r
		}, 401, "token_wrong_url"},
		{"reject/token-for-another-method", func() *http.Request {
			r := signed(t, "PUT", u, p.feedGD, now(), body, body)
			r.Method = "POST"
			return r
		}, 401, "token_wrong_method"},
		{"reject/token-for-another-body", func() *http.Request {
			return signed(t, "POST", u, p.feedGD, now(), body, []byte(`{"n":2}`))
		}, 401, "token_wrong_body"},
		{"reject/token-for-no-body-sent-with-one", func() *http.Request {
			return signed(t, "POST", u, p.feedGD, now(), nil, body)
		}, 401, "token_wrong_body"},
		{"reject/iat-expired", func() *http.Request {
			return signed(t, "POST", u, p.feedGD, now().Add(-61*time.Second), body, body)
		}, 401, "token_expired"},
		{"reject/iat-in-the-future", func() *http.Request {
			return signed(t, "POST", u, p.feedGD, now().Add(61*time.Second), body, body)
		}, 401, "token_not_yet_valid"},
		{"reject/unknown-kid", func() *http.Request {
			return signed(t, "POST", u, p.stranger, now(), body, body)
		}, 401, "unknown_key"},
		{"reject/wrong-role-root", func() *http.Request {
			return signed(t, "POST", u, p.root, now(), body, body)
		}, 401, "wrong_role"},
		{"reject/bad-signature", func() *http.Request {
			return tamperSig(signed(t, "POST", u, p.feedGD, now(), body, body))
		}, 401, "token_bad_signature"},
		{"reject/another-typ", func() *http.Request { return withTyp("hcx-other+jws") }, 401, "token_malformed"},
		{"reject/batch-typ-by-a-feed", func() *http.Request { return withTyp("hcx-batch+jws") }, 401, "token_malformed"},
		{"reject/payload-extra-member", func() *http.Request {
			return withPayload(`{"htm":"POST","htu":"` + u + `","bh":"` + BodyHash(body) + `","iat":` + itoa(int(now().Unix())) + `,"jti":"AAAAAAAAAAAAAAAAAAAAAA","sub":"x"}`)
		}, 401, "token_malformed"},
		{"reject/payload-short-jti", func() *http.Request {
			return withPayload(`{"htm":"POST","htu":"` + u + `","bh":"` + BodyHash(body) + `","iat":` + itoa(int(now().Unix())) + `,"jti":"AAAA"}`)
		}, 401, "token_malformed"},
		{"reject/not-a-jws", func() *http.Request {
			r, _ := http.NewRequest("POST", u, bytes.NewReader(body))
			r.Header.Set("Authorization", "HCX-SM2 hello")
			return r
		}, 401, "token_malformed"},
		{"reject/two-authorization-headers", func() *http.Request {
			r := signed(t, "POST", u, p.feedGD, now(), body, body)
			r.Header.Add("Authorization", "Bearer x")
			return r
		}, 401, "token_malformed"},
		{"reject/body-over-the-limit", func() *http.Request {
			big := bytes.Repeat([]byte("a"), 2048)
			return signed(t, "POST", u, p.feedGD, now(), big, big)
		}, 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := send(t, tc.req())
			if got.status != tc.status || got.code != tc.code {
				t.Errorf("status %d code %q (%s), want %d %s", got.status, got.code, got.message, tc.status, tc.code)
			}
		})
	}

	t.Run("reject/replayed-token-same-jti", func(t *testing.T) {
		r := signed(t, "POST", u, p.feedGD, now(), body, body)
		auth := r.Header.Get("Authorization")
		if got := send(t, r); got.status != 200 {
			t.Fatalf("first use: %d %s", got.status, got.message)
		}
		r2, _ := http.NewRequest("POST", u, bytes.NewReader(body))
		r2.Header.Set("Authorization", auth)
		if got := send(t, r2); got.status != 401 || got.code != "token_replayed" {
			t.Errorf("replay: %d %q, want 401 token_replayed", got.status, got.code)
		}
		// Still refused just before the token expires anyway.
		clock.Add(int64(59 * time.Second))
		defer clock.Add(-int64(59 * time.Second))
		r3, _ := http.NewRequest("POST", u, bytes.NewReader(body))
		r3.Header.Set("Authorization", auth)
		if got := send(t, r3); got.status != 401 || got.code != "token_replayed" {
			t.Errorf("replay 59 s later: %d %q, want 401 token_replayed", got.status, got.code)
		}
	})

	t.Run("reject/a-failed-token-does-not-burn-its-jti-nor-pass-later", func(t *testing.T) {
		r := signed(t, "POST", u, p.feedGD, now(), body, []byte("other"))
		auth := r.Header.Get("Authorization")
		if got := send(t, r); got.code != "token_wrong_body" {
			t.Fatalf("got %d %s", got.status, got.code)
		}
		r2, _ := http.NewRequest("POST", u, bytes.NewReader(body))
		r2.Header.Set("Authorization", auth)
		if got := send(t, r2); got.status != 200 {
			t.Errorf("the same token with its own body: %d %s", got.status, got.code)
		}
	})

	t.Run("reject/revoked-certificate", func(t *testing.T) {
		if got := send(t, signed(t, "GET", u, p.checkpointGD, now(), nil, nil)); got.status != 200 {
			t.Fatalf("before revocation: %d %s", got.status, got.code)
		}
		p.ts.Revoke(p.checkpointGD.KID, now().Add(-time.Second))
		if got := send(t, signed(t, "GET", u, p.checkpointGD, now(), nil, nil)); got.status != 401 || got.code != "revoked" {
			t.Errorf("after revocation: %d %q, want 401 revoked", got.status, got.code)
		}
	})

	t.Run("reject/expired-certificate", func(t *testing.T) {
		clock.Add(int64(2 * time.Hour))
		defer clock.Add(-int64(2 * time.Hour))
		if got := send(t, signed(t, "GET", u, p.auditor, now(), nil, nil)); got.status != 401 || got.code != "certificate_expired" {
			t.Errorf("%d %q, want 401 certificate_expired", got.status, got.code)
		}
	})

	t.Run("other-credentials-are-not-ours", func(t *testing.T) {
		for _, h := range []string{"", "Bearer abc", "HCX-SM2x abc"} {
			r := httptest.NewRequest("GET", "/", nil)
			if h != "" {
				r.Header.Set("Authorization", h)
			}
			if pr, err := a.Authenticate(r); pr != nil || err != nil {
				t.Errorf("Authorization %q: %v, %v; want nil, nil", h, pr, err)
			}
		}
	})
}

func TestRequestTokenBehindAProxyUsesThePublicURL(t *testing.T) {
	p := newMachinePKI(t)
	a := &RequestTokens{Trust: func() *certs.TrustStore { return p.ts }, Replay: NewReplayCache(0), PublicURL: "https://hub.example.org/"}
	srv := echoServer(t, a)
	r := signed(t, "GET", "https://hub.example.org/v1/entries?from=1", p.province, time.Now(), nil, nil)
	r.URL.Scheme, r.URL.Host, r.Host = "http", strings.TrimPrefix(srv.URL, "http://"), ""
	if got := send(t, r); got.status != 200 {
		t.Errorf("%d %s: %s", got.status, got.code, got.message)
	}
	if got := send(t, signed(t, "GET", srv.URL+"/v1/entries?from=1", p.province, time.Now(), nil, nil)); got.code != "token_wrong_url" {
		t.Errorf("a token for the internal address: %d %s, want token_wrong_url", got.status, got.code)
	}
}

// A hub member in compose is called by its name inside the network and at
// a published port from the host: a token for either base is good, one for
// any other is not.
func TestRequestTokenMayNameAnyOfSeveralPublicURLs(t *testing.T) {
	p := newMachinePKI(t)
	a := &RequestTokens{Trust: func() *certs.TrustStore { return p.ts }, Replay: NewReplayCache(0), PublicURL: "https://hub-1:7000, https://localhost:7001/"}
	srv := echoServer(t, a)
	for _, base := range []string{"https://hub-1:7000", "https://localhost:7001"} {
		r := signed(t, "GET", base+"/v1/entries?from=1", p.province, time.Now(), nil, nil)
		r.URL.Scheme, r.URL.Host, r.Host = "http", strings.TrimPrefix(srv.URL, "http://"), ""
		if got := send(t, r); got.status != 200 {
			t.Errorf("a token for %s: %d %s: %s", base, got.status, got.code, got.message)
		}
	}
	r := signed(t, "GET", "https://localhost:7002/v1/entries?from=1", p.province, time.Now(), nil, nil)
	r.URL.Scheme, r.URL.Host, r.Host = "http", strings.TrimPrefix(srv.URL, "http://"), ""
	if got := send(t, r); got.code != "token_wrong_url" || !strings.Contains(got.message, "https://hub-1:7000/v1/entries?from=1 or https://localhost:7001/v1/entries?from=1") {
		t.Errorf("a token for another base: %d %s %q, want token_wrong_url naming both", got.status, got.code, got.message)
	}
}

func TestReplayCacheIsBoundedAndForgetsOnlyExpiredTokens(t *testing.T) {
	c := NewReplayCache(2)
	t0 := time.Unix(1_800_000_000, 0)
	if err := c.Use("k", "a", t0.Add(60*time.Second), t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Use("k", "b", t0.Add(90*time.Second), t0); err != nil {
		t.Fatal(err)
	}
	err := c.Use("k", "c", t0.Add(60*time.Second), t0.Add(10*time.Second))
	var e *hcx.Error
	if !errors.As(err, &e) || e.Code != "replay_cache_full" || e.Class != hcx.EUnavailable || e.Detail["retry_after"] != 50 {
		t.Fatalf("full cache: %v (%+v), want 503 replay_cache_full retry_after 50", err, e)
	}
	if err := c.Use("k", "a", t0.Add(60*time.Second), t0.Add(59*time.Second)); !errors.As(err, &e) || e.Code != "token_replayed" {
		t.Errorf("a live entry was forgotten: %v", err)
	}
	// Once "a" expires there is room again, and "b" is still remembered.
	if err := c.Use("k", "c", t0.Add(120*time.Second), t0.Add(60*time.Second)); err != nil {
		t.Errorf("after expiry: %v", err)
	}
	if err := c.Use("k", "b", t0.Add(90*time.Second), t0.Add(61*time.Second)); !errors.As(err, &e) || e.Code != "token_replayed" {
		t.Errorf("b: %v, want token_replayed", err)
	}
	if err := c.Use("other-kid", "b", t0.Add(120*time.Second), t0.Add(100*time.Second)); err != nil {
		t.Errorf("the same jti under another kid is another token: %v", err)
	}
	if c.Len() != 2 {
		t.Errorf("Len = %d, want 2", c.Len())
	}
}

func TestSigningTransportSignsEveryRequestAfresh(t *testing.T) {
	p := newMachinePKI(t)
	srv := echoServer(t, &RequestTokens{Trust: func() *certs.TrustStore { return p.ts }, Replay: NewReplayCache(0)})
	tr := &SigningTransport{Signer: p.checkpointGD, MaxBody: 64}
	client := &http.Client{Transport: tr}
	for i := 0; i < 3; i++ {
		resp, err := client.Get(srv.URL + "/v1/codes/verify")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if _, err := client.Post(srv.URL+"/x", "text/plain", bytes.NewReader(make([]byte, 65))); err == nil || !strings.Contains(err.Error(), "over 64 bytes") {
		t.Errorf("a body over the transport's limit: %v", err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/x", strings.NewReader("abc"))
	before := req.Header.Get("Authorization")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.Header.Get("Authorization") != before {
		t.Error("RoundTrip changed the caller's request")
	}
}
