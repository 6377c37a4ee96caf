package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx/auth"
)

// The access log: one line per request, written by AccessLog around every
// API listener (the node's, the hub's, the auditor's witness, the admin
// listener). A line says what was asked and how it went, never of whom:
// the route is the template (/v1/residents/{sub}), never the path that
// names the subject; no query string, header, token or body is read.
// The caller is named by role alone. docs/logging.md lists the fields.

// accessInfo is what the gate learns of a request for its line: the route
// it matched and the role it authenticated.
type accessInfo struct {
	route string
	role  auth.Role
	quiet bool // health probes and metrics: logged at DEBUG
}

type accessKey struct{}

// accessOf is the request's accessInfo, nil outside AccessLog.
func accessOf(ctx context.Context) *accessInfo {
	a, _ := ctx.Value(accessKey{}).(*accessInfo)
	return a
}

// noteRoute records the route template a request matched, for its line.
func noteRoute(r *http.Request, route string) {
	if a := accessOf(r.Context()); a != nil {
		a.route, a.quiet = route, quietRoutes[route]
	}
}

// noteRole records the role of the authenticated caller.
func noteRole(r *http.Request, role auth.Role) {
	if a := accessOf(r.Context()); a != nil {
		a.role = role
	}
}

// quietRoutes are logged at DEBUG wherever they are served: load balancers
// and Prometheus poll them every few seconds.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// AccessLog serves h, writing one INFO line to log for each request after
// it is answered (DEBUG for /healthz, /readyz and /metrics). The route is
// the one the gate matched; without the gate (ServeMux patterns, a CSRF
// refusal before the router), the pattern the router would match, or
// "unmatched".
func AccessLog(h http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &accessLog{h: h, log: log.With("component", "access")}
	for inner := h; inner != nil; {
		switch v := inner.(type) {
		case *mux.Router:
			a.router, inner = v, nil
		case interface{ Unwrap() http.Handler }:
			inner = v.Unwrap()
		default:
			inner = nil
		}
	}
	return a
}

type accessLog struct {
	h      http.Handler
	log    *slog.Logger
	router *mux.Router // the gorilla router inside h, to name routes the gate did not see
}

// Unwrap is the handler served (MountedRoutes walks through).
func (a *accessLog) Unwrap() http.Handler { return a.h }

func (a *accessLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &accessInfo{}
	rw := &countingWriter{ResponseWriter: w}
	r2 := r.WithContext(context.WithValue(r.Context(), accessKey{}, info))
	panicked := true
	defer func() {
		status := rw.status
		if panicked {
			status = http.StatusInternalServerError // net/http closes the connection
		}
		a.write(r, r2, info, status, rw.bytes, time.Since(start))
	}()
	a.h.ServeHTTP(rw, r2)
	panicked = false
}

func (a *accessLog) write(r, served *http.Request, info *accessInfo, status int, bytes int64, d time.Duration) {
	route := info.route
	// A ServeMux inside this log that matched the request (r came without
	// the pattern) names it, before any route a gate noted: the pages (a
	// ServeMux under /app/) read the API in process with the browser's
	// request, and the API's gate would name the page after the last API
	// route it called. A pattern r already had was set by a ServeMux
	// outside (the hub's catch-all "/"), which names nothing.
	if served.Pattern != "" && served.Pattern != r.Pattern { // such as "GET /healthz"
		route = served.Pattern
		if _, path, ok := strings.Cut(route, " "); ok {
			route = path
		}
	}
	if route == "" && a.router != nil {
		var m mux.RouteMatch
		if a.router.Match(r, &m) && m.Route != nil && m.MatchErr == nil {
			route, _ = m.Route.GetPathTemplate()
		}
	}
	if route == "" {
		route = "unmatched"
	}
	if route != info.route { // not the gate's: its quietness is not either
		info.quiet = quietRoutes[route]
	}
	role := info.role
	if role == "" {
		role = auth.RoleAnonymous
	}
	if status == 0 {
		status = http.StatusOK
	}
	level := slog.LevelInfo
	if info.quiet {
		level = slog.LevelDebug
	}
	a.log.LogAttrs(r.Context(), level, "request",
		slog.String("method", methodOf(r)),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.Int64("bytes", bytes),
		slog.String("role", string(role)))
}

// methodOf is the request's method if it is one HTTP defines, "OTHER"
// otherwise: the method is the client's text, and a line carries none.
func methodOf(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return r.Method
	}
	return "OTHER"
}

// countingWriter notes the status and counts the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx are interim
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer
// (write deadlines of long polls and batch streams, Flush).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush serves handlers that assert http.Flusher directly.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}
