package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"unicode/utf8"

	"github.com/hcxfed/hcx"
)

// Request is what the audit trail records about the request a principal
// acted in, besides the principal: an id to find it in the logs, and why
// the caller says they acted.
type Request struct {
	// ID names the request (the caller's X-Request-ID if it is sane, a
	// random one otherwise); the server echoes it in its answer.
	ID string `json:"request_id,omitempty"`
	// Reason is the caller's X-HCX-Reason header: free text, at most
	// MaxReason characters, never a resident's name or document (it is not
	// checked for that: operators are told so).
	Reason string `json:"why,omitempty"`
}

// Headers a request names itself and its reason with.
const (
	HeaderRequestID = "X-Request-ID"
	HeaderReason    = "X-HCX-Reason"
)

// MaxReason bounds a reason, in characters.
const MaxReason = 500

// maxRequestID bounds a caller's request id; a longer or odd one is
// replaced, not refused (it is for the caller's convenience).
const maxRequestID = 64

type requestKey struct{}

// WithRequest returns ctx carrying req.
func WithRequest(ctx context.Context, req Request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

// RequestFrom returns the request information in ctx, empty if none.
func RequestFrom(ctx context.Context) Request {
	req, _ := ctx.Value(requestKey{}).(Request)
	return req
}

// ReadRequest reads the request id and the reason of r. A reason that is
// too long, not UTF-8 or carries control characters is an EInvalid error
// naming the header, so that nothing is recorded that the caller did not
// mean.
func ReadRequest(r *http.Request) (Request, error) {
	req := Request{ID: r.Header.Get(HeaderRequestID)}
	if !saneID(req.ID) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		req.ID = hex.EncodeToString(b[:])
	}
	vs := r.Header.Values(HeaderReason)
	if len(vs) > 1 {
		return req, badReason("send one %s header, not %d", HeaderReason, len(vs))
	}
	if len(vs) == 1 {
		why := vs[0]
		if !utf8.ValidString(why) {
			return req, badReason("the reason is not UTF-8")
		}
		if n := utf8.RuneCountInString(why); n > MaxReason {
			return req, badReason("the reason has %d characters; at most %d", n, MaxReason)
		}
		for _, c := range why {
			if c < 0x20 || c == 0x7f {
				return req, badReason("the reason carries a control character")
			}
		}
		req.Reason = why
	}
	return req, nil
}

func saneID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// badReason is the error about a request's reason header.
func badReason(format string, args ...any) *hcx.Error {
	e := hcx.Invalidf(HeaderReason, format, args...)
	e.Code = "invalid_reason"
	return e
}
