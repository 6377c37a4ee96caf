package web

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/policy"
	"github.com/hcxfed/hcx/qrimg"
)

// A resident's pages (issue 16 item 1): the bright code, venue scans,
// reasons and release conditions, dependants, declarations and daily
// check-ins, check history and appeals. Each acts for the resident or, with
// ?sub=, for a dependant they hold (the API decides who may).
func init() {
	addRoutes(
		route{"GET /app/resident", (*Server).resident},
		route{"POST /app/resident/scan", (*Server).scan},
		route{"GET /app/resident/declare", (*Server).declarePage},
		route{"POST /app/resident/declare", (*Server).declare},
		route{"POST /app/resident/checkin", (*Server).checkin},
		route{"GET /app/resident/checks", (*Server).checks},
		route{"GET /app/resident/appeals", (*Server).appealsPage},
		route{"POST /app/resident/appeals", (*Server).fileAppeal},
	)
}

// Bounds of the resident's forms.
const (
	maxFormBody  = 16 << 10 // a form of text fields
	maxPhotoBody = 8 << 20  // a photo of a venue code
	// maxSubject bounds a subject read from a query or a form (they are 26
	// to 52 characters of base32).
	maxSubject = 64
)

// me is GET /v1/me's answer.
type me struct {
	Subject    string      `json:"subject"`
	Name       string      `json:"name"`
	IDTail     string      `json:"id_tail"`
	Colour     string      `json:"colour"`
	Vaccinated bool        `json:"vaccinated"`
	Dependants []Dependant `json:"dependants"`
}

// texts is a text the API gives in the four languages.
type texts struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
	JA string `json:"ja"`
	KO string `json:"ko"`
}

// In is the text in lang, English when that one is empty.
func (t texts) In(lang string) string {
	s := map[string]string{"zh": t.ZH, "en": t.EN, "ja": t.JA, "ko": t.KO}[lang]
	if s == "" {
		return t.EN
	}
	return s
}

// status is the part of GET /v1/residents/{sub} the pages show.
type status struct {
	Colour       string    `json:"colour"`
	Since        time.Time `json:"since"`
	Reasons      []texts   `json:"reasons"`
	ReleaseTexts []texts   `json:"release_texts"`
	Vaccinated   bool      `json:"vaccinated"`
	CheckIn      *struct {
		Due  bool      `json:"due"`
		Last time.Time `json:"last"`
		texts
	} `json:"checkin"`
}

type residentView struct {
	Subject string `json:"subject"`
	Name    string `json:"name"`
	IDTail  string `json:"id_tail"`
	Status  status `json:"status"`
}

type city struct {
	Name string `json:"name"`
	Risk string `json:"risk"`
}

type codeView struct {
	QR        string    `json:"code"`
	Colour    string    `json:"colour"`
	RefreshAt time.Time `json:"refresh_at"`
	Cities    []city    `json:"cities"`
}

// scanResult is the unveiled code after a venue scan.
type scanResult struct {
	Venue struct {
		Name    string `json:"name"`
		DivName string `json:"div_name"`
	} `json:"venue"`
	EnteredAt time.Time `json:"entered_at"`
}

// codePage is what the code page shows.
type codePage struct {
	Me        me
	Sub       string // whose code: the resident's or a dependant's
	Self      bool
	Person    residentView
	Code      codeView
	QRImage   template.URL // data: URI of the QR, built here
	Veiled    bool         // no venue scanned yet: the QR is not shown
	Scan      *scanResult
	Release   []string // release conditions in the page's language
	RefreshIn int      // seconds until the QR is fetched again
}

// subjectParam reads ?sub= (or the form's sub): empty means the resident.
// It bounds and checks it, so it can be put in an API path.
func subjectParam(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) > maxSubject || strings.Trim(v, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return "", &FieldError{Status: http.StatusBadRequest, Code: "invalid_sub", Field: "sub", Message: "sub: a subject is lower-case base32 (a-z, 2-7), at most 64 characters"}
	}
	return v, nil
}

