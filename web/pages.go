package web

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// The foundation's pages: the home page (choose who you are), the switches
// (language, elderly mode), a resident's login (passkey or enrolment code),
// logout and a resident's passkeys.
func init() {
	addRoutes(
		route{"GET /app/{$}", (*Server).home},
		route{"POST /app/prefs", (*Server).prefs},
		route{"GET /app/login", (*Server).login},
		route{"POST /app/login/enrol", (*Server).enrol},
		route{"POST /app/logout", (*Server).logout},
		route{"GET /app/resident/passkeys", (*Server).passkeys},
	)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "home", Page{Who: s.who(r)})
}

// prefsMaxAge is how long the language and elderly-mode choices last.
const prefsMaxAge = 365 * 24 * time.Hour

// prefs stores the language or elderly-mode choice of the switches on
// every page in a cookie and returns to the page (next, a path under
// /app/). Nothing else is accepted: a switch is no open redirect.
func (s *Server) prefs(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over 4 KiB", http.StatusBadRequest)
		return
	}
	set := func(name, value string) {
		http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(prefsMaxAge / time.Second), SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	}
	if lang := r.PostForm.Get("lang"); lang != "" {
		if !validLang(lang) {
			http.Error(w, "lang: want one of zh, en, ja, ko", http.StatusBadRequest)
			return
		}
		set(LangCookie, lang)
	}
	switch r.PostForm.Get("care") {
	case "":
	case "1", "0":
		set(CareCookie, r.PostForm.Get("care"))
	default:
		http.Error(w, "care: want 1 or 0", http.StatusBadRequest)
		return
	}
	redirect(w, r, pagePath(r.PostForm.Get("next")))
}

// pagePath is next if it is a page of this server, else the home page.
func pagePath(next string) string {
	if !strings.HasPrefix(next, Prefix) || len(next) > 512 || strings.ContainsAny(next, "\\\r\n") || strings.Contains(next, "//") {
		return Prefix
	}
	return next
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", Page{Who: s.who(r)})
}

// enrol starts a resident's first session with the enrolment code an
// operator handed out, then offers to add a passkey.
func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over 4 KiB", http.StatusBadRequest)
		return
	}
	rec, err := s.api.Serve(r, http.MethodPost, "/v1/auth/enrol", map[string]string{"code": strings.TrimSpace(r.PostForm.Get("code"))})
	if err == nil {
		_, err = rec.Decode(nil)
	}
	if err != nil {
		s.formErrorAt(w, r, "login", "/app/login", codeField(err, "enrolment_code", "code"))
		return
	}
	rec.Forward(w)
	redirect(w, r, "/app/resident/passkeys?done=enrolled")
}

// formError shows a form again with the API's refusal (its status), or
// 500 for anything else.
func (s *Server) formError(w http.ResponseWriter, r *http.Request, page string, err error) {
	s.formErrorAt(w, r, page, "", err)
}

// formErrorAt is formError for a page whose GET path is path (where the
// switches return).
func (s *Server) formErrorAt(w http.ResponseWriter, r *http.Request, page, path string, err error) {
	var fe *FieldError
	if !errors.As(err, &fe) {
		s.log.Error("web: API call failed", "page", page, "err", err)
		fe = &FieldError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	s.render(w, r, fe.Status, page, Page{Who: s.who(r), Path: path, Error: fe})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	rec, err := s.api.Serve(r, http.MethodPost, "/v1/auth/logout", nil)
	if err == nil {
		rec.Forward(w)
	}
	redirect(w, r, "/app/?done=logged_out")
}

// passkeyView is a passkey as GET /v1/auth/passkeys lists it.
type passkeyView struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
}

// passkeys lists the resident's passkeys and offers to add one (app.js
// runs the ceremony against /v1/auth/passkeys/register/*).
func (s *Server) passkeys(w http.ResponseWriter, r *http.Request) {
	var list struct {
		Passkeys []passkeyView `json:"passkeys"`
	}
	if !s.need(w, r, s.getJSON(r, "/v1/auth/passkeys", &list)) {
		return
	}
	s.render(w, r, http.StatusOK, "passkeys", Page{Who: s.who(r), Data: list.Passkeys})
}

func (s *Server) getJSON(r *http.Request, path string, out any) error {
	_, err := s.api.Do(r, http.MethodGet, path, nil, out)
	return err
}

// need handles the error of a page's read: not logged in sends the
// browser to the login page; any other refusal is shown on the error page.
// It reports whether the page may go on.
func (s *Server) need(w http.ResponseWriter, r *http.Request, err error) bool {
	if err == nil {
		return true
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
		redirect(w, r, "/app/login?done=login_needed")
		return false
	}
	s.formError(w, r, "error", err)
	return false
}

// codeField puts an API refusal whose code starts with prefix and names no
// field next to the form's input field (an unknown enrolment code is about
// the code typed).
func codeField(err error, prefix, field string) error {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field == "" && strings.HasPrefix(fe.Code, prefix) {
		c := *fe
		c.Field = field
		return &c
	}
	return err
}

// translatedErrors are the API error codes the pages translate (as
// err_<code>); others show the API's English message.
var translatedErrors = []string{
	"invalid_code", "enrolment_code_unknown", "enrolment_code_used", "enrolment_code_expired",
	"unauthenticated", "forbidden_role", "not_yours", "rate_limited", "internal",
	"invalid_temp_c", "invalid_text", "no_code_in_photo",
}
