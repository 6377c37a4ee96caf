package auth

import (
	"net/http"

	"github.com/hcxfed/hcx"
)

// Authenticator reads one kind of credential from a request. It returns
// (nil, nil) when the request carries none of its kind, and an *hcx.Error of
// class EUnauthorized when it carries one that does not check out (the
// request is then refused, never served as anonymous).
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (*Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*Principal, error) { return f(r) }

// Chain tries each authenticator. A request that carries no credential is
// anonymous; one that carries two kinds (say a session cookie and a request
// token) is refused, so that a request has exactly one reading.
type Chain []Authenticator

// Authenticate implements Authenticator; it never returns (nil, nil).
func (c Chain) Authenticate(r *http.Request) (*Principal, error) {
	var found *Principal
	for _, a := range c {
		if a == nil {
			continue
		}
		p, err := a.Authenticate(r)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue
		}
		if found != nil {
			return nil, hcx.Errorf(hcx.EUnauthorized, "ambiguous_credentials", "the request carries credentials of two kinds (%s and %s); send one", found.Method, p.Method)
		}
		found = p
	}
	if found == nil {
		return Anonymous, nil
	}
	return found, nil
}
