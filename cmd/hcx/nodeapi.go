package main

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/web"
)

// nodeSecurity is what a node's API needs beyond the node to know its
// callers: `hcx node` fills it from flags, `hcx dev` from its federation.
type nodeSecurity struct {
	// PublicURL is the node's external base URL (scheme://host:port).
	PublicURL string
	// PasskeyURL is the origin residents' browsers use for passkeys (an
	// IP address cannot be a WebAuthn relying party: hcx dev uses
	// http://localhost:<port>); empty: PublicURL.
	PasskeyURL string
	OIDC       *auth.OIDC
	Devices    api.DeviceIssuer
	Limits     *api.Limits
	Now        func() time.Time
	Logger     *slog.Logger
}

// nodeHandler is a node's API with every credential kind wired: session
// cookies (passkeys, OIDC logins, enrolment codes), OIDC bearer tokens, and
// SM2 request tokens checked against the trust lists the node follows (so a
// revocation in the hub log locks a machine out once the node has followed
// it), behind cross-origin protection.
func nodeHandler(n *node.Node, sec nodeSecurity) (http.Handler, error) {
	if sec.Now == nil {
		sec.Now = time.Now
	}
	sess := auth.NewSessions(n, auth.SessionConfig{Secure: strings.HasPrefix(sec.PublicURL, "https://"), Now: sec.Now})
	pkURL := sec.PasskeyURL
	if pkURL == "" {
		pkURL = sec.PublicURL
	}
	var pk api.PasskeyConfig
	if u, err := url.Parse(pkURL); err == nil && (u.Scheme == "https" || u.Hostname() == "localhost") {
		if pk, err = api.PasskeysFor(pkURL); err != nil {
			return nil, err
		}
		pk.Now = sec.Now
	} else {
		sec.Logger.Warn("passkeys are off: they need an https:// public URL (or http://localhost)", "public_url", pkURL)
	}
	tokens := &auth.RequestTokens{Trust: n.TrustStore, Now: sec.Now, Replay: auth.NewReplayCache(0)}
	if strings.HasPrefix(sec.PublicURL, "https://") {
		tokens.PublicURL = sec.PublicURL
	}
	chain := auth.Chain{sess, tokens}
	if sec.OIDC != nil {
		chain = append(chain, sec.OIDC)
	}
	opts := api.NodeOptions{
		Authn:        chain,
		StartSession: sess.Start,
		EndSession:   sess.End,
		ClearSession: sess.Clear,
		Passkeys:     pk,
		Limits:       sec.Limits,
		OIDC:         sec.OIDC,
		BaseURL:      sec.PublicURL,
		BindIdentity: n.BindVerifiedIdentity,
		DeviceIssuer: sec.Devices,
	}
	h := api.WithCSRF(api.NewNodeHandler(n, sec.Logger, opts))
	pages, err := web.New(web.Config{API: h, Logger: sec.Logger, PublicURL: sec.PublicURL})
	if err != nil {
		return nil, err
	}
	// The province names the node in a process serving several (hcx dev).
	return api.AccessLog(withPages(h, pages), sec.Logger.With("province", string(n.Province()))), nil
}

// withPages serves the pages (package web) under /app/ beside the API on
// one listener: one origin, so the pages' session cookies and passkeys are
// the API's. The API's router stays as it is (MountedRoutes and the OpenAPI
// walk see it through Unwrap); page forms sit behind the same
// cross-origin protection as the API.
func withPages(apiHandler http.Handler, pages http.Handler) http.Handler {
	return pagesMux{pages: api.WithCSRF(pages), api: apiHandler}
}

// pagesMux is withPages's handler. It splits on the path prefix alone
// rather than through an http.ServeMux, which would clean and redirect
// the API's paths and change its answers.
type pagesMux struct {
	pages, api http.Handler
}

func (p pagesMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, web.Prefix):
		p.pages.ServeHTTP(w, r)
	case r.URL.Path == strings.TrimSuffix(web.Prefix, "/"):
		http.Redirect(w, r, web.Prefix, http.StatusMovedPermanently)
	default:
		p.api.ServeHTTP(w, r)
	}
}

// Unwrap returns the API handler beside the pages.
func (p pagesMux) Unwrap() http.Handler { return p.api }
