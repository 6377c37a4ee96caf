package certs

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/hcxfed/hcx"
)

// MaxCSRPEM bounds a certificate signing request in PEM. An SM2 CSR is about
// 400 bytes; anything much larger is not one of ours.
const MaxCSRPEM = 4096

// ErrBadCSR: a certificate signing request does not parse, does not hold an
// SM2 key, or its signature (the proof that the requester holds the key)
// does not verify.
var ErrBadCSR = errors.New("certificate signing request is malformed or its proof of possession does not verify")

// CreateCSR makes a PEM certificate signing request for key with common name
// name, signed by key (SM2 with SM3): the proof that the requester holds it.
func CreateCSR(key *PrivateKey, name string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}
	der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR reads a PEM certificate signing request and checks it: one
// CERTIFICATE REQUEST block and nothing else, at most MaxCSRPEM bytes, an SM2
// key and a signature that verifies with that key. It returns the requested
// key. Errors wrap ErrBadCSR.
func ParseCSR(csrPEM []byte) (*ecdsa.PublicKey, error) {
	if len(csrPEM) > MaxCSRPEM {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadCSR, len(csrPEM), MaxCSRPEM)
	}
	blk, rest := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: want one PEM block of type CERTIFICATE REQUEST (made by `hcx device keygen`)", ErrBadCSR)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("%w: bytes after the CERTIFICATE REQUEST block", ErrBadCSR)
	}
	csr, err := smx509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if !isSM2(csr.PublicKey) {
		return nil, fmt.Errorf("%w: the key is not an SM2 key", ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	return csr.PublicKey.(*ecdsa.PublicKey), nil
}

// IssueFor signs a certificate for req binding pub, a key the CA does not
// hold (a device's, from its CSR). req.Key is ignored. It returns the
// certificate.
func IssueFor(ca *Signer, req IssueRequest, pub *ecdsa.PublicKey) (*smx509.Certificate, error) {
	if err := req.validate(); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	if !isSM2(pub) {
		return nil, fmt.Errorf("issue: %w: the key is not an SM2 key", ErrKeyUsage)
	}
	der, err := signCert(ca, leafTemplate(req), pub)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Role, err)
	}
	return smx509.ParseCertificate(der)
}

// IssueCSR issues a certificate of role, bound to province when the role is
// province-bound, named name, valid from now for validity, for the key in
// csrPEM once its proof of possession verifies. The certificate is written to
// issued/<name>.crt and recorded in the index; there is no key file, the key
// stays with the device. Errors: ErrBadCSR, and those of Issue.
func (ca *CA) IssueCSR(csrPEM []byte, role Role, province hcx.ProvinceCode, name string, validity time.Duration) (*smx509.Certificate, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	pub, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if validity <= 0 {
		return nil, fmt.Errorf("issue: validity must be positive, got %s", validity)
	}
	now := time.Now()
	req := IssueRequest{Role: role, Province: province, Name: name, NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(validity)}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.reserve(name)
	if err != nil {
		return nil, err
	}
	cert, err := IssueFor(ca.root, req, pub)
	if err != nil {
		return nil, err
	}
	if err := ca.store(idx, name, cert, func(string) error { return nil }, KindSigner); err != nil {
		return nil, err
	}
	return cert, nil
}

// CertPEM is a certificate in PEM.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// SignerFor pairs an issued certificate with the key it certifies (a
// device's own key and the certificate it fetched after enrolling).
func SignerFor(cert *smx509.Certificate, key *PrivateKey) (*Signer, error) {
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("the certificate %q is not for this key", cert.Subject.CommonName)
	}
	return signerFromDER(cert.Raw, key)
}