// person loads the caller (GET /v1/me) and whose pages these are.
func (s *Server) person(w http.ResponseWriter, r *http.Request, subValue string) (m me, sub string, ok bool) {
	if !s.need(w, r, s.getJSON(r, "/v1/me", &m)) {
		return m, "", false
	}
	sub, err := subjectParam(subValue)
	if err != nil {
		s.formError(w, r, "error", err)
		return m, "", false
	}
	if sub == "" {
		sub = m.Subject
	}
	return m, sub, true
}

// renderForm renders a page with a form, and the API's refusal of it if
// formErr is one (with its status); any other error is the error page.
func (s *Server) renderForm(w http.ResponseWriter, r *http.Request, name string, page Page, formErr error) {
	status := http.StatusOK
	if formErr != nil {
		var fe *FieldError
		if !errors.As(formErr, &fe) {
			s.formError(w, r, "error", formErr)
			return
		}
		page.Error, status = fe, fe.Status
	}
	s.render(w, r, status, name, page)
}

// personPage is a resident's page at path about sub: after a form's POST
// the switches return to the GET page of the same person.
func personPage(m me, path, sub string, data any) Page {
	p := Page{Who: whoOf(m), Path: path, Data: data}
	if sub != m.Subject {
		p.Here = path + "?sub=" + sub
	}
	return p
}

// whoOf is the navigation's resident.
func whoOf(m me) Who {
	return Who{Role: "resident", Name: m.Name, Colour: m.Colour, Dependants: m.Dependants}
}

// resident is the code page: veiled until a venue is scanned
// (Tianjin-style), or shown at once with ?show=1 for a checkpoint that
// scans the resident.
func (s *Server) resident(w http.ResponseWriter, r *http.Request) {
	m, sub, ok := s.person(w, r, r.URL.Query().Get("sub"))
	if !ok {
		return
	}
	s.codePage(w, r, m, sub, r.URL.Query().Get("show") != "1", nil, nil)
}

// codePage renders the code of sub; scan is the venue just scanned (the
// code is then unveiled), formErr a refused scan.
func (s *Server) codePage(w http.ResponseWriter, r *http.Request, m me, sub string, veiled bool, scan *scanResult, formErr error) {
	p := codePage{Me: m, Sub: sub, Self: sub == m.Subject, Veiled: veiled && scan == nil, Scan: scan}
	if !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub, &p.Person)) {
		return
	}
	if !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub+"/code", &p.Code)) {
		return
	}
	img, err := api.CodeImage(p.Code.QR, "png")
	if err != nil {
		s.formError(w, r, "error", err)
		return
	}
	p.QRImage = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(img))
	p.RefreshIn = int(api.CodeImageMaxAge / time.Second)
	lang := s.i18n.lang(r)
	for _, t := range p.Person.Status.ReleaseTexts {
		p.Release = append(p.Release, t.In(lang))
	}
	s.renderForm(w, r, "resident", personPage(m, "/app/resident", sub, p), formErr)
}

// scan posts a venue code the resident scanned, typed (a scanner app's
// text) or as a photo (decoded here, the node gets the text), and shows
// the code unveiled with the venue and the time of entry.
func (s *Server) scan(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPhotoBody+maxFormBody)
	if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		s.formError(w, r, "error", &FieldError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "photo", Message: "photo: the form is unreadable or over 8 MiB"})
		return
	}
	m, sub, ok := s.person(w, r, r.FormValue("sub"))
	if !ok {
		return
	}
	code := strings.TrimSpace(r.FormValue("code"))
	if f, _, err := r.FormFile("photo"); err == nil {
		text, derr := qrimg.Decode(f, maxPhotoBody)
		f.Close()
		if derr != nil {
			s.codePage(w, r, m, sub, true, nil, &FieldError{Status: http.StatusUnprocessableEntity, Code: "no_code_in_photo", Field: "photo", Message: "photo: no QR code could be read in it"})
			return
		}
		code = text
	}
	if code == "" {
		s.codePage(w, r, m, sub, true, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_code", Field: "venue_code", Message: "code: scan or paste the venue code"})
		return
	}
	var res scanResult
	if _, err := s.api.Do(r, http.MethodPost, "/v1/residents/"+sub+"/scans", map[string]string{"code": code}, &res); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && (fe.Field == "" || fe.Field == "code") {
			c := *fe
			c.Field = "venue_code"
			err = &c
		}
		s.codePage(w, r, m, sub, true, nil, err)
		return
	}
	s.codePage(w, r, m, sub, false, &res, nil)
}

