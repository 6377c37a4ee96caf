package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// A venue manager's pages (issue 16 item 3): a resident who runs a venue
// applies for its venue code, follows the review, and downloads and
// prints the code. Everything goes through the API's
// /v1/residents/{sub}/venues routes (ScopeSelf: a manager acts as
// themselves, never for a dependant); the code image is the API's own
// (?format=png or svg), which the browser fetches with its session.
func init() {
	addRoutes(
		route{"GET /app/venue", (*Server).venueHome},
		route{"GET /app/venues", (*Server).venues},
		route{"POST /app/venues", (*Server).venueApply},
		route{"GET /app/venues/{vid}/print", (*Server).venuePrint},
	)
}

// venueCategory is a category as GET /v1/venue-categories lists it.
type venueCategory struct {
	ID     string `json:"id"`
	Zh     string `json:"zh"`
	En     string `json:"en"`
	Mobile bool   `json:"mobile"`
}

// venueStep is an operator's review or retirement.
type venueStep struct {
	At       time.Time `json:"at"`
	Decision string    `json:"decision"`
	Reason   string    `json:"reason"`
}

// venue is a venue as the API answers it.
type venue struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Division string     `json:"division"`
	Category string     `json:"category"`
	Unit     string     `json:"unit"`
	USCC     string     `json:"uscc"`
	State    string     `json:"state"`
	Applied  time.Time  `json:"applied"`
	Reviewed *venueStep `json:"reviewed"`
	Retired  *venueStep `json:"retired"`
}

// venueView is a venue with its category's name in the page's language
// and the addresses of its code.
type venueView struct {
	venue
	CategoryName string
	PNG, SVG     string // the API's code image routes
}

// venuesPage is the venue manager page's data.
type venuesPage struct {
	Categories []venueCategory
	Venues     []venueView
	Form       url.Values // the application shown again with its error
}

// categoryName is a category's name in lang: the categories carry Chinese
// and English only (node/venues.go), so Japanese and Korean read English.
func categoryName(c venueCategory, lang string) string {
	if lang == "zh" && c.Zh != "" {
		return c.Zh
	}
	return c.En
}

// venueHome is the home page's link (/app/venue) to the manager's page.
func (s *Server) venueHome(w http.ResponseWriter, r *http.Request) {
	redirect(w, r, "/app/venues")
}

// venuesData reads the categories and the caller's venues; the caller must
// be a resident (need sends anyone else to log in).
func (s *Server) venuesData(w http.ResponseWriter, r *http.Request) (*me, *venuesPage, bool) {
	var m me
	if !s.need(w, r, s.getJSON(r, "/v1/me", &m)) {
		return nil, nil, false
	}
	var cats struct {
		Categories []venueCategory `json:"categories"`
	}
	var list struct {
		Venues []venue `json:"venues"`
	}
	if !s.need(w, r, s.getJSON(r, "/v1/venue-categories", &cats)) || !s.need(w, r, s.getJSON(r, "/v1/residents/"+m.Subject+"/venues", &list)) {
		return nil, nil, false
	}
	lang := s.i18n.lang(r)
	p := &venuesPage{Categories: cats.Categories}
	names := map[string]string{}
	for _, c := range cats.Categories {
		names[c.ID] = categoryName(c, lang)
	}
	for i := len(list.Venues) - 1; i >= 0; i-- { // newest first
		v := list.Venues[i]
		code := "/v1/residents/" + m.Subject + "/venues/" + url.PathEscape(v.ID) + "/code?format="
		p.Venues = append(p.Venues, venueView{venue: v, CategoryName: names[v.Category], PNG: code + "png", SVG: code + "svg"})
	}
	return &m, p, true
}

func (s *Server) venues(w http.ResponseWriter, r *http.Request) {
	m, p, ok := s.venuesData(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "venues", Page{Who: Who{Role: "resident", Name: m.Name, Colour: m.Colour, Dependants: m.Dependants}, Data: p})
}

// venueApply files an application (POST /v1/residents/{sub}/venues) and
// shows it under review; a refusal shows the form again with the error
// next to the field the API names.
func (s *Server) venueApply(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over 8 KiB", http.StatusBadRequest)
		return
	}
	var m me
	if !s.need(w, r, s.getJSON(r, "/v1/me", &m)) {
		return
	}
	f := r.PostForm
	app := map[string]string{"name": strings.TrimSpace(f.Get("name")), "division": strings.TrimSpace(f.Get("division")),
		"category": f.Get("category"), "uscc": strings.ToUpper(strings.TrimSpace(f.Get("uscc")))}
	if u := strings.TrimSpace(f.Get("unit")); u != "" {
		app["unit"] = u
	}
	_, err := s.api.Do(r, http.MethodPost, "/v1/residents/"+m.Subject+"/venues", app, nil)
	if err == nil {
		redirect(w, r, "/app/venues?done=venue_applied")
		return
	}
	fe, ok := err.(*FieldError)
	if !ok {
		s.formError(w, r, "venues", err)
		return
	}
	_, p, ok := s.venuesData(w, r)
	if !ok {
		return
	}
	p.Form = f
	s.render(w, r, fe.Status, "venues", Page{Who: Who{Role: "resident", Name: m.Name, Colour: m.Colour, Dependants: m.Dependants}, Error: fe, Data: p})
}

// venuePrint is a passed venue's code to print: the code big, the venue's
// name under it (venues.css's print rules drop everything else).
func (s *Server) venuePrint(w http.ResponseWriter, r *http.Request) {
	m, p, ok := s.venuesData(w, r)
	if !ok {
		return
	}
	vid := r.PathValue("vid")
	for _, v := range p.Venues {
		if v.ID == vid && v.State == "passed" {
			s.render(w, r, http.StatusOK, "venues-print", Page{Who: Who{Role: "resident", Name: m.Name, Colour: m.Colour}, Data: v})
			return
		}
	}
	s.formError(w, r, "error", &FieldError{Status: http.StatusNotFound, Code: "venue_not_passed", Message: "no passed venue " + vid + " of yours"})
}
