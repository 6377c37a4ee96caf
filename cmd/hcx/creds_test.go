package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// Callers of the end-to-end tests prove themselves the way real ones do:
// operators and the auditor with ID tokens from the dev identity provider
// (the real authorization code flow with PKCE), machines with SM2 request
// tokens signed by the dev CA's certificates, residents with the session
// cookie an enrolment code starts.

// caller adds one caller's credentials to a request whose body is body.
type caller struct {
	name string
	sign func(t testing.TB, req *http.Request, body []byte)
}

// anonymous sends no credentials.
var anonymous = caller{name: "anonymous", sign: func(testing.TB, *http.Request, []byte) {}}

var tokenCache sync.Map // issuer+user -> ID token

// asPerson is a dev identity provider user (operator-<code>, auditor or a
// resident) with a bearer ID token; operators say why in X-HCX-Reason.
func (f *federation) asPerson(t testing.TB, user string) caller {
	t.Helper()
	var u *devidp.User
	for _, x := range f.IdP.Users() {
		if x.Name == user {
			u = &x
		}
	}
	if u == nil {
		t.Fatalf("no dev user %q", user)
	}
	key := f.IdP.Issuer() + "#" + user
	tok, ok := tokenCache.Load(key)
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := devidp.FetchToken(ctx, nil, f.IdP.Issuer(), u.Name, u.Password)
		if err != nil {
			t.Fatalf("log %s in at the dev identity provider: %v", user, err)
		}
		tokenCache.Store(key, s)
		tok = s
	}
	return caller{name: user, sign: func(_ testing.TB, req *http.Request, _ []byte) {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
		req.Header.Set(auth.HeaderReason, "end-to-end test")
	}}
}

// asOperator is province p's dev operator.
func (f *federation) asOperator(t testing.TB, p hcx.ProvinceCode) caller {
	return f.asPerson(t, devidp.OperatorName(p))
}

// asMachine signs each request with s.
func (f *federation) asMachine(name string, s *certs.Signer) caller {
	return caller{name: name, sign: func(t testing.TB, req *http.Request, body []byte) {
		if err := auth.SignRequest(req, body, s, f.Now()); err != nil {
			t.Fatalf("sign as %s: %v", name, err)
		}
	}}
}

func (f *federation) asFeed(p hcx.ProvinceCode) caller {
	return f.asMachine("feed-"+string(p), f.PKI.Feeds[p])
}

func (f *federation) asCheckpoint(p hcx.ProvinceCode) caller {
	return f.asMachine("checkpoint-"+string(p), f.PKI.Checkpoints[p])
}

// asResident enrols reg at province p's node the way a person does: an
// operator checks them in person and hands out an enrolment code (which
// registers them if new), and the code starts their first session. It
// returns the subject and the caller carrying the session cookie.
func (f *federation) asResident(t testing.TB, p hcx.ProvinceCode, reg map[string]string) (hcx.Subject, caller) {
	t.Helper()
	var e struct {
		Code    string      `json:"code"`
		Subject hcx.Subject `json:"subject"`
	}
	if st := callAs(t, f.client(), f.asOperator(t, p), "POST", f.NodeURLs[p]+"/v1/enrolments", reg, &e); st != http.StatusCreated {
		t.Fatalf("enrolment code for a resident of %s: status %d", p, st)
	}
	jar, _ := cookiejar.New(nil)
	hc := *f.client()
	hc.Jar = jar
	var got struct {
		Subject hcx.Subject `json:"subject"`
	}
	if st := callAs(t, &hc, anonymous, "POST", f.NodeURLs[p]+"/v1/auth/enrol", map[string]string{"code": e.Code}, &got); st != http.StatusOK || got.Subject != e.Subject {
		t.Fatalf("enrol with the code: status %d, subject %q want %q", st, got.Subject, e.Subject)
	}
	return e.Subject, caller{name: "resident " + string(e.Subject)[:8], sign: func(t testing.TB, req *http.Request, _ []byte) {
		for _, c := range jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
	}}
}

func (f *federation) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return http.DefaultClient
}

// callAs sends a JSON request as who and decodes the JSON answer into out.
func callAs(t testing.TB, hc *http.Client, who caller, method, url string, body any, out any) int {
	t.Helper()
	var b []byte
	if body != nil {
		if s, ok := body.(string); ok {
			b = []byte(s)
		} else {
			b, _ = json.Marshal(body)
		}
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	who.sign(t, req, b)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, url, who.name, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("%s %s as %s: answer %q: %v", method, url, who.name, rb, err)
		}
	} else if out != nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(rb, out)
	}
	return resp.StatusCode
}
