package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/devidp"
)

// logRecords parses every line of log as one JSON object with time, level
// and msg.
func logRecords(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %d is not JSON (%v): %q", i+1, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if s, _ := m[k].(string); s == "" {
				t.Fatalf("log line %d has no %s: %q", i+1, k, line)
			}
		}
		out = append(out, m)
	}
	return out
}

// accessKey is what an access line says of a request, and what the test
// expects of each request it makes.
type accessKey struct {
	method, route, role string
	status              int
}

func (k accessKey) String() string {
	return fmt.Sprintf("%s %s %d %s", k.method, k.route, k.status, k.role)
}

// A real federation, logging through hcx's logger constructor as JSON at
// DEBUG (everything, Raft included), serves a resident with a planted name
// and document number through enrolment, their code, a check, a lab result,
// an appeal and an operator's reading. No log line carries the name, the
// document number, the subject, the code, the enrolment code, the session
// or a bearer token; every line is JSON; the province's node wrote exactly
// one access line per request the test made, with the route's template,
// the status and the caller's role; the hub members logged their leader
// and the nodes' requests to their API, the nodes that they caught up
// with the hub log.
func TestLogsCarryNoIdentityAndOneAccessLinePerRequest(t *testing.T) {
	var buf syncBuffer // the federation's goroutines write while the test reads
	logger, err := newLogger(&buf, "json", true, false)
	if err != nil {
		t.Fatal(err)
	}
	f := startTestFederationWith(t, federationConfig{Dir: t.TempDir(), HubMembers: 3, Logger: logger})
	const gd hcx.ProvinceCode = "440000"
	const name = "木兰测试"
	docNumber := "44030419870621347" + string(hcx.CNIDCheckDigit("44030419870621347"))
	url := f.NodeURLs[gd]

	var made []accessKey
	// do makes one request as who and notes what its access line must
	// say: a caller whose credentials are not (yet) known is anonymous.
	do := func(who caller, role auth.Role, method, route, path string, body, out any) int {
		t.Helper()
		st := callAs(t, f.client(), who, method, url+path, body, out)
		if st == http.StatusUnauthorized {
			role = auth.RoleAnonymous
		}
		made = append(made, accessKey{method, route, string(role), st})
		return st
	}
	// The operator says why, naming the resident, as people do; the
	// reason goes to the audit trail, never to the log.
	opToken := f.asOperator(t, gd)
	op := caller{name: "operator", sign: func(t testing.TB, req *http.Request, b []byte) {
		opToken.sign(t, req, b)
		req.Header.Set(auth.HeaderReason, "in-person check of "+name)
	}}

	var enrol struct {
		Code    string      `json:"code"`
		Subject hcx.Subject `json:"subject"`
	}
	if st := do(op, auth.RoleOperator, "POST", "/v1/enrolments", "/v1/enrolments", map[string]string{"doc_type": "CN-ID", "doc_number": docNumber, "name": name}, &enrol); st != http.StatusCreated {
		t.Fatalf("enrolment code: status %d", st)
	}
	sub := string(enrol.Subject)
	jar, _ := cookiejar.New(nil)
	hc := *f.client()
	hc.Jar = jar
	var got struct {
		Subject hcx.Subject `json:"subject"`
	}
	st := callAs(t, &hc, anonymous, "POST", url+"/v1/auth/enrol", map[string]string{"code": enrol.Code}, &got)
	made = append(made, accessKey{"POST", "/v1/auth/enrol", "anonymous", st})
	if st != http.StatusOK || got.Subject != enrol.Subject {
		t.Fatalf("enrol: status %d", st)
	}
	resident := caller{name: "resident", sign: func(_ testing.TB, req *http.Request, _ []byte) {
		for _, c := range jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
	}}
	if st := do(resident, auth.RoleResident, "GET", "/v1/residents/{sub}", "/v1/residents/"+sub, nil, nil); st != http.StatusOK {
		t.Fatalf("the resident reads themselves: status %d", st)
	}
	if st := do(anonymous, auth.RoleAnonymous, "GET", "/v1/residents/{sub}", "/v1/residents/"+sub, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("anonymous read: status %d, want 401", st)
	}
	if st := do(op, auth.RoleOperator, "GET", "/v1/residents/{sub}", "/v1/residents/"+sub, nil, nil); st != http.StatusOK {
		t.Fatalf("the operator reads the resident: status %d", st)
	}
	var code struct {
		Code string `json:"code"`
	}
	if st := do(resident, auth.RoleResident, "GET", "/v1/residents/{sub}/code", "/v1/residents/"+sub+"/code", nil, &code); st != http.StatusOK || code.Code == "" {
		t.Fatalf("code: status %d", st)
	}
	// The checkpoint and the feed are known once the node has the trust
	// list: until then they are refused as anonymous, each refusal a line.
	for deadline := time.Now().Add(20 * time.Second); ; {
		st := do(f.asCheckpoint(gd), auth.RoleCheckpoint, "POST", "/v1/verify", "/v1/verify", map[string]string{"code": code.Code}, nil)
		if st == http.StatusOK {
			break
		}
		if st != http.StatusUnauthorized || time.Now().After(deadline) {
			t.Fatalf("verify the code: status %d", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := do(f.asFeed(gd), auth.RoleFeed, "POST", "/v1/residents/{sub}/labs", "/v1/residents/"+sub+"/labs", map[string]string{"result": "positive", "id": "S-MULAN-1"}, nil); st != http.StatusOK {
		t.Fatalf("lab result: status %d", st)
	}
	appeal := map[string]any{"kind": "record", "record": map[string]string{"kind": "lab", "id": "S-MULAN-1"}, "text": "我是" + name + "，证件号 " + docNumber}
	if st := do(resident, auth.RoleResident, "POST", "/v1/residents/{sub}/appeals", "/v1/residents/"+sub+"/appeals", appeal, nil); st != http.StatusCreated {
		t.Fatalf("appeal: status %d", st)
	}
	// No route, no gate: the caller is never authenticated.
	if st := do(op, auth.RoleAnonymous, "GET", "unmatched", "/v1/no-such-route/"+sub+"?doc="+docNumber, nil, nil); st != http.StatusNotFound {
		t.Fatalf("unknown route: status %d, want 404", st)
	}
	if st := do(resident, auth.RoleResident, "GET", "/v1/residents/{sub}/code", "/v1/residents/"+sub+"/code?name="+name, nil, nil); st != http.StatusBadRequest {
		t.Fatalf("unknown query parameter: status %d, want 400", st)
	}
	waitSettled(t, f)

	// Lines are written after the answer is sent: wait for the last.
	var recs []map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; {
		recs = logRecords(t, buf.String())
		n := 0
		for _, r := range recs {
			if r["component"] == "access" && r["province"] == string(gd) {
				n++
			}
		}
		if n >= len(made) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	tok, _ := tokenCache.Load(f.IdP.Issuer() + "#" + devidp.OperatorName(gd))
	secrets := map[string]string{"name": name, "document number": docNumber, "subject": sub, "code": code.Code,
		"enrolment code": enrol.Code, "operator's bearer token": tok.(string)}
	jarURL, _ := neturl.Parse(url)
	for _, c := range jar.Cookies(jarURL) {
		secrets["cookie "+c.Name] = c.Value
	}
	all := buf.String()
	for what, v := range secrets {
		if v == "" {
			t.Fatalf("the test lost the %s it plants", what)
		}
		for _, line := range strings.Split(all, "\n") {
			if strings.Contains(line, v) {
				t.Errorf("a log line carries the %s: %s", what, line)
			}
		}
	}

	// One access line per request the test made, as the test expects it.
	routes := map[string]bool{}
	for _, k := range made {
		routes[k.route] = true
	}
	want, logged := map[accessKey]int{}, map[accessKey]int{}
	for _, k := range made {
		want[k]++
	}
	for _, r := range recs {
		if r["component"] != "access" || r["province"] != string(gd) || !routes[fmt.Sprint(r["route"])] {
			continue
		}
		if r["msg"] != "request" || r["level"] != "INFO" {
			t.Errorf("access line %v: want INFO \"request\"", r)
		}
		if _, ok := r["duration_ms"].(float64); !ok {
			t.Errorf("access line without duration_ms: %v", r)
		}
		if _, ok := r["bytes"].(float64); !ok {
			t.Errorf("access line without bytes: %v", r)
		}
		st, _ := r["status"].(float64)
		logged[accessKey{fmt.Sprint(r["method"]), fmt.Sprint(r["route"]), fmt.Sprint(r["role"]), int(st)}]++
	}
	if fmt.Sprint(sortedCounts(logged)) != fmt.Sprint(sortedCounts(want)) {
		t.Errorf("access lines of %s:\n%s\nwant, from the %d requests made:\n%s", gd, strings.Join(sortedCounts(logged), "\n"), len(made), strings.Join(sortedCounts(want), "\n"))
	}

	// Events: the hub members logged the leader, each node that it
	// caught up with the hub log.
	leader, caughtUp, hubReads := 0, map[string]bool{}, 0
	for _, r := range recs {
		if r["component"] == "access" && r["member"] != nil && r["route"] == "/v1/entries" && r["role"] == "province" && r["method"] == "GET" {
			hubReads++ // the nodes following the log, at the hub's API
		}
		switch r["msg"] {
		case "leader changed":
			if r["new"] == f.Hub.Leader().ID() {
				leader++
			}
		case "caught up with the hub log":
			caughtUp[fmt.Sprint(r["province"])] = true
		}
	}
	if hubReads == 0 {
		t.Error("the hub members logged no GET /v1/entries by a province")
	}
	if leader < 3 {
		t.Errorf("%d hub members logged the leader %s, want 3", leader, f.Hub.Leader().ID())
	}
	for _, p := range devProvinces {
		if !caughtUp[string(p)] {
			t.Errorf("node %s did not log that it caught up with the hub log", p)
		}
	}
}

func sortedCounts(m map[accessKey]int) []string {
	var out []string
	for k, n := range m {
		out = append(out, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(out)
	return out
}

// The logger constructor: JSON unless told text (a file that is not a
// terminal gets JSON too), INFO and up by default, WARN and up when quiet,
// everything with -v; Raft's own records below WARN only with -v.
func TestNewLoggerFormatsAndLevels(t *testing.T) {
	emit := func(l *slog.Logger) {
		l.Debug("app debug")
		l.Info("app info")
		l.Warn("app warn")
		raft := l.With("component", "raft")
		raft.Info("raft info")
		raft.Warn("raft warn")
		raft.Error("raft error")
	}
	msgs := func(out string) []string {
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not JSON: %q", line)
			}
			got = append(got, m["msg"].(string))
		}
		return got
	}
	for _, c := range []struct {
		verbose, quiet bool
		want           string
	}{
		{false, false, "app info,app warn,raft warn,raft error"},
		{false, true, "app warn,raft warn,raft error"},
		{true, false, "app debug,app info,app warn,raft info,raft warn,raft error"},
	} {
		var buf bytes.Buffer
		l, err := newLogger(&buf, "json", c.verbose, c.quiet)
		if err != nil {
			t.Fatal(err)
		}
		emit(l)
		if got := strings.Join(msgs(buf.String()), ","); got != c.want {
			t.Errorf("verbose %v quiet %v: %s, want %s", c.verbose, c.quiet, got, c.want)
		}
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, _ := newLogger(f, "", false, false)
	l.Info("to a file")
	b, _ := os.ReadFile(f.Name())
	if got := msgs(string(b)); len(got) != 1 || got[0] != "to a file" {
		t.Errorf("a file that is not a terminal: %q, want JSON", b)
	}
	var buf bytes.Buffer
	l, _ = newLogger(&buf, "text", false, false)
	l.Info("plain", "k", "v")
	if !strings.Contains(buf.String(), `level=INFO msg=plain k=v`) {
		t.Errorf("--log-format text wrote %q", buf.String())
	}
	if _, err := newLogger(&buf, "xml", false, false); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("--log-format xml: %v, want an error naming the flag", err)
	}
}

// A long-running command refuses an unknown --log-format before it starts
// anything.
func TestLogFormatFlagIsChecked(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"dev", "--dir", t.TempDir(), "--log-format", "yaml"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), `--log-format "yaml"`) {
		t.Errorf("hcx dev --log-format yaml: %v", err)
	}
}
