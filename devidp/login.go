package devidp

import (
	"html/template"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// maxLoginForm bounds the login form's body.
const maxLoginForm = 4 << 10

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hcx dev identity provider</title></head>
<body>
<h1>hcx dev identity provider</h1>
<p>Development only. The users and their passwords are printed by <code>hcx dev</code>.</p>
{{if .Error}}<p role="alert"><strong>{{.Error}}</strong></p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label>User <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
</body></html>
`))

type loginData struct {
	ID    string
	Error string
}

// login shows the password form (GET) and checks it (POST). On success it
// sends the browser back to the provider's authorize callback, which
// issues the code.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get("authRequestID")
		if _, err := s.store.AuthRequestByID(r.Context(), id); err != nil {
			http.Error(w, "authRequestID: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.renderLogin(w, http.StatusOK, loginData{ID: id})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "the login form is not a valid form of at most 4 KiB", http.StatusBadRequest)
			return
		}
		id := r.PostForm.Get("id")
		name := strings.TrimSpace(r.PostForm.Get("username"))
		err := s.store.checkPassword(id, name, r.PostForm.Get("password"))
		switch {
		case err == errAuthRequestGone:
			http.Error(w, "id: "+err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			s.log.Info("dev login refused")
			s.renderLogin(w, http.StatusUnauthorized, loginData{ID: id, Error: "Unknown user or wrong password."})
			return
		}
		http.Redirect(w, r, op.AuthCallbackURL(s.provider)(r.Context(), id), http.StatusFound)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, d loginData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, d)
}
