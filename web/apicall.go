package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxAPIAnswer bounds what a page reads of one API answer: pages show
// people's own records, never bulk data.
const maxAPIAnswer = 8 << 20

// APICaller sends a page's request into the node's JSON API in process.
type APICaller struct {
	Handler http.Handler
	// Lang, if set, is the page's language, sent as Accept-Language so
	// that the API's texts (a refused venue code) match the page.
	Lang func(*http.Request) string
}

// FieldError is the API's refusal as a page shows it: the error code (to
// translate where known), the field it names (to show it next to that
// input) and the API's English message (shown when the code has no
// translation).
type FieldError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%d %s (%s): %s", e.Status, e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Do clones the browser's request r (its cookies, headers, remote address
// and context: the API authenticates, authorises and rate-limits it as it
// would the browser) with a new method, path (which may hold a query) and
// JSON body, serves it with the API handler, and decodes a 2xx JSON answer
// into out (nil: ignore it). It returns the status, and for a 4xx or 5xx
// the API's error as a *FieldError. Cookies the API sets (a session that
// starts or ends) are copied by Forward, except that those of a 401 (a dead
// session's cookie cleared) reach the page's answer on their own
// (deadcookie.go).
func (c *APICaller) Do(r *http.Request, method, path string, body, out any) (int, error) {
	rec, err := c.Serve(r, method, path, body)
	if err != nil {
		return 0, err
	}
	return rec.Decode(out)
}

// Serve is Do's first half: it returns the API's whole answer.
func (c *APICaller) Serve(r *http.Request, method, path string, body any) (*Recorder, error) {
	if body == nil {
		return c.ServeRaw(r, method, path, "", nil), nil
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return c.ServeRaw(r, method, path, "application/json", raw), nil
}

// ServeRaw is Serve with a body that is not JSON (a photo of a code for
// POST /v1/verify): raw, of type contentType; "" sends no body.
func (c *APICaller) ServeRaw(r *http.Request, method, path, contentType string, raw []byte) *Recorder {
	body := contentType != ""
	req := r.Clone(r.Context())
	req.Method = method
	p, q, _ := strings.Cut(path, "?")
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = p, "", q
	req.RequestURI = ""
	req.Header = r.Header.Clone()
	req.Header.Del("Content-Length")
	// The API answers JSON; the browser asked for HTML.
	req.Header.Set("Accept", "application/json")
	if c.Lang != nil {
		req.Header.Set("Accept-Language", c.Lang(r))
	}
	if body {
		req.Header.Set("Content-Type", contentType)
		req.Body = io.NopCloser(bytes.NewReader(raw))
		req.ContentLength = int64(len(raw))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	} else {
		req.Header.Del("Content-Type")
		req.Body = http.NoBody
		req.ContentLength = 0
		req.GetBody = nil
	}
	rec := &Recorder{header: http.Header{}}
	c.Handler.ServeHTTP(rec, req)
	passOnClearing(r, rec)
	return rec
}

// Recorder is an in-memory http.ResponseWriter holding at most
// maxAPIAnswer bytes.
type Recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	over   bool
}

func (r *Recorder) Header() http.Header { return r.header }

func (r *Recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *Recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > maxAPIAnswer {
		r.over = true
		return 0, fmt.Errorf("web: the API's answer is over %d bytes", maxAPIAnswer)
	}
	return r.body.Write(b)
}

// Status is the answer's status.
func (r *Recorder) Status() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// Body is the answer's body.
func (r *Recorder) Body() []byte { return r.body.Bytes() }

// Decode reads a 2xx JSON answer into out (nil: ignore it); another status
// is a *FieldError.
func (r *Recorder) Decode(out any) (int, error) {
	st := r.Status()
	if r.over {
		return st, fmt.Errorf("web: the API's answer is over %d bytes", maxAPIAnswer)
	}
	if st >= 300 {
		var e struct {
			Error FieldError `json:"error"`
		}
		if err := json.Unmarshal(r.body.Bytes(), &e); err != nil || e.Error.Code == "" {
			e.Error = FieldError{Code: "http_" + strconv.Itoa(st), Message: http.StatusText(st)}
		}
		e.Error.Status = st
		return st, &e.Error
	}
	if out != nil {
		if err := json.Unmarshal(r.body.Bytes(), out); err != nil {
			return st, fmt.Errorf("web: decode the API's answer: %w", err)
		}
	}
	return st, nil
}

// Forward copies the cookies the API set (a session started by an
// enrolment code, cleared by a logout) onto the page's answer.
func (r *Recorder) Forward(w http.ResponseWriter) {
	for _, c := range r.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", c)
	}
}
