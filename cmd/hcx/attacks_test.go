package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// The attacks of issue 9, end to end against a real federation with real
// credentials. Each asserts the exact status and error code, and that
// nothing changed. Covered elsewhere: request-token replay, another URL or
// body, expiry (auth/reqtoken_test.go, api/reqtoken_scope_test.go); OIDC
// tokens from an unknown issuer, for another audience, expired or badly
// signed (auth/oidc_test.go, api/node_oidc_test.go); a revoked device
// (cmd/hcx/device_test.go); anonymous reads and writes on every node route
// (TestAuthorizationMatrix, and TestAttackAnonymousReachesOnlyPublicRoutes
// below).

// publicRoutes are the only routes an anonymous caller reaches (DESIGN.md
// §8b: health checks, the hub's signed checkpoint, the public pages, the
// risk areas), plus the doors into a credential: logins, the enrolment code, and a device
// filing its certificate request and polling it by its unguessable id.
var publicRoutes = map[string]bool{
	"node GET /healthz": true, "node GET /readyz": true,
	"node GET /v1/auth/oidc/login": true, "node GET /v1/auth/oidc/callback": true,
	"node POST /v1/auth/passkeys/login/begin": true, "node POST /v1/auth/passkeys/login/finish": true,
	"node POST /v1/auth/enrol":         true,
	"node POST /v1/auth/checkpoint":    true, // a checkpoint code (issue 16)
	"node POST /v1/devices/enrolments": true, "node GET /v1/devices/enrolments/{id}": true,
	// Risk areas are what provinces publish for everyone (issue 10).
	"node GET /v1/risk-areas": true,
	// What a server is and what it serves (issue 15): the index and the
	// OpenAPI document, the same for every caller.
	"node GET /": true, "node GET /openapi.yaml": true, "hub GET /": true, "hub GET /openapi.yaml": true,
	"hub GET /healthz": true, "hub GET /readyz": true, "hub GET /metrics": true, "hub GET /v1/checkpoint": true,
	// Witness cosignatures are for every verifier, like the checkpoint (issue 13).
	"hub GET /v1/checkpoint/witnessed": true,
}

// TestAttackAnonymousReachesOnlyPublicRoutes: anonymous writes and reads on
// every route. The matrix drives each over HTTP; this holds its anonymous
// column to the short list of public routes, so that granting a route to
// anonymous takes changing this list too.
func TestAttackAnonymousReachesOnlyPublicRoutes(t *testing.T) {
	for _, w := range authzWant {
		anon := wantCells(t, w.cells)[0]
		key := w.server + " " + w.route
		switch {
		case publicRoutes[key] && anon != "ok":
			t.Errorf("%s is public but the matrix refuses anonymous callers (%s)", key, anon)
		case !publicRoutes[key] && anon != "401":
			t.Errorf("%s: anonymous callers get %s, want 401", key, anon)
		}
	}
}

// attackWorld is one federation with a few residents for the attacks.
type attackWorld struct {
	f            *federation
	gd, sc       string // node URLs
	a, b, g, s   hcx.Subject
	c            hcx.Subject // G's dependant, registered by G (never logs in)
	asA, asB     caller
	asG, asS     caller
	opGD, opSC   caller
	auditor      caller
	feedGD, feed caller // feed is 510000's
}

const attackGD, attackSC hcx.ProvinceCode = "440000", "510000"

