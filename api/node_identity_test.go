package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// identityFixture is a real Guangdong node on badger behind its API. The
// callers of other packages' kinds (operators' OIDC, residents' passkeys)
// name themselves with api.AsPrincipal's X-Test-As; a login ends in the
// fixture's StartSession, a cookie naming a principal kept in memory (the
// sessions package has the real one). The handler's log is kept.
type identityFixture struct {
	n     *node.Node
	srv   *httptest.Server // the node's API
	probe *httptest.Server // api.ProbeScopes over the same node

	logMu  sync.Mutex
	logBuf bytes.Buffer

	mu       sync.Mutex
	sessions map[string]*auth.Principal
	last     string // the last session started
}

func (f *identityFixture) Write(p []byte) (int, error) {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logBuf.Write(p)
}

func (f *identityFixture) logs() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logBuf.String()
}

// authenticate reads the fixture's session cookie, else X-Test-As.
func (f *identityFixture) authenticate(r *http.Request) (*auth.Principal, error) {
	if c, err := r.Cookie("test_session"); err == nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if p := f.sessions[c.Value]; p != nil {
			return p, nil
		}
		return nil, hcx.Errorf(hcx.EUnauthorized, "session_invalid", "no such session")
	}
	return api.AsPrincipal.Authenticate(r)
}

func (f *identityFixture) startSession(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := hex.EncodeToString(b[:])
	f.mu.Lock()
	f.sessions[id] = p
	f.last = id
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "test_session", Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return nil
}

func newIdentityFixture(t *testing.T) *identityFixture {
	t.Helper()
	f := &identityFixture{n: newTestNode(t, time.Now), sessions: map[string]*auth.Principal{}}
	log := slog.New(slog.NewTextHandler(f, nil))
	authn := auth.AuthenticatorFunc(f.authenticate)
	srv := httptest.NewServer(api.NewNodeHandler(f.n, log, api.NodeOptions{Authn: authn, StartSession: f.startSession, Limits: api.NewLimits(api.DefaultLimitsConfig())}))
	t.Cleanup(srv.Close)
	probe := httptest.NewServer(api.ProbeScopes(f.n, log, authn))
	t.Cleanup(probe.Close)
	f.srv, f.probe = srv, probe
	return f
}

// residentAs is the X-Test-As of sub's own resident login.
func residentAs(sub hcx.Subject) string {
	return "resident resident:" + string(sub) + " - " + string(sub)
}

const unboundResident = "resident oidc:https://idp.gd#new -"

// callAs sends one request to srv as who (X-Test-As, "" anonymous) with an
// optional JSON body and headers given as name, value pairs.
func callAs(t *testing.T, srv *httptest.Server, who, method, path string, body any, hdr ...string) answer {
	t.Helper()
	var b string
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		b = string(j)
	}
	status, got := do(t, srv, method, path, who, b, hdr...)
	return answer{status: status, body: got}
}

