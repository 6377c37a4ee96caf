package hcx

import (
	"errors"
	"fmt"
)

// ErrorCode is a transport-neutral error class. Only the api package maps it to
// an HTTP status.
type ErrorCode string

// Error classes.
const (
	EInvalid       ErrorCode = "invalid"
	ENotFound      ErrorCode = "not_found"
	EConflict      ErrorCode = "conflict"
	EUnauthorized  ErrorCode = "unauthorized"
	EForbidden     ErrorCode = "forbidden"
	ETooLarge      ErrorCode = "too_large"
	EUnprocessable ErrorCode = "unprocessable"
	ETooMany       ErrorCode = "too_many_requests"
	EUnavailable   ErrorCode = "unavailable"
	EInternal      ErrorCode = "internal"
)

// Error is the one typed error of the federation: a class, a stable code that
// clients branch on (such as "token_expired"), the offending field if any, and
// a message for people that says what is wrong and where.
type Error struct {
	Class   ErrorCode
	Code    string
	Field   string
	Message string
	// Detail carries extra machine-readable fields for the wire, such as
	// "expected" on a sequence conflict.
	Detail map[string]any
	Err    error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil && e.Message == "" {
		msg = e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Invalidf returns an EInvalid error about field.
func Invalidf(field, format string, args ...any) *Error {
	return &Error{Class: EInvalid, Code: "invalid_" + fieldCode(field), Field: field, Message: fmt.Sprintf(format, args...)}
}

// Errorf returns an error of the given class and stable code.
func Errorf(class ErrorCode, code, format string, args ...any) *Error {
	return &Error{Class: class, Code: code, Message: fmt.Sprintf(format, args...)}
}

func fieldCode(field string) string {
	if field == "" {
		return "request"
	}
	b := []byte(field)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// ClassOf returns the class of err: the class of the first *Error in its chain,
// EInternal otherwise.
func ClassOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) && e.Class != "" {
		return e.Class
	}
	return EInternal
}

// Sentinels that callers branch on with errors.Is.
var (
	// ErrNotLeader: the hub member is not the Raft leader and could not forward.
	ErrNotLeader = errors.New("not the hub leader")
	// ErrUnknownIssuer: no trusted certificate has the key id.
	ErrUnknownIssuer = errors.New("unknown issuer key")
	// ErrRevoked: the signing key was revoked before the signed time.
	ErrRevoked = errors.New("signing key revoked")
	// ErrNotFound: the thing asked for does not exist.
	ErrNotFound = errors.New("not found")
)
