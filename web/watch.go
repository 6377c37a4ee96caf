package web

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/hcxfed/hcx/audit"
)

// The pages of the national auditor's own process, hcx audit --watch
// (issue 16 item 5): its findings over its passes, the last pass and its
// witness, on the watch's listener rather than a node's. They read no API:
// the watch hands its state over in process (WatchConfig.State), so a
// Server here has no APICaller and serves only these pages, the switches
// and the static files.

// WatchConfig is what the watch's pages need.
type WatchConfig struct {
	// State returns a copy of the watch's state at the time of the call.
	State  func() WatchState
	Logger *slog.Logger
}

// WatchState is what hcx audit --watch shows.
type WatchState struct {
	History audit.History
	Witness WatchWitness
}

// WatchWitness is the auditor's own witness: its note name, the largest
// checkpoint it cosigned, and what it did since the watch started.
type WatchWitness struct {
	Name      string `json:"name"`
	Size      uint64 `json:"size"`
	Cosigned  uint64 `json:"cosigned"`
	Conflicts uint64 `json:"conflicts"`
}

// NewWatch builds the watch's pages: GET /app/ and /app/findings (the same
// page), POST /app/prefs (the language and elderly-mode switches) and
// /app/static/.
func NewWatch(cfg WatchConfig) (http.Handler, error) {
	if cfg.State == nil {
		return nil, fmt.Errorf("web: WatchConfig.State is nil")
	}
	s, err := newServer(cfg.Logger)
	if err != nil {
		return nil, err
	}
	s.mux.HandleFunc("POST /app/prefs", s.prefs)
	page := func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusOK, "auditor-watch", Page{Data: cfg.State()})
	}
	s.mux.HandleFunc("GET /app/{$}", page)
	s.mux.HandleFunc("GET /app/findings", page)
	return s, nil
}
