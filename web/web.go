// Package web is a node's pages (issue 16): server-rendered html/template
// pages under /app/, translated into Chinese, English, Japanese and Korean,
// with an elderly ("care") mode. A page never reads the node itself: it
// sends the browser's request, re-addressed, into the node's own JSON API in
// process (APICaller), so authentication, authorisation, audit reasons and
// rate limits stay the API's, in one place.
package web

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hcxfed/hcx"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

//go:embed locales
var localeFS embed.FS

// Prefix is where the pages live on a node's listener; everything else is
// the JSON API.
const Prefix = "/app/"

// Config is what the pages need.
type Config struct {
	// API is the node's JSON API handler (what cmd/hcx's nodeHandler
	// returns): every page reads and writes through it.
	API http.Handler
	// Logger gets missing translations and failed renders; never identity
	// fields.
	Logger *slog.Logger
	// PublicURL is the node's public base URL, where a login at the
	// identity provider must start: its callback is registered there, and
	// the login's state cookie must be on the same origin. In hcx dev the
	// pages are opened at http://localhost:<port> (passkeys need a host
	// name) while the callback is at 127.0.0.1; empty: this origin.
	PublicURL string
}

// Server serves the pages.
type Server struct {
	api   *APICaller
	log   *slog.Logger
	base  string // Config.PublicURL without a trailing slash
	i18n  *translations
	pages map[string]*template.Template // page name -> layout + page
	mux   *http.ServeMux
}

// A route is one page route that a file of this package adds with
// addRoutes; each group of pages (resident, checkpoint, venue, operator,
// auditor) lives in its own file and registers itself, so that they can be
// written side by side without editing this one.
type route struct {
	pattern string                                                  // http.ServeMux pattern, such as "GET /app/login"
	handler func(s *Server, w http.ResponseWriter, r *http.Request) // a method expression, such as (*Server).home
}

var (
	routesMu sync.Mutex
	routes   []route
)

// addRoutes registers page routes; call it from an init function.
func addRoutes(rs ...route) {
	routesMu.Lock()
	defer routesMu.Unlock()
	routes = append(routes, rs...)
}

// New parses the templates and the translations and builds the page
// routes.
func New(cfg Config) (*Server, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("web: Config.API is nil")
	}
	s, err := newServer(cfg.Logger)
	if err != nil {
		return nil, err
	}
	s.api, s.base = &APICaller{Handler: cfg.API, Lang: s.i18n.lang}, strings.TrimSuffix(cfg.PublicURL, "/")
	routesMu.Lock()
	defer routesMu.Unlock()
	for _, rt := range routes {
		h := rt.handler
		s.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { h(s, w, r) })
	}
	return s, nil
}

// newServer is a Server with the templates, the translations and the
// static files but no page routes (New adds a node's, NewWatch the
// auditor's watch's); log nil discards.
func newServer(log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr, err := loadTranslations()
	if err != nil {
		return nil, err
	}
	s := &Server{log: log, i18n: tr, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	s.mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", cacheStatic(http.FileServerFS(static))))
	return s, nil
}

// parseTemplates parses each page template together with the layout.
// Translation functions are bound per request (render clones), so here
// they are placeholders.
func (s *Server) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(s.funcs(nil)).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("web: template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return nil
}

// ServeHTTP serves the pages with the headers every page carries: a strict
// Content-Security-Policy (no inline script or style: app.js and app.css
// come from /app/static/), no framing, no sniffing, no referrer beyond
// the origin.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	// A dead session's cookie is cleared on every page (deadcookie.go).
	w, r = withClearingSink(w, r)
	s.mux.ServeHTTP(w, r)
}

// cacheStatic lets browsers keep the static files a little while; they
// change only with a new binary.
func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// Page is what every template gets: the page's own data in Data, and the
// frame around it.
type Page struct {
	Lang string // zh, en, ja or ko
	Care bool   // elderly mode
	// Path is the page's path without a query (the person switch links
	// to it); a page rendered in answer to a POST sets the GET page's.
	Path string
	// Here is where the language and care switches return: a GET page's
	// path and query (without its notice), else Path.
	Here  string
	Who   Who
	Flash string // translation key of a notice after a redirect
	Error *FieldError
	Data  any
}

// Who is the caller as GET /v1/me and GET /v1/auth/session see them, for
// the navigation.
type Who struct {
	// Role is "resident" (GET /v1/me answered), "unbound" (a resident's
	// session not bound to a registered resident), the role of a session
	// that is not a resident's ("operator", "auditor", "checkpoint",
	// "national": GET /v1/auth/session's), or "" (nobody). The
	// navigation shows each role only the pages it may use.
	Role       string
	Name       string // masked
	Colour     string
	Dependants []Dependant
}

// Dependant is one person a resident acts for.
type Dependant struct {
	Subject string `json:"subject"`
	Name    string `json:"name"`
	IDTail  string `json:"id_tail"`
	Colour  string `json:"colour"`
}

