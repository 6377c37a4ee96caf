package certs

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/hcxfed/hcx"
)

// CertInfo is what a person needs to know about a certificate.
type CertInfo struct {
	KID         string
	Subject     string
	Issuer      string
	Serial      string
	Role        Role
	Province    hcx.ProvinceCode
	NotBefore   time.Time
	NotAfter    time.Time
	KeyType     string // "SM2", "ECDSA P-256", ...
	IsCA        bool
	KeyUsage    []string
	ExtKeyUsage []string
	DNSNames    []string
	IPs         []string
	DER         []byte
}

// Describe parses a certificate (DER) for display.
func Describe(der []byte) (*CertInfo, error) {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	role, prov := roleOf(c)
	ci := &CertInfo{
		KID: KID(der), Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16),
		Role: role, Province: prov, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), IsCA: c.IsCA,
		DNSNames: c.DNSNames, DER: der,
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if isSM2(k) {
			ci.KeyType = "SM2"
		} else {
			ci.KeyType = "ECDSA " + k.Curve.Params().Name
		}
	default:
		ci.KeyType = fmt.Sprintf("%T", k)
	}
	for _, ku := range []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "contentCommitment"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "certSign"}, {x509.KeyUsageCRLSign, "crlSign"},
	} {
		if c.KeyUsage&ku.bit != 0 {
			ci.KeyUsage = append(ci.KeyUsage, ku.name)
		}
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth:
			ci.ExtKeyUsage = append(ci.ExtKeyUsage, ekuName(u))
		case x509.ExtKeyUsageAny:
			ci.ExtKeyUsage = append(ci.ExtKeyUsage, "any")
		default:
			ci.ExtKeyUsage = append(ci.ExtKeyUsage, fmt.Sprintf("eku(%d)", int(u)))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		name := oid.String()
		for r, o := range signingEKU {
			if o.Equal(oid) {
				name = "hcx " + string(r) + " signing (" + name + ")"
			}
		}
		ci.ExtKeyUsage = append(ci.ExtKeyUsage, name)
	}
	for _, ip := range c.IPAddresses {
		ci.IPs = append(ci.IPs, ip.String())
	}
	return ci, nil
}

// ReadCertificateFile reads one certificate, PEM or DER, and returns its DER.
func ReadCertificateFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s holds a %s, not a CERTIFICATE", path, blk.Type)
		}
		return blk.Bytes, nil
	}
	return b, nil
}

// CheckAgainstRoot checks a certificate of any kind the CA issues (a signing
// certificate, or a hub TLS certificate) against the root's profile rules,
// validity at now and the store's revocations.
func (t *TrustStore) CheckAgainstRoot(der []byte, now time.Time) error {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	if bytesEqual(der, t.root.Cert.Raw) {
		return checkValidity(KID(der), c, c, now)
	}
	if isSM2(c.PublicKey) {
		e, err := t.check(der)
		if err != nil {
			return err
		}
		return t.CheckAt(e, now)
	}
	_, err = t.VerifyHubPeer(der, x509.ExtKeyUsageServerAuth, now)
	return err
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
