package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx/auth"
)

// syncBuffer is a log destination the server's goroutines write to while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// Each request is one line naming the route's template, never the path,
// query or body; probes are DEBUG; what no route matches is "unmatched";
// a refusal before the router still names its route; a panic is a 500.
func TestAccessLogWritesOneLinePerRequestWithTheRouteTemplate(t *testing.T) {
	const secret = "abcdefghijklmnopqrstuvwxyz" // a subject-like path segment
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	r := mux.NewRouter()
	g := &gate{onError: func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, nil, err) }}
	g.mount(r, []Rule{
		{Method: http.MethodGet, Path: "/v1/residents/{sub}", Priority: PriorityResident, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"subject": mux.Vars(r)["sub"]})
		}},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/labs", Priority: PriorityBulk, Allow: []Grant{{Role: auth.RoleFeed, Scope: ScopeAny}}, Handler: func(w http.ResponseWriter, r *http.Request) {
			t.Error("an anonymous caller reached the feed's route")
		}},
		{Method: http.MethodGet, Path: "/healthz", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{Method: http.MethodPost, Path: "/v1/panic", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			panic(http.ErrAbortHandler) // net/http's quiet abort
		}},
	})
	var buf syncBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(AccessLog(WithCSRF(r), log))
	defer srv.Close()
	do := func(method, path string, header map[string]string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(`{"name":"`+secret+`"}`))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if path == "/v1/panic" {
				return 0
			}
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	type line struct {
		level, method, route string
		status               int
	}
	want := []line{
		{"INFO", "GET", "/v1/residents/{sub}", 400}, // the query parameter is unknown
		{"INFO", "GET", "/v1/residents/{sub}", 200},
		{"INFO", "GET", "unmatched", 404},
		{"INFO", "POST", "/v1/residents/{sub}/labs", 401},
		{"INFO", "POST", "/v1/residents/{sub}/labs", 403}, // refused by WithCSRF before the gate
		{"DEBUG", "GET", "/healthz", 200},
		{"INFO", "OTHER", "unmatched", 405},
		{"INFO", "POST", "/v1/panic", 500}, // POST: the client does not retry
	}
	do("GET", "/v1/residents/"+secret+"?token="+secret, nil)
	do("GET", "/v1/residents/"+secret, nil)
	do("GET", "/v1/people/"+secret, nil)
	do("POST", "/v1/residents/"+secret+"/labs", map[string]string{"Authorization": "Bearer " + secret})
	do("POST", "/v1/residents/"+secret+"/labs", map[string]string{"Sec-Fetch-Site": "cross-site"})
	do("GET", "/healthz", nil)
	do("FROB", "/healthz", nil)
	do("POST", "/v1/panic", nil)
	got := buf.lines(t)
	if len(got) != len(want) {
		t.Fatalf("%d lines for %d requests: %v", len(got), len(want), got)
	}
	for i, w := range want {
		l := got[i]
		if l["level"] != w.level || l["msg"] != "request" || l["method"] != w.method || l["route"] != w.route || l["status"] != float64(w.status) || l["role"] != "anonymous" || l["component"] != "access" {
			t.Errorf("line %d: %v, want %+v by anonymous", i, l, w)
		}
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("line %d has no duration_ms: %v", i, l)
		}
		if _, ok := l["bytes"].(float64); !ok {
			t.Errorf("line %d has no bytes: %v", i, l)
		}
	}
	if got[0]["bytes"].(float64) < float64(len(secret)) {
		t.Errorf("line 0 counts %v bytes of an answer carrying the subject", got[0]["bytes"])
	}
	buf.mu.Lock()
	defer buf.mu.Unlock()
	if strings.Contains(buf.b.String(), secret) {
		t.Errorf("the access log carries a path segment, query, header or body:\n%s", buf.b.String())
	}
}

// A listener without the gate (hcx audit --watch serves a ServeMux) is
// named by the ServeMux's pattern, its method dropped.
func TestAccessLogNamesServeMuxPatterns(t *testing.T) {
	m := http.NewServeMux()
	m.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "x 1\n") })
	m.HandleFunc("POST /v1/witness/{op}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusConflict) })
	var buf syncBuffer
	srv := httptest.NewServer(AccessLog(m, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	defer srv.Close()
	for _, c := range []struct{ method, path string }{{"GET", "/metrics"}, {"POST", "/v1/witness/add-checkpoint"}, {"GET", "/nothing"}} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var got []string
	for _, l := range buf.lines(t) {
		got = append(got, fmt.Sprint(l["level"], " ", l["route"], " ", l["status"]))
	}
	want := []string{"DEBUG /metrics 200", "INFO /v1/witness/{op} 409", "INFO unmatched 404"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// A page (web's ServeMux under /app/) reads the API in process with the
// browser's request and context, so the API's gate notes its own route on
// the page's line: GET /app/resident was logged as GET /v1/me. The line
// names the page's pattern, and the role the gate found.
func TestAccessLogNamesThePageNotTheAPIRouteItCalls(t *testing.T) {
	r := mux.NewRouter()
	g := &gate{onError: func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, nil, err) }}
	g.mount(r, []Rule{{Method: http.MethodGet, Path: "/v1/me", Priority: PriorityResident, Allow: []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}, Handler: func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"role": "anonymous"})
	}}})
	pages := http.NewServeMux()
	pages.HandleFunc("GET /app/resident", func(w http.ResponseWriter, req *http.Request) {
		inner := req.Clone(req.Context())
		inner.URL.Path = "/v1/me"
		r.ServeHTTP(httptest.NewRecorder(), inner)
		io.WriteString(w, "<html>")
	})
	top := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, "/app/") {
			pages.ServeHTTP(w, req)
			return
		}
		r.ServeHTTP(w, req)
	})
	var buf syncBuffer
	srv := httptest.NewServer(AccessLog(top, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	defer srv.Close()
	for _, p := range []string{"/app/resident", "/v1/me"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var got []string
	for _, l := range buf.lines(t) {
		got = append(got, fmt.Sprint(l["route"], " ", l["status"], " ", l["role"]))
	}
	want := []string{"/app/resident 200 anonymous", "/v1/me 200 anonymous"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}
