package api

import (
	"net/http"

	"github.com/hcxfed/hcx"
)

// WithCSRF refuses state-changing requests that a browser sends from
// another origin (net/http.CrossOriginProtection: Sec-Fetch-Site, else
// Origin against Host), with a JSON 403 cross_origin. GET, HEAD and OPTIONS
// pass, and so do machine clients, which send neither header. Wrap the node
// handler with it: session cookies are SameSite=Strict already, and this is
// the second lock on the same door.
func WithCSRF(h http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, nil, hcx.Errorf(hcx.EForbidden, "cross_origin",
			"%s %s came from a page of another site; it is refused. Use the node's own pages", r.Method, r.URL.Path))
	}))
	return csrfHandler{Handler: c.Handler(h), next: h}
}

// csrfHandler is WithCSRF's handler; Unwrap lets MountedRoutes see the
// routes inside.
type csrfHandler struct {
	http.Handler
	next http.Handler
}

// Unwrap returns the handler WithCSRF protects.
func (c csrfHandler) Unwrap() http.Handler { return c.next }
