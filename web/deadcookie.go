package web

import (
	"context"
	"net/http"
	"sync"
)

// A session the API no longer accepts (ended by a logout elsewhere, revoked
// with its checkpoint code, expired) comes with a 401 that clears its
// cookie. A page reads the API in process, so that clearing reaches the
// browser only if the page passes it on; kept, the dead cookie has every
// next API call refused (session_invalid), the enrolment code's, the
// passkey's and the identity provider's logins too, and the browser cannot
// log in again without clearing cookies by hand. So every page request
// carries a clearingSink, the APICaller puts the cookies of any 401 into it,
// and the page's answer carries them, whatever the page does with the 401
// (a redirect to a login page, who's "nobody", a form shown again).

type sinkKey struct{}

// clearingSink collects the Set-Cookie lines of the API's 401 answers to
// one page request.
type clearingSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *clearingSink) add(lines []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		dup := false
		for _, have := range s.lines {
			dup = dup || have == l
		}
		if !dup {
			s.lines = append(s.lines, l)
		}
	}
}

func (s *clearingSink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lines
	s.lines = nil
	return l
}

// withClearingSink is r with a new sink in its context, and the writer
// that puts what the sink holds on the answer.
func withClearingSink(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	sink := &clearingSink{}
	return &clearingWriter{ResponseWriter: w, sink: sink}, r.WithContext(context.WithValue(r.Context(), sinkKey{}, sink))
}

// passOnClearing puts the cookies of the API's 401 answer rec to the page
// request r into r's sink (none: an APICaller used outside Server).
func passOnClearing(r *http.Request, rec *Recorder) {
	if rec.Status() != http.StatusUnauthorized {
		return
	}
	if sink, ok := r.Context().Value(sinkKey{}).(*clearingSink); ok {
		sink.add(rec.header.Values("Set-Cookie"))
	}
}

// clearingWriter adds the sink's cookies to the headers when the answer
// starts.
type clearingWriter struct {
	http.ResponseWriter
	sink    *clearingSink
	started bool
}

func (c *clearingWriter) start() {
	if c.started {
		return
	}
	c.started = true
	for _, l := range c.sink.take() {
		c.ResponseWriter.Header().Add("Set-Cookie", l)
	}
}

func (c *clearingWriter) WriteHeader(status int) {
	c.start()
	c.ResponseWriter.WriteHeader(status)
}

func (c *clearingWriter) Write(b []byte) (int, error) {
	c.start()
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (c *clearingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
