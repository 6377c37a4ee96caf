package certs

import (
	"encoding/base64"

	"github.com/emmansun/gmsm/smx509"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

type smx509Cert = smx509.Certificate

func parseCert(der []byte) (*smx509.Certificate, error) { return smx509.ParseCertificate(der) }
