package api

import (
	_ "embed"
	"maps"
	"net/http"

	"github.com/hcxfed/hcx/auth"
)

// ProtocolVersion is the version of the federation protocol (docs/protocol.md)
// this build speaks; GET / and the OpenAPI documents' info.version say it.
const ProtocolVersion = "1.6"

// The OpenAPI 3 documents of the two APIs, hand-written next to the route
// tables they describe (TestOpenAPIRoutes holds each to its table).
var (
	//go:embed openapi/node.yaml
	NodeOpenAPI []byte
	//go:embed openapi/hub.yaml
	HubOpenAPI []byte
)

// Index is the answer of GET / on an API listener: what this server is and
// where to read more. It names paths only, never a host, so that it is the
// same behind any proxy.
type Index struct {
	Name string `json:"name"`
	// Province is a node's province code; empty at the hub.
	Province string            `json:"province,omitempty"`
	Version  string            `json:"version"` // ProtocolVersion
	Links    map[string]string `json:"links"`
}

// discoveryRules are GET / and GET /openapi.yaml, public on every node and
// hub listener: how a newcomer finds out what a server serves. province
// names a node's province (nil at the hub); it is asked per request, since
// the route tables are also built over no node (NodeRoutes).
func discoveryRules(name string, province func() string, spec []byte) []Rule {
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	links := map[string]string{
		"openapi": "/openapi.yaml",
		"healthz": "/healthz",
		"readyz":  "/readyz",
		"metrics": "/metrics",
	}
	return []Rule{
		{Method: http.MethodGet, Path: "/", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			ix := Index{Name: name, Version: ProtocolVersion, Links: links}
			if province != nil {
				ix.Province = province()
				// A node's listener also serves the pages people use
				// (package web, mounted beside the API by cmd/hcx).
				ix.Links = maps.Clone(links)
				ix.Links["pages"] = "/app/"
			}
			WriteJSON(w, http.StatusOK, ix)
		}},
		{Method: http.MethodGet, Path: "/openapi.yaml", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
			w.Header().Set("Cache-Control", "public, max-age=300")
			w.Write(spec)
		}},
	}
}