func (f *identityFixture) do(t *testing.T, who, method, path string, body any, hdr ...string) answer {
	t.Helper()
	return callAs(t, f.srv, who, method, path, body, hdr...)
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (a answer) err() apiError {
	var e struct {
		Error apiError `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error
}

// want fails unless the answer is status with error code (and, if given,
// naming field).
func (a answer) want(t *testing.T, what string, status int, code string, field ...string) {
	t.Helper()
	e := a.err()
	if a.status != status || e.Code != code || (len(field) > 0 && e.Field != field[0]) {
		t.Fatalf("%s: %d %s, want %d %s %v", what, a.status, a.body, status, code, field)
	}
}

const (
	docG = "440106199003070028"
	docD = "440106201503070013"
	docS = "440106198001010014"
)

// gdOperatorCtx is gdOperator as the node sees them, for set-up writes.
var gdOperatorCtx = auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleOperator, Actor: "oidc:https://idp.gd#op-7", Province: "440000", Method: auth.MethodBearer})

func (f *identityFixture) register(t *testing.T, doc, name string) hcx.Subject {
	t.Helper()
	doc = doc[:17] + string(hcx.CNIDCheckDigit(doc[:17]))
	r, err := f.n.Register(gdOperatorCtx, node.RegisterRequest{DocType: hcx.DocCNID, DocNumber: doc, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return r.Subject
}

// trailEntry finds the one entry of action about sub in the node's trail,
// checks its actor, and that no entry carries any of secrets.
func trailEntry(t *testing.T, n *node.Node, action string, sub hcx.Subject, actor string, secrets ...string) node.AuditRecord {
	t.Helper()
	page, err := n.AuditTrail(context.Background(), 0, node.MaxAuditPage)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(page.Entries)
	for _, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the trail carries %q", s)
		}
	}
	var found []node.AuditRecord
	for _, e := range page.Entries {
		if e.Action == action && e.Subject == sub {
			found = append(found, e)
		}
	}
	if len(found) != 1 || found[0].Actor != actor {
		t.Fatalf("%s entries about %s = %+v, want one by %s", action, sub, found, actor)
	}
	return found[0]
}

// Attacks: anyone registering anyone's document (now an operator's
// in-person enrolment), an enrolment code used twice.
func TestEnrolmentOverHTTP(t *testing.T) {
	f := newIdentityFixture(t)
	doc := docS[:17] + string(hcx.CNIDCheckDigit(docS[:17]))
	body := map[string]any{"doc_type": "CN-ID", "doc_number": doc, "name": "张三丰"}
	why := []string{auth.HeaderReason, "ID card seen at the counter"}
	wrongDigit := "0"
	if doc[17] == '0' {
		wrongDigit = "1"
	}
	before := f.n.StoreVersion()
	f.do(t, "", "POST", "/v1/enrolments", body, why...).want(t, "anonymous", 401, "unauthenticated")
	f.do(t, residentAs("x"), "POST", "/v1/enrolments", body, why...).want(t, "resident", 403, "forbidden_role")
	f.do(t, scOperator, "POST", "/v1/enrolments", body, why...).want(t, "Sichuan's operator", 403, "other_province")
	f.do(t, gdOperator, "POST", "/v1/enrolments", body).want(t, "no reason", 400, "reason_required", auth.HeaderReason)
	f.do(t, gdOperator, "POST", "/v1/enrolments", body, auth.HeaderReason, strings.Repeat("因", auth.MaxReason+1)).want(t, "long reason", 400, "invalid_reason", auth.HeaderReason)
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"reject/no-document", map[string]any{"doc_type": "CN-ID", "name": "张三丰"}, "doc_number"},
		{"reject/bad-check-digit", map[string]any{"doc_type": "CN-ID", "doc_number": doc[:17] + wrongDigit, "name": "张三丰"}, "doc_number"},
		// integ takes the reason from X-HCX-Reason only: a body member is
		// unknown.
		{"reject/reason-in-body", map[string]any{"doc_type": "CN-ID", "doc_number": doc, "name": "张三丰", "reason": "seen"}, "reason"},
		{"reject/unknown-member", map[string]any{"doc_type": "CN-ID", "doc_number": doc, "name": "张三丰", "subject": "x"}, "subject"},
	} {
		a := f.do(t, gdOperator, "POST", "/v1/enrolments", tc.body, why...)
		if a.status != 400 || a.err().Field != tc.field {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.name, a.status, a.body, tc.field)
		}
	}
	// None of that registered anyone or wrote anything.
	if f.n.StoreVersion() != before {
		t.Fatal("refused enrolments wrote something")
	}

	a := f.do(t, gdOperator, "POST", "/v1/enrolments", body, why...)
	var e node.ResidentEnrolment
	a.decode(t, &e)
	if a.status != 201 || e.Subject == "" || !e.Registered || len(e.Code) != 23 {
		t.Fatalf("enrol: %d %s", a.status, a.body)
	}
	issued := trailEntry(t, f.n, node.ActionEnrolmentIssue, e.Subject, "oidc:https://idp.gd#op-7", doc, "张三丰", strings.ReplaceAll(e.Code, "-", ""))
	if issued.Why != "ID card seen at the counter" || issued.Role != auth.RoleOperator {
		t.Errorf("enrolment.issue entry = %+v", issued)
	}

	f.do(t, "", "POST", "/v1/auth/enrol", map[string]string{"code": "nope"}).want(t, "malformed", 400, "invalid_code", "code")
	f.do(t, "", "POST", "/v1/auth/enrol", map[string]string{"code": "00000-00000-00000-00000"}).want(t, "unknown", 401, "enrolment_code_unknown")
	f.do(t, "", "POST", "/v1/auth/enrol", map[string]any{"code": e.Code, "subject": e.Subject}).want(t, "unknown member", 400, "bad_json", "subject")
	// A node without sessions refuses the login and leaves the code unused.
	noSessions := httptest.NewServer(api.NewNodeHandler(f.n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: api.AsPrincipal}))
	defer noSessions.Close()
	callAs(t, noSessions, "", "POST", "/v1/auth/enrol", map[string]string{"code": e.Code}).want(t, "no sessions", 503, "sessions_unavailable")

	a = f.do(t, "", "POST", "/v1/auth/enrol", map[string]string{"code": e.Code})
	var got struct {
		Subject hcx.Subject `json:"subject"`
	}
	a.decode(t, &got)
	f.mu.Lock()
	session, p := f.last, f.sessions[f.last]
	f.mu.Unlock()
	if a.status != 200 || got.Subject != e.Subject || p == nil || p.Role != auth.RoleResident || p.Subject != e.Subject {
		t.Fatalf("use: %d %s (session %+v)", a.status, a.body, p)
	}
	used := trailEntry(t, f.n, node.ActionEnrolmentUse, e.Subject, "resident:"+string(e.Subject))
	if used.Role != auth.RoleResident {
		t.Errorf("enrolment.use entry = %+v", used)
	}
	f.do(t, "", "POST", "/v1/auth/enrol", map[string]string{"code": e.Code}).want(t, "second use", 409, "enrolment_code_used")

	// The session the code started is the resident's own.
	a = f.do(t, "", "GET", "/v1/me", nil, "Cookie", "test_session="+session)
	var me struct {
		Subject    hcx.Subject `json:"subject"`
		Name       string      `json:"name"`
		Colour     hcx.Colour  `json:"colour"`
		Dependants []any       `json:"dependants"`
	}
	a.decode(t, &me)
	if a.status != 200 || me.Subject != e.Subject || me.Name != "张*" || me.Colour != hcx.Green || me.Dependants == nil || len(me.Dependants) != 0 {
		t.Fatalf("me: %d %s", a.status, a.body)
	}
	if bytes.Contains(a.body, []byte(doc)) || bytes.Contains(a.body, []byte("张三丰")) {
		t.Errorf("me %s shows the full identity", a.body)
	}
	f.do(t, unboundResident, "GET", "/v1/me", nil).want(t, "unbound resident", 403, "identity_unbound")
	f.do(t, "", "GET", "/v1/me", nil).want(t, "anonymous", 401, "unauthenticated")
	f.do(t, gdOperator, "GET", "/v1/me", nil).want(t, "operator", 403, "forbidden_role")
}

// Attack: the 409 answer handed anyone the subject of any document number.
// In integ only operators register (residents prove their document through
// OIDC instead, which tells them their subject), and the 409 is the same
// whatever the name.
func TestRegisterConflictNamesNoSubjectOverHTTP(t *testing.T) {
	f := newIdentityFixture(t)
	body := map[string]any{"doc_type": "CN-ID", "doc_number": docG, "name": "张三"}
	why := []string{auth.HeaderReason, "walk-in registration"}
	a := f.do(t, gdOperator, "POST", "/v1/residents", body, why...)
	var r node.Resident
	a.decode(t, &r)
	if a.status != 201 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	var first apiError
	for i, name := range []string{"张三", "李四"} {
		body["name"] = name
		a = f.do(t, gdOperator, "POST", "/v1/residents", body, why...)
		a.want(t, "again as "+name, 409, "already_registered")
		if bytes.Contains(a.body, []byte(r.Subject)) || bytes.Contains(a.body, []byte(`"subject"`)) {
			t.Errorf("409 %s names the subject", a.body)
		}
		if i == 0 {
			first = a.err()
		} else if a.err() != first {
			t.Errorf("the answers differ (%+v, %+v): they tell whether the name matched", first, a.err())
		}
	}
	for who, code := range map[string]string{"": "unauthenticated", residentAs(r.Subject): "forbidden_role", scOperator: "other_province"} {
		a := f.do(t, who, "POST", "/v1/residents", body, why...)
		if a.status/100 != 4 || a.err().Code != code || bytes.Contains(a.body, []byte(r.Subject)) {
			t.Errorf("register as %q: %d %s, want %s", who, a.status, a.body, code)
		}
	}
}

// subjectOfCode reads the subject a health code is signed for (its
// signature is the node's own; the checkpoint tests verify it).
func subjectOfCode(t *testing.T, qr string) hcx.Subject {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(qr, exchange.CodePrefix), ".")
	if len(parts) != 3 {
		t.Fatalf("code %q is not a compact JWS", qr)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c exchange.CodeClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Sub
}

// Attack: a proxy acting for someone not delegated to them.
func TestGuardianActsOnlyForTheirDependants(t *testing.T) {
	f := newIdentityFixture(t)
	g, d, s := f.register(t, docG, "张三"), f.register(t, docD, "张小宝"), f.register(t, docS, "李四")
	guardian, dependant, stranger := residentAs(g), residentAs(d), residentAs(s)
	why := []string{auth.HeaderReason, "birth certificate seen"}
	path := "/v1/residents/" + string(d) + "/guardians"
	code := "/v1/residents/" + string(d) + "/code"

	before := f.n.StoreVersion()
	f.do(t, "", "POST", path, map[string]any{"guardian": g}, why...).want(t, "anonymous", 401, "unauthenticated")
	f.do(t, guardian, "POST", path, map[string]any{"guardian": g}, why...).want(t, "resident names themselves", 403, "forbidden_role")
	f.do(t, scOperator, "POST", path, map[string]any{"guardian": g}, why...).want(t, "Sichuan's operator", 403, "other_province")
	f.do(t, gdOperator, "POST", path, map[string]any{"guardian": g}).want(t, "no reason", 400, "reason_required", auth.HeaderReason)
	f.do(t, gdOperator, "POST", path, map[string]any{"guardian": "nope"}, why...).want(t, "bad guardian", 400, "invalid_guardian", "guardian")
	f.do(t, gdOperator, "POST", path, map[string]any{"guardian": d}, why...).want(t, "own guardian", 400, "invalid_guardian", "guardian")
	f.do(t, gdOperator, "POST", path, map[string]any{}, why...).want(t, "no guardian", 400, "invalid_guardian", "guardian")
	f.do(t, gdOperator, "POST", path, map[string]any{"guardian": g, "reason": "x"}, why...).want(t, "reason in the body", 400, "bad_json", "reason")
	f.do(t, gdOperator, "POST", "/v1/residents/nope/guardians", map[string]any{"guardian": g}, why...).want(t, "bad dependant", 400, "invalid_sub", "sub")
	// Before a delegation, the guardian is a stranger.
	f.do(t, guardian, "GET", code, nil).want(t, "before delegation", 403, "not_yours")
	if f.n.StoreVersion() != before {
		t.Fatal("refused requests wrote something")
	}

	a := f.do(t, gdOperator, "POST", path, map[string]any{"guardian": g}, why...)
	var added struct {
		Dependant hcx.Subject `json:"dependant"`
		Guardian  hcx.Subject `json:"guardian"`
	}
	a.decode(t, &added)
	if a.status != 201 || added.Dependant != d || added.Guardian != g {
		t.Fatalf("add guardian: %d %s", a.status, a.body)
	}
	f.do(t, gdOperator, "POST", path, map[string]any{"guardian": g}, why...).want(t, "add again", 409, "already_guardian")
	entry := trailEntry(t, f.n, node.ActionGuardianAdd, d, "oidc:https://idp.gd#op-7", docG, docD, "张")
	if entry.Why != "birth certificate seen" || entry.Note != "guardian "+string(g) {
		t.Errorf("guardian.add entry = %+v", entry)
	}

	// The guardian acts for the dependant: the code is signed for the
	// dependant, and the log line has both actor and subject, no names.
	a = f.do(t, guardian, "GET", code, nil)
	var c node.Code
	a.decode(t, &c)
	if a.status != 200 || subjectOfCode(t, c.QR) != d {
		t.Fatalf("guardian fetches the dependant's code: %d %s", a.status, a.body)
	}
	if a := f.do(t, guardian, "GET", "/v1/residents/"+string(d), nil); a.status != 200 {
		t.Fatalf("guardian reads the dependant: %d %s", a.status, a.body)
	}
	logs := f.logs()
	if !strings.Contains(logs, "actor=resident:"+string(g)) || !strings.Contains(logs, "subject="+string(d)) {
		t.Errorf("no log line with actor and subject:\n%s", logs)
	}
	for _, secret := range []string{"张", "李", docD, docG} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs carry %q:\n%s", secret, logs)
		}
	}
	// The stranger, the dependant acting for the guardian, and the
	// guardian on a self-only route are all refused.
	f.do(t, stranger, "GET", code, nil).want(t, "stranger", 403, "not_yours")
	f.do(t, stranger, "GET", "/v1/residents/"+string(d), nil).want(t, "stranger reads", 403, "not_yours")
	f.do(t, dependant, "GET", "/v1/residents/"+string(g)+"/code", nil).want(t, "backwards", 403, "not_yours")
	f.do(t, unboundResident, "GET", code, nil).want(t, "unbound resident", 403, "not_yours")
	callAs(t, f.probe, guardian, "GET", "/probe/residents/"+string(d)+"/self", nil).want(t, "self-only route", 403, "not_yours")
	if a := callAs(t, f.probe, guardian, "GET", "/probe/residents/"+string(d)+"/self-or-dependant", nil); a.status != 200 {
		t.Fatalf("the guardian on a self-or-dependant probe: %d %s", a.status, a.body)
	}
	if a := callAs(t, f.probe, dependant, "GET", "/probe/residents/"+string(d)+"/self", nil); a.status != 200 {
		t.Fatalf("the dependant on their own self-only route: %d %s", a.status, a.body)
	}

	// The guardian's /v1/me lists the dependant, masked.
	a = f.do(t, guardian, "GET", "/v1/me", nil)
	type meResident struct {
		Subject    hcx.Subject `json:"subject"`
		Name       string      `json:"name"`
		Colour     hcx.Colour  `json:"colour"`
		Vaccinated bool        `json:"vaccinated"`
	}
	var me struct {
		Subject    hcx.Subject  `json:"subject"`
		Dependants []meResident `json:"dependants"`
	}
	a.decode(t, &me)
	if a.status != 200 || me.Subject != g || len(me.Dependants) != 1 || me.Dependants[0] != (meResident{Subject: d, Name: "张*", Colour: hcx.Green}) {
		t.Fatalf("guardian's me: %d %s", a.status, a.body)
	}

	del := path + "/" + string(g)
	f.do(t, guardian, "DELETE", del, nil, why...).want(t, "guardian removes themselves", 403, "forbidden_role")
	f.do(t, scOperator, "DELETE", del, nil, why...).want(t, "Sichuan's operator", 403, "other_province")
	f.do(t, gdOperator, "DELETE", del, nil, auth.HeaderReason, strings.Repeat("x", auth.MaxReason+1)).want(t, "long reason", 400, "invalid_reason", auth.HeaderReason)
	f.do(t, gdOperator, "DELETE", del, nil).want(t, "no reason", 400, "reason_required", auth.HeaderReason)
	f.do(t, gdOperator, "DELETE", path+"/nope", nil, why...).want(t, "bad guardian", 400, "invalid_guardian", "guardian")
	a = f.do(t, gdOperator, "DELETE", del, nil, auth.HeaderReason, "custody changed")
	var removed struct {
		Removed bool `json:"removed"`
	}
	a.decode(t, &removed)
	if a.status != 200 || !removed.Removed {
		t.Fatalf("remove guardian: %d %s", a.status, a.body)
	}
	entry = trailEntry(t, f.n, node.ActionGuardianRemove, d, "oidc:https://idp.gd#op-7", docG, docD, "张")
	if entry.Why != "custody changed" || entry.Note != "guardian "+string(g) {
		t.Errorf("guardian.remove entry = %+v", entry)
	}
	f.do(t, gdOperator, "DELETE", del, nil, why...).want(t, "remove again", 404, "no_delegation")
	f.do(t, guardian, "GET", code, nil).want(t, "after removal", 403, "not_yours")
}

// Operators see a resident's full identity only on its own route, which is
// audited; residents and other provinces do not.
func TestFullIdentityOnlyForTheProvincesOperators(t *testing.T) {
	f := newIdentityFixture(t)
	g := f.register(t, docG, "张三")
	path := "/v1/residents/" + string(g) + "/identity"
	before := f.n.StoreVersion()
	f.do(t, "", "GET", path, nil).want(t, "anonymous", 401, "unauthenticated")
	f.do(t, residentAs(g), "GET", path, nil).want(t, "the resident", 403, "forbidden_role")
	f.do(t, scOperator, "GET", path, nil, auth.HeaderReason, "curious").want(t, "Sichuan's operator", 403, "other_province")
	f.do(t, gdOperator, "GET", path, nil).want(t, "no reason", 400, "reason_required", auth.HeaderReason)
	if f.n.StoreVersion() != before {
		t.Fatal("refused identity reads were recorded")
	}
	a := f.do(t, gdOperator, "GET", path, nil, auth.HeaderReason, "appeal 7 needs the document")
	var id node.Identity
	a.decode(t, &id)
	if a.status != 200 || id.DocNumber != docG || id.Name != "张三" || id.Subject != g {
		t.Fatalf("identity: %d %s", a.status, a.body)
	}
	read := trailEntry(t, f.n, node.ActionResidentReadIdentity, g, "oidc:https://idp.gd#op-7", docG, "张三")
	if read.Why != "appeal 7 needs the document" || read.Role != auth.RoleOperator {
		t.Errorf("resident.read_identity entry = %+v", read)
	}
	// The resident route shows masked identity only, and takes no
	// identity=full: full identity has its own audited route.
	a = f.do(t, residentAs(g), "GET", "/v1/residents/"+string(g), nil)
	if a.status != 200 || bytes.Contains(a.body, []byte(docG)) || bytes.Contains(a.body, []byte("张三")) {
		t.Fatalf("resident: %d %s", a.status, a.body)
	}
	a = f.do(t, gdOperator, "GET", "/v1/residents/"+string(g)+"?identity=full", nil)
	if a.status != 400 || bytes.Contains(a.body, []byte(docG)) {
		t.Fatalf("?identity=full: %d %s, want 400", a.status, a.body)
	}
	for _, rule := range api.IdentityRules() {
		if rule.Method != http.MethodGet && !rule.Audited && rule.Path != "/v1/auth/enrol" {
			t.Errorf("%s %s changes state and is not Audited", rule.Method, rule.Path)
		}
		if rule.Path == "/v1/residents/{sub}/identity" && (!rule.Audited || rule.Action != node.ActionResidentReadIdentity) {
			t.Errorf("the identity read is not audited as %s", node.ActionResidentReadIdentity)
		}
	}
}
