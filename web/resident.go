package web

import "net/http"

// A resident's pages (issue 16 item 1).
func init() {
	addRoutes(
		route{"GET /app/resident", (*Server).resident},
	)
}

// me is GET /v1/me's answer.
type me struct {
	Subject    string      `json:"subject"`
	Name       string      `json:"name"`
	IDTail     string      `json:"id_tail"`
	Colour     string      `json:"colour"`
	Vaccinated bool        `json:"vaccinated"`
	Dependants []Dependant `json:"dependants"`
}

// resident is the resident's code page.
func (s *Server) resident(w http.ResponseWriter, r *http.Request) {
	var m me
	if !s.need(w, r, s.getJSON(r, "/v1/me", &m)) {
		return
	}
	s.render(w, r, http.StatusOK, "resident", Page{Who: Who{Role: "resident", Name: m.Name, Colour: m.Colour, Dependants: m.Dependants}, Data: m})
}