func newAttackWorld(t *testing.T) *attackWorld {
	f := startTestFederation(t, 1)
	w := &attackWorld{f: f, gd: f.NodeURLs[attackGD], sc: f.NodeURLs[attackSC],
		opGD: f.asOperator(t, attackGD), opSC: f.asOperator(t, attackSC), auditor: f.asPerson(t, "auditor"),
		feedGD: f.asFeed(attackGD), feed: f.asFeed(attackSC)}
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	w.a, w.asA = f.asResident(t, attackGD, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619900404404"), "name": "丁四"})
	w.b, w.asB = f.asResident(t, attackGD, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619800505505"), "name": "戊五"})
	w.g, w.asG = f.asResident(t, attackGD, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619700606606"), "name": "己六"})
	w.s, w.asS = f.asResident(t, attackSC, map[string]string{"doc_type": "CN-ID", "doc_number": id("51010719900707707"), "name": "庚七"})
	w.c = f.dependantOf(t, attackGD, w.g, w.asG, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010620160808808"), "name": "己七"})
	for _, url := range []string{w.gd, w.sc} {
		waitKnown(t, f, w.feedGD, url+"/readyz")
		waitKnown(t, f, w.feed, url+"/readyz")
	}
	return w
}

// state is what an attack must leave as it was: a resident's colour and
// reasons, and the node's audit trail head.
func (w *attackWorld) state(t *testing.T, node string, sub hcx.Subject, op caller) string {
	t.Helper()
	res := send(t, w.f.client(), op, "GET", node+"/v1/residents/"+string(sub), "", nil)
	trail := send(t, w.f.client(), w.auditor, "GET", node+"/v1/audit?limit=1", "", nil)
	if res.status != http.StatusOK || trail.status != http.StatusOK {
		t.Fatalf("read state: resident %d %s, trail %d %s", res.status, res.body, trail.status, trail.body)
	}
	var r struct {
		Status json.RawMessage `json:"status"`
	}
	var tr struct {
		Head json.RawMessage `json:"head"`
	}
	_ = json.Unmarshal(res.body, &r)
	_ = json.Unmarshal(trail.body, &tr)
	return string(r.Status) + " " + string(tr.Head)
}

// refused asserts an answer's status and error code.
func refused(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.code != code {
		t.Errorf("%s: got %d %s (%s), want %d %s", what, a.status, a.code, a.body, status, code)
	}
}

func TestAttacks(t *testing.T) {
	w := newAttackWorld(t)
	hc := w.f.client()
	res := func(node string, sub hcx.Subject, rest string) string {
		return node + "/v1/residents/" + string(sub) + rest
	}

	t.Run("resident-reads-or-codes-another", func(t *testing.T) {
		before := w.state(t, w.gd, w.a, w.opGD)
		refused(t, "B reads A", send(t, hc, w.asB, "GET", res(w.gd, w.a, ""), "", nil), http.StatusForbidden, "not_yours")
		refused(t, "B fetches A's code", send(t, hc, w.asB, "GET", res(w.gd, w.a, "/code"), "", nil), http.StatusForbidden, "not_yours")
		refused(t, "B fetches A's offline code", send(t, hc, w.asB, "GET", res(w.gd, w.a, "/code?offline=true"), "", nil), http.StatusForbidden, "not_yours")
		refused(t, "B posts a lab for A", send(t, hc, w.asB, "POST", res(w.gd, w.a, "/labs"), `{"result":"positive"}`, nil), http.StatusForbidden, "forbidden_role")
		if after := w.state(t, w.gd, w.a, w.opGD); after != before {
			t.Errorf("state changed: %s -> %s", before, after)
		}
	})

	t.Run("proxy-for-someone-not-delegated", func(t *testing.T) {
		// The guardian reaches C (delegated) but not B.
		if a := send(t, hc, w.asG, "GET", res(w.gd, w.c, "/code"), "", nil); a.status != http.StatusOK {
			t.Fatalf("the guardian fetches the dependant's code: %d %s", a.status, a.body)
		}
		before := w.state(t, w.gd, w.b, w.opGD)
		refused(t, "G fetches B's code", send(t, hc, w.asG, "GET", res(w.gd, w.b, "/code"), "", nil), http.StatusForbidden, "not_yours")
		refused(t, "G reads B", send(t, hc, w.asG, "GET", res(w.gd, w.b, ""), "", nil), http.StatusForbidden, "not_yours")
		if after := w.state(t, w.gd, w.b, w.opGD); after != before {
			t.Errorf("state changed: %s -> %s", before, after)
		}
		// A residents' own guardian record is an operator's to write.
		refused(t, "G makes themselves B's guardian", send(t, hc, w.asG, "POST", res(w.gd, w.b, "/guardians"), `{"guardian":"`+string(w.g)+`"}`, nil), http.StatusForbidden, "forbidden_role")
		// Once the operator ends the delegation, the guardian is out.
		if a := send(t, hc, w.opGD, "DELETE", res(w.gd, w.c, "/guardians/"+string(w.g)), "", nil); a.status >= 300 {
			t.Fatalf("end the delegation: %d %s", a.status, a.body)
		}
		refused(t, "G fetches C's code after the delegation ended", send(t, hc, w.asG, "GET", res(w.gd, w.c, "/code"), "", nil), http.StatusForbidden, "not_yours")
	})

	t.Run("operator-of-guangdong-acts-on-sichuan", func(t *testing.T) {
		before := w.state(t, w.sc, w.s, w.opSC)
		for _, c := range []struct{ method, url, body string }{
			{"POST", res(w.sc, w.s, "/labs"), `{"result":"positive"}`},
			{"POST", res(w.sc, w.s, "/contacts"), `{}`},
			{"GET", res(w.sc, w.s, ""), ""},
			{"GET", res(w.sc, w.s, "/identity"), ""},
			{"POST", w.sc + "/v1/residents", `{"doc_type":"CN-ID","doc_number":"51010719850612004X","name":"王五"}`},
			{"POST", w.sc + "/v1/enrolments", `{"doc_type":"CN-ID","doc_number":"51010719850612004X","name":"王五"}`},
			{"POST", res(w.sc, w.s, "/guardians"), `{"guardian":"` + string(w.a) + `"}`},
			{"GET", w.sc + "/v1/audit", ""},
		} {
			refused(t, "GD operator: "+c.method+" "+c.url, send(t, hc, w.opGD, c.method, c.url, c.body, nil), http.StatusForbidden, "other_province")
		}
		if after := w.state(t, w.sc, w.s, w.opSC); after != before {
			t.Errorf("state changed: %s -> %s", before, after)
		}
	})

	t.Run("feed-of-one-province-posts-for-another", func(t *testing.T) {
		before := w.state(t, w.gd, w.a, w.opGD)
		refused(t, "Sichuan's feed posts a positive lab at Guangdong", send(t, hc, w.feed, "POST", res(w.gd, w.a, "/labs"), `{"result":"positive"}`, nil), http.StatusForbidden, "other_province")
		refused(t, "Sichuan's feed posts a contact at Guangdong", send(t, hc, w.feed, "POST", res(w.gd, w.a, "/contacts"), `{}`, nil), http.StatusForbidden, "other_province")
		if after := w.state(t, w.gd, w.a, w.opGD); after != before {
			t.Errorf("state changed: %s -> %s", before, after)
		}
	})

	t.Run("contact-flag-in-another-provinces-name", func(t *testing.T) {
		before := w.state(t, w.gd, w.a, w.opGD)
		a := send(t, hc, w.feedGD, "POST", res(w.gd, w.a, "/contacts"), `{"issuer":"510000"}`, nil)
		refused(t, "Guangdong's feed flags in Sichuan's name", a, http.StatusForbidden, "other_issuer")
		if a.field != "issuer" {
			t.Errorf("the refusal names field %q, want issuer", a.field)
		}
		refused(t, "Guangdong's operator flags in Sichuan's name", send(t, hc, w.opGD, "POST", res(w.gd, w.a, "/contacts"), `{"issuer":"510000"}`, nil), http.StatusForbidden, "other_issuer")
		if after := w.state(t, w.gd, w.a, w.opGD); after != before {
			t.Errorf("state changed: %s -> %s", before, after)
		}
	})

	t.Run("forged-session-cookie", func(t *testing.T) {
		real := sessionCookie(t, w.asA, w.gd)
		tampered := []byte(real)
		tampered[len(tampered)/2] ^= 1
		for name, v := range map[string]string{
			"made-up":  strings.Repeat("A", 43),
			"tampered": string(tampered),
			"too-long": strings.Repeat("A", 200),
		} {
			forged := caller{name: "forged " + name, sign: func(_ testing.TB, req *http.Request, _ []byte) {
				req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: v})
			}}
			for _, url := range []string{w.gd + "/v1/me", res(w.gd, w.a, "/code")} {
				a := send(t, hc, forged, "GET", url, "", nil)
				refused(t, name+" cookie on "+url, a, http.StatusUnauthorized, auth.CodeSessionInvalid)
				if !strings.Contains(a.header.Get("Set-Cookie"), auth.SessionCookie+"=;") {
					t.Errorf("%s cookie: the 401 does not clear the cookie (Set-Cookie %q)", name, a.header.Get("Set-Cookie"))
				}
			}
		}
		// The real session is untouched.
		if a := send(t, hc, w.asA, "GET", w.gd+"/v1/me", "", nil); a.status != http.StatusOK {
			t.Errorf("the real session after the forgeries: %d %s", a.status, a.body)
		}
	})

	t.Run("csrf-from-another-origin", func(t *testing.T) {
		for name, hdr := range map[string]http.Header{
			"origin":         {"Origin": {"https://evil.example"}},
			"sec-fetch-site": {"Sec-Fetch-Site": {"cross-site"}},
		} {
			refused(t, name+": logout", send(t, hc, w.asA, "POST", w.gd+"/v1/auth/logout", "", hdr), http.StatusForbidden, "cross_origin")
			refused(t, name+": passkey registration", send(t, hc, w.asA, "POST", w.gd+"/v1/auth/passkeys/register/begin", "{}", hdr), http.StatusForbidden, "cross_origin")
			refused(t, name+": lab as the operator's browser", send(t, hc, w.opGD, "POST", res(w.gd, w.a, "/labs"), `{"result":"positive"}`, hdr), http.StatusForbidden, "cross_origin")
		}
		// The session was not ended, and A is still green.
		if a := send(t, hc, w.asA, "GET", w.gd+"/v1/me", "", nil); a.status != http.StatusOK {
			t.Errorf("the session after the cross-origin logout: %d %s", a.status, a.body)
		}
		var r struct {
			Status struct{ Colour hcx.Colour } `json:"status"`
		}
		if a := send(t, hc, w.asA, "GET", res(w.gd, w.a, ""), "", nil); json.Unmarshal(a.body, &r) != nil || r.Status.Colour != hcx.Green {
			t.Errorf("A after the cross-origin lab: %d %s, want green", a.status, a.body)
		}
	})

	t.Run("enrolment-code-used-twice", func(t *testing.T) {
		code := func(doc string) string {
			var e struct{ Code string }
			a := send(t, hc, w.opGD, "POST", w.gd+"/v1/enrolments", `{"doc_type":"CN-ID","doc_number":"`+doc+`","name":"辛八"}`, nil)
			if a.status != http.StatusCreated || json.Unmarshal(a.body, &e) != nil {
				t.Fatalf("enrolment code: %d %s", a.status, a.body)
			}
			return e.Code
		}
		c := code(hcxID("44010619600808808"))
		if a := send(t, hc, anonymous, "POST", w.gd+"/v1/auth/enrol", `{"code":"`+c+`"}`, nil); a.status != http.StatusOK {
			t.Fatalf("first use: %d %s", a.status, a.body)
		}
		a := send(t, hc, anonymous, "POST", w.gd+"/v1/auth/enrol", `{"code":"`+c+`"}`, nil)
		refused(t, "second use", a, http.StatusConflict, "enrolment_code_used")
		if sc := a.header.Get("Set-Cookie"); strings.Contains(sc, auth.SessionCookie+"=") && !strings.Contains(sc, auth.SessionCookie+"=;") {
			t.Errorf("the second use got a session: %q", sc)
		}

		// Two (here eight) at once: exactly one wins.
		c = code(hcxID("44010619500909909"))
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[int]int{}
			codes    = map[string]int{}
			sessions int
		)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := hc.Post(w.gd+"/v1/auth/enrol", "application/json", bytes.NewReader([]byte(`{"code":"`+c+`"}`)))
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var e apiError
				_ = json.NewDecoder(resp.Body).Decode(&e)
				mu.Lock()
				defer mu.Unlock()
				statuses[resp.StatusCode]++
				codes[e.Error.Code]++
				for _, ck := range resp.Cookies() {
					if ck.Name == auth.SessionCookie && ck.Value != "" {
						sessions++
					}
				}
			}()
		}
		wg.Wait()
		if statuses[http.StatusOK] != 1 || statuses[http.StatusConflict] != 7 || codes["enrolment_code_used"] != 7 || sessions != 1 {
			t.Errorf("eight concurrent uses of one code: statuses %v, codes %v, %d sessions; want one 200 with one session and seven 409 enrolment_code_used", statuses, codes, sessions)
		}
	})

	t.Run("existing-document-409-carries-no-subject", func(t *testing.T) {
		doc := `{"doc_type":"CN-ID","doc_number":"` + hcxID("44010619401010010") + `","name":"壬九"}`
		var first struct{ Subject hcx.Subject }
		a := send(t, hc, w.opGD, "POST", w.gd+"/v1/residents", doc, nil)
		if a.status != http.StatusCreated || json.Unmarshal(a.body, &first) != nil || first.Subject == "" {
			t.Fatalf("first registration: %d %s", a.status, a.body)
		}
		before := w.state(t, w.gd, first.Subject, w.opGD)
		again := send(t, hc, w.opGD, "POST", w.gd+"/v1/residents", doc, nil)
		refused(t, "second registration", again, http.StatusConflict, "already_registered")
		if bytes.Contains(again.body, []byte(first.Subject)) {
			t.Errorf("the 409 reveals the subject: %s", again.body)
		}
		// Without credentials the registration does not get that far.
		refused(t, "anonymous registration", send(t, hc, anonymous, "POST", w.gd+"/v1/residents", doc, nil), http.StatusUnauthorized, "unauthenticated")
		if after := w.state(t, w.gd, first.Subject, w.opGD); after != before {
			t.Errorf("state changed: %s -> %s", before, after)
		}
	})
}

func hcxID(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }

// sessionCookie is the session cookie value who sends to url.
func sessionCookie(t *testing.T, who caller, url string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	who.sign(t, req, nil)
	c, err := req.Cookie(auth.SessionCookie)
	if err != nil {
		t.Fatalf("%s has no session cookie: %v", who.name, err)
	}
	return c.Value
}
