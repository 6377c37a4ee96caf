package api

import (
	"net/http"
	"time"
)

// Time-outs and limits of every HTTP server the api package's handlers are
// served with (the node API in `hcx node` and `hcx dev`). A connection that
// sends slowly, reads slowly or sits idle is cut off instead of holding a
// goroutine and a socket for as long as the peer likes.
const (
	// DefaultReadHeaderTimeout bounds reading the request line and headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds reading the whole request, body included:
	// the largest body (64 KiB) takes well under a second on any link a
	// bureau uses, so 30 s only cuts off bodies that trickle.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds handling and writing the answer, from the
	// end of the request headers. Node routes answer from local storage.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long a kept-alive connection may wait for
	// its next request.
	DefaultIdleTimeout = 120 * time.Second
	// MaxHeaderBytes bounds the request line and headers: no route needs
	// more than a few hundred bytes of them.
	MaxHeaderBytes = 16 << 10
)

// ServerTimeouts bounds how long one connection may hold a server. Zero
// fields take the defaults above; tests shorten them.
type ServerTimeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
}

// NewServer returns the http.Server every hcx API served by this package's
// handlers runs in: h behind the time-outs t and the header limit.
func NewServer(h http.Handler, t ServerTimeouts) *http.Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Read, DefaultReadTimeout)
	def(&t.ReadHeader, min(DefaultReadHeaderTimeout, t.Read))
	def(&t.Write, DefaultWriteTimeout)
	def(&t.Idle, DefaultIdleTimeout)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
