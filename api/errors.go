// Package api is the HTTP face of hcx: the hub's routes (PROTOCOL.md §5), the
// province node's routes, health and metrics. It is the only package that maps
// errors to HTTP statuses.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/hcxfed/hcx"
)

// statusOf maps an error class to an HTTP status.
func statusOf(c hcx.ErrorCode) int {
	switch c {
	case hcx.EInvalid:
		return http.StatusBadRequest
	case hcx.ENotFound:
		return http.StatusNotFound
	case hcx.EConflict:
		return http.StatusConflict
	case hcx.EUnauthorized:
		return http.StatusUnauthorized
	case hcx.EForbidden:
		return http.StatusForbidden
	case hcx.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case hcx.EUnprocessable:
		return http.StatusUnprocessableEntity
	case hcx.ETooMany:
		return http.StatusTooManyRequests
	case hcx.EUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// RetryAfterDetail is the hcx.Error Detail key that WriteError turns into a
// Retry-After header (seconds, an int).
const RetryAfterDetail = "retry_after"

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes err as {"error":{"code","message",...}} with the status of
// its class. Errors that are not *hcx.Error are logged once here and shown as
// "internal error", so no internal detail leaks. An error whose Detail has
// "retry_after" (whole seconds, an int) also sets the Retry-After header:
// rate limits, load shedding and the node's back-pressure all answer so.
func WriteError(w http.ResponseWriter, log *slog.Logger, err error) {
	e, body := errorMember(log, err)
	if s, ok := e.Detail[RetryAfterDetail].(int); ok && s > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s))
	}
	WriteJSON(w, statusOf(e.Class), map[string]any{"error": body})
}

// errorMember is the member "error" of WriteError's answer to err, and err
// as an *hcx.Error (internal errors logged once and hidden). Batch answers
// use it for their per-item errors.
func errorMember(log *slog.Logger, err error) (*hcx.Error, map[string]any) {
	var e *hcx.Error
	if !errors.As(err, &e) {
		if log != nil {
			log.Error("internal error", "err", err)
		}
		e = &hcx.Error{Class: hcx.EInternal, Code: "internal", Message: "internal error; the server log has the detail"}
	}
	body := map[string]any{"code": e.Code, "message": e.Error()}
	if e.Field != "" {
		body["field"] = e.Field
	}
	for k, v := range e.Detail {
		body[k] = v
	}
	return e, body
}

// ReadBody reads a request body of at most limit bytes. A larger body is an
// ETooLarge error that says the limit.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, hcx.Errorf(hcx.ETooLarge, "too_large", "request body is over the limit of %d bytes", limit)
		}
		return nil, hcx.Errorf(hcx.EInvalid, "bad_body", "could not read the request body: %v", err)
	}
	return b, nil
}

// ItemError is err as a batch answer's per-item error line ({"error":…},
// no newline): what `hcx verify` prints for a code it refuses offline.
func ItemError(err error) []byte {
	_, body := errorMember(nil, err)
	return marshalItem(map[string]any{"error": body})
}
