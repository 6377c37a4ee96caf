package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"

	"github.com/gorilla/mux"
)

// RouteInfo is one route of a server's table as tests and docs see it:
// what the gate enforces, without the handler.
type RouteInfo struct {
	Method   string
	Path     string
	Query    []string
	Allow    []Grant
	Audited  bool
	Priority Priority
}

// Key is the route's "METHOD /path/template".
func (ri RouteInfo) Key() string { return ri.Method + " " + ri.Path }

// NodeRoutes is the node's route table (nodeHandler.rules), built over no
// node: the same rules NewNodeHandler mounts.
func NodeRoutes() []RouteInfo {
	h := &nodeHandler{log: slog.New(slog.DiscardHandler)}
	return routeInfos(h.rules())
}

// HubRoutes is the hub's route table (hubHandler.rules).
func HubRoutes() []RouteInfo {
	hh := &hubHandler{log: slog.New(slog.DiscardHandler), m: newHubMetrics()}
	return routeInfos(hh.rules())
}

func routeInfos(rules []Rule) []RouteInfo {
	out := make([]RouteInfo, len(rules))
	for i, r := range rules {
		out[i] = RouteInfo{Method: r.Method, Path: r.Path, Query: slices.Clone(r.Query), Allow: slices.Clone(r.Allow), Audited: r.Audited, Priority: r.Priority}
	}
	return out
}

// MountedRoutes walks the router inside h (a handler from NewNodeHandler
// or NewHubHandler, possibly wrapped by WithCSRF) and returns every route it
// serves as "METHOD /path/template", sorted: what is really mounted, to be
// held against the tables.
func MountedRoutes(h http.Handler) ([]string, error) {
	for {
		switch v := h.(type) {
		case *mux.Router:
			var out []string
			err := v.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
				tpl, err := route.GetPathTemplate()
				if err != nil {
					return err
				}
				methods, err := route.GetMethods()
				if err != nil {
					return fmt.Errorf("route %s serves every method: %w", tpl, err)
				}
				for _, m := range methods {
					out = append(out, m+" "+tpl)
				}
				return nil
			})
			sort.Strings(out)
			return out, err
		case interface{ Unwrap() http.Handler }:
			h = v.Unwrap()
		default:
			return nil, fmt.Errorf("cannot see the routes inside a %T", h)
		}
	}
}
