package api

import (
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/hcxfed/hcx"
)

// MaxProfileSeconds bounds ?seconds= of the admin listener's CPU profile and
// execution trace. net/http/pprof (Go 1.26) extends the write deadline of
// such a request by its duration itself, so the listener keeps NewServer's
// write time-out; without a bound a caller could hold a connection (and the
// process's single CPU profiler) for as long as it asked.
const MaxProfileSeconds = 120

// AdminHandler serves net/http/pprof's handlers under /debug/pprof/ on a mux
// of its own, never on an API listener. It authenticates nobody: serve it
// only on an address operators alone reach (loopback, a management network).
func AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", boundedSeconds(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", boundedSeconds(pprof.Trace))
	return mux
}

// boundedSeconds refuses a ?seconds= that is not a number or exceeds
// MaxProfileSeconds with a 400 naming the field.
func boundedSeconds(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("seconds"); v != "" {
			sec, err := strconv.ParseFloat(v, 64)
			if err != nil || !(sec >= 0 && sec <= MaxProfileSeconds) {
				WriteError(w, nil, hcx.Invalidf("seconds", "seconds must be a number from 0 to %d, not %q", MaxProfileSeconds, v))
				return
			}
		}
		h(w, r)
	}
}

// NewAdminServer is the admin listener's server: AdminHandler behind
// NewServer's default time-outs.
func NewAdminServer() *http.Server {
	return NewServer(AdminHandler(), ServerTimeouts{})
}
