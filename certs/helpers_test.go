package certs

import (
	"encoding/base64"
	"encoding/pem"

	"github.com/hcxfed/hcx"

	"github.com/emmansun/gmsm/smx509"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

type smx509Cert = smx509.Certificate

func parseCert(der []byte) (*smx509.Certificate, error) { return smx509.ParseCertificate(der) }

func pemBody(t interface{ Fatal(...any) }, b []byte) []byte {
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	return blk.Bytes
}

func hcxProvince(s string) hcx.ProvinceCode { return hcx.ProvinceCode(s) }