// who asks the API who is calling.
func (s *Server) who(r *http.Request) Who {
	var me struct {
		Name       string      `json:"name"`
		Colour     string      `json:"colour"`
		Dependants []Dependant `json:"dependants"`
	}
	_, err := s.api.Do(r, http.MethodGet, "/v1/me", nil, &me)
	var fe *FieldError
	switch {
	case err == nil:
		return Who{Role: "resident", Name: me.Name, Colour: me.Colour, Dependants: me.Dependants}
	case errors.As(err, &fe) && fe.Status == http.StatusForbidden:
		w := s.staffWho(r)
		if w.Role == "resident" {
			// A session that is not a registered resident's yet (an
			// identity provider login without a verified document).
			w.Role = "unbound"
		}
		return w
	}
	return Who{}
}

// staffWho is the navigation's caller on a page that is not a resident's:
// the role of the login (GET /v1/auth/session), or nobody.
func (s *Server) staffWho(r *http.Request) Who {
	var sess struct {
		Role string `json:"role"`
	}
	if _, err := s.api.Do(r, http.MethodGet, "/v1/auth/session", nil, &sess); err != nil {
		return Who{}
	}
	return Who{Role: sess.Role}
}

// render writes page name with data in the caller's language; status is
// the HTTP status (200, or the API's 4xx when a form is shown again with
// its error).
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p Page) {
	t, ok := s.pages[name]
	if !ok {
		s.log.Error("web: no such page template", "page", name)
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	p.Lang = s.i18n.lang(r)
	p.Care = careMode(r)
	if p.Path == "" {
		p.Path = r.URL.Path
	}
	if p.Here == "" {
		p.Here = p.Path
		if r.Method == http.MethodGet {
			q := r.URL.Query()
			q.Del("done")
			if enc := q.Encode(); enc != "" {
				p.Here += "?" + enc
			}
		}
	}
	if p.Flash == "" {
		p.Flash = flashKey(r.URL.Query().Get("done"))
	}
	if p.Flash != "" && !s.i18n.has(p.Flash) {
		p.Flash = "" // a done= nobody wrote a notice for
	}
	loc := s.i18n.localizer(p.Lang)
	t, err := t.Clone()
	if err == nil {
		t = t.Funcs(s.funcs(loc))
		var b strings.Builder
		if err = t.ExecuteTemplate(&b, "layout", p); err == nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store") // pages show personal data
			w.Header().Set("Content-Language", p.Lang)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(b.String()))
			return
		}
	}
	s.log.Error("web: page did not render", "page", name, "err", err)
	http.Error(w, "the page did not render; the server log has the detail", http.StatusInternalServerError)
}

// funcs are the template functions; loc nil gives the parse-time
// placeholders.
func (s *Server) funcs(loc *localizer) template.FuncMap {
	return template.FuncMap{
		// t "key" [name value ...] translates; a missing key renders as
		// ⟦key⟧ and is logged, never a panic.
		"t": func(key string, kv ...any) string {
			if loc == nil {
				return key
			}
			return loc.t(s.log, key, kv...)
		},
		// tn "key" count translates with CLDR plurals.
		"tn": func(key string, n int) string {
			if loc == nil {
				return key
			}
			return loc.plural(s.log, key, n)
		},
		"date": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(displayZone).Format("2006-01-02")
		},
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(displayZone).Format("2006-01-02 15:04")
		},
		"query": url.QueryEscape,
		// idp is the address that starts a login at the identity
		// provider and comes back to the page next.
		"idp": func(next string) string {
			return s.base + "/v1/auth/oidc/login?next=" + url.QueryEscape(next)
		},
		// province is a province's name (GB/T 2260, in Chinese as on the
		// codes themselves), or its code when unknown.
		"province": func(code string) string {
			if n := hcx.ProvinceCode(code).Name(); n != "" {
				return n
			}
			return code
		},
		// key makes an API code (a symptom such as "sore-throat") part
		// of a translation key.
		"key": keyOf,
		// errtext is an API refusal in the reader's language where its
		// code has a translation (err_<code>), else the API's message.
		"errtext": func(e *FieldError) string {
			if e == nil {
				return ""
			}
			if loc != nil && loc.keys["err_"+keyOf(e.Code)] {
				return loc.t(s.log, "err_"+keyOf(e.Code))
			}
			return e.Message
		},
		// fielderr is errtext when e names field, else "".
		"fielderr": func(e *FieldError, field string) string {
			if e == nil || e.Field != field {
				return ""
			}
			if loc != nil && loc.keys["err_"+keyOf(e.Code)] {
				return loc.t(s.log, "err_"+keyOf(e.Code))
			}
			return e.Message
		},
	}
}

// displayZone is the zone of the times pages show: China Standard Time,
// the zone of every province (fixed, so no time zone database is needed).
var displayZone = time.FixedZone("CST", 8*60*60)

// flashKey maps a done= parameter of a redirect (POST/redirect/GET) to the
// translation key of its notice; unknown values show nothing.
func flashKey(done string) string {
	if done == "" {
		return ""
	}
	for _, c := range done {
		if (c < 'a' || c > 'z') && c != '_' {
			return ""
		}
	}
	if len(done) > 40 {
		return ""
	}
	return "done_" + done
}

// redirect answers a form with 303 See Other to path (on this server).
func redirect(w http.ResponseWriter, r *http.Request, path string) {
	http.Redirect(w, r, path, http.StatusSeeOther)
}