// declarationsView is GET .../declarations.
type declarationsView struct {
	Health []struct {
		At       time.Time `json:"at"`
		TempC    float64   `json:"temp_c"`
		Symptoms []string  `json:"symptoms"`
	} `json:"health"`
	CheckIns []struct {
		At       time.Time `json:"at"`
		TempC    float64   `json:"temp_c"`
		Symptoms []string  `json:"symptoms"`
	} `json:"checkins"`
}

type declarePage struct {
	Sub      string
	Self     bool
	Person   residentView
	Symptoms []string
	List     declarationsView
}

func (s *Server) declarePage(w http.ResponseWriter, r *http.Request) {
	s.showDeclare(w, r, r.URL.Query().Get("sub"), nil)
}

func (s *Server) showDeclare(w http.ResponseWriter, r *http.Request, subValue string, formErr error) {
	m, sub, ok := s.person(w, r, subValue)
	if !ok {
		return
	}
	p := declarePage{Sub: sub, Self: sub == m.Subject, Symptoms: policy.Symptoms()}
	if !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub, &p.Person)) || !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub+"/declarations", &p.List)) {
		return
	}
	s.renderForm(w, r, "declare", personPage(m, "/app/resident/declare", sub, p), formErr)
}

// formSubject is whose a posted form is: its sub, checked, or the
// resident's own subject.
func (s *Server) formSubject(r *http.Request, v string) (string, error) {
	sub, err := subjectParam(v)
	if err != nil || sub != "" {
		return sub, err
	}
	var m me
	if err := s.getJSON(r, "/v1/me", &m); err != nil {
		return "", err
	}
	return m.Subject, nil
}

// loginNeeded sends a browser whose session is gone to the login page and
// says so.
func loginNeeded(w http.ResponseWriter, r *http.Request, err error) bool {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
		redirect(w, r, "/app/login?done=login_needed")
		return true
	}
	return false
}

// healthForm reads a temperature and symptoms from a declaration or
// check-in form.
func healthForm(w http.ResponseWriter, r *http.Request) (temp float64, symptoms []string, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		return 0, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_form", Message: "the form is unreadable or over 16 KiB"}
	}
	if v := strings.TrimSpace(r.PostForm.Get("temp_c")); v != "" {
		temp, err = strconv.ParseFloat(strings.Replace(v, ",", ".", 1), 64)
		if err != nil {
			return 0, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_temp_c", Field: "temp_c", Message: "temp_c: a temperature in °C, such as 36.6"}
		}
	}
	symptoms = r.PostForm["symptoms"]
	if len(symptoms) > len(policy.Symptoms()) {
		return 0, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_symptoms", Field: "symptoms", Message: "symptoms: too many"}
	}
	return temp, symptoms, nil
}

// declare files a health declaration; ticking no symptom declares "no
// symptoms" (an empty list, as the API reads it).
func (s *Server) declare(w http.ResponseWriter, r *http.Request) {
	s.postHealth(w, r, "/declarations", "done=declared", true)
}

// checkin files the daily check-in of a red or yellow resident.
func (s *Server) checkin(w http.ResponseWriter, r *http.Request) {
	s.postHealth(w, r, "/checkins", "done=checked_in", false)
}

// postHealth posts a health form to the API path of the resident and
// redirects with the notice done ("done=<notice>").
func (s *Server) postHealth(w http.ResponseWriter, r *http.Request, path, done string, declaration bool) {
	temp, symptoms, err := healthForm(w, r)
	sub := r.PostForm.Get("sub")
	if err == nil {
		sub, err = s.formSubject(r, sub)
	}
	if err == nil {
		body := map[string]any{}
		if symptoms != nil {
			body["symptoms"] = symptoms
		} else if declaration {
			body["symptoms"] = []string{} // "no symptoms"
		}
		if temp != 0 {
			body["temp_c"] = temp
		}
		_, err = s.api.Do(r, http.MethodPost, "/v1/residents/"+sub+path, body, nil)
	}
	if err != nil {
		if !loginNeeded(w, r, err) {
			s.showDeclare(w, r, sub, err)
		}
		return
	}
	redirect(w, r, "/app/resident/declare?sub="+sub+"&"+done)
}

