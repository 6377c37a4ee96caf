package certs

import (
	"fmt"

	"github.com/emmansun/gmsm/smx509"
)

// NewTrustStoreDER is NewTrustStore for a DER-encoded root certificate, so
// that callers need no X.509 package of their own.
func NewTrustStoreDER(der []byte) (*TrustStore, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse root certificate: %w", err)
	}
	return NewTrustStore(c)
}