type checkView struct {
	At       time.Time `json:"at"`
	Province string    `json:"province"`
	Unit     string    `json:"unit"`
	Role     string    `json:"role"`
	Colour   string    `json:"colour"`
}

type checksPage struct {
	Sub    string
	Self   bool
	Person residentView
	Checks []checkView
	Next   string // cursor of older checks, if any
	Days   int
}

// checksPerPage is how many checks the history shows at once.
const checksPerPage = 50

// checks is the check history: who checked the code, when, and the
// colour they saw, for the last 30 days (the node keeps no more).
func (s *Server) checks(w http.ResponseWriter, r *http.Request) {
	m, sub, ok := s.person(w, r, r.URL.Query().Get("sub"))
	if !ok {
		return
	}
	var page struct {
		Checks []checkView `json:"checks"`
		Next   string      `json:"next"`
		Days   int         `json:"retention_days"`
	}
	// after is the API's cursor (hex) of an older page.
	after := r.URL.Query().Get("after")
	if len(after) > 256 || strings.Trim(after, "0123456789abcdef") != "" {
		s.formError(w, r, "error", &FieldError{Status: http.StatusBadRequest, Code: "invalid_after", Field: "after", Message: "after: a cursor from the previous page"})
		return
	}
	q := "?limit=" + strconv.Itoa(checksPerPage)
	if after != "" {
		q += "&after=" + after
	}
	p := checksPage{Sub: sub, Self: sub == m.Subject}
	if !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub, &p.Person)) || !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub+"/checks"+q, &page)) {
		return
	}
	p.Checks, p.Next, p.Days = page.Checks, page.Next, page.Days
	s.render(w, r, http.StatusOK, "checks", Page{Who: whoOf(m), Data: p})
}

type appealView struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Text       string    `json:"text"`
	Status     string    `json:"status"`
	StatusText texts     `json:"status_text"`
	Filed      time.Time `json:"filed"`
	Reason     string    `json:"reason"`
}

type appealsPage struct {
	Sub     string
	Self    bool
	Person  residentView
	Appeals []appealView
}

func (s *Server) appealsPage(w http.ResponseWriter, r *http.Request) {
	s.showAppeals(w, r, r.URL.Query().Get("sub"), nil)
}

func (s *Server) showAppeals(w http.ResponseWriter, r *http.Request, subValue string, formErr error) {
	m, sub, ok := s.person(w, r, subValue)
	if !ok {
		return
	}
	var list struct {
		Appeals []appealView `json:"appeals"`
	}
	p := appealsPage{Sub: sub, Self: sub == m.Subject}
	if !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub, &p.Person)) || !s.need(w, r, s.getJSON(r, "/v1/residents/"+sub+"/appeals", &list)) {
		return
	}
	p.Appeals = list.Appeals
	s.renderForm(w, r, "appeals", personPage(m, "/app/resident/appeals", sub, p), formErr)
}

// fileAppeal files an appeal against the colour with the resident's text.
func (s *Server) fileAppeal(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over 16 KiB", http.StatusBadRequest)
		return
	}
	sub, err := s.formSubject(r, r.PostForm.Get("sub"))
	if err == nil {
		_, err = s.api.Do(r, http.MethodPost, "/v1/residents/"+sub+"/appeals", map[string]string{"kind": "colour", "text": strings.TrimSpace(r.PostForm.Get("text"))}, nil)
	}
	if err != nil {
		if !loginNeeded(w, r, err) {
			s.showAppeals(w, r, r.PostForm.Get("sub"), err)
		}
		return
	}
	redirect(w, r, "/app/resident/appeals?sub="+sub+"&done=appeal_filed")
}
