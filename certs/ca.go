package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/hcxfed/hcx"
)

// Role is what a certificate is for.
type Role string

// Roles in the federation (PROTOCOL.md §3, trust list).
const (
	RoleRoot       Role = "root"
	RoleProvince   Role = "province"
	RoleHub        Role = "hub"
	RoleCheckpoint Role = "checkpoint"
	RoleAuditor    Role = "auditor"
	// RoleFeed is a machine that posts a province's feed records (a lab,
	// the vaccination registry, the telecom itinerary service).
	RoleFeed Role = "feed"
)

// Validate checks the role.
func (r Role) Validate() error {
	switch r {
	case RoleRoot, RoleProvince, RoleHub, RoleCheckpoint, RoleAuditor, RoleFeed:
		return nil
	}
	return fmt.Errorf("unknown role %q: want province, hub, checkpoint, feed or auditor", string(r))
}

// ProvinceBound reports whether certificates of role r are bound to one
// province (ST=<code> in the subject): province signers, feeds and
// checkpoint devices are; hub members, auditors and the root are not.
func (r Role) ProvinceBound() bool {
	return r == RoleProvince || r == RoleFeed || r == RoleCheckpoint
}

// Organizational unit values that bind a role into a certificate's subject.
const ouPrefix = "hcx-"

// Extended key usages of the federation's signing certificates, under the
// arc 1.3.6.1.4.1.32473.1 (32473 is IANA's enterprise number for
// documentation, RFC 5612; a deployment replaces it with its own). Each role
// that signs has exactly one, and a verifier accepts a signature only from a
// certificate that carries its role's usage (see DESIGN.md in this package).
var (
	OIDProvinceSigning   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1} // batches, risk areas, policies, codes, venue codes
	OIDLogSigning        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 2} // the hub's checkpoints (signed tree heads)
	OIDCheckpointSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 3} // checkpoint devices
	OIDAuditorSigning    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 4} // auditors' reports
	OIDFeedSigning       = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 5} // feed systems' request tokens
)

// signingEKU is the extended key usage each issued role must carry.
var signingEKU = map[Role]asn1.ObjectIdentifier{
	RoleProvince:   OIDProvinceSigning,
	RoleHub:        OIDLogSigning,
	RoleCheckpoint: OIDCheckpointSigning,
	RoleAuditor:    OIDAuditorSigning,
	RoleFeed:       OIDFeedSigning,
}

// Signer is a private key with its certificate: a province signer, a hub
// member, a checkpoint device, an auditor or the root itself.
type Signer struct {
	Key  *PrivateKey
	Cert *smx509.Certificate
	KID  string
	Role Role
	// Province is set for province-bound roles (province signers, feeds,
	// checkpoint devices): the certificate's ST attribute.
	Province hcx.ProvinceCode
}

// Public returns the signer's public key.
func (s *Signer) Public() *ecdsa.PublicKey { return &s.Key.PublicKey }

// Sign signs msg with SM2 (PROTOCOL.md §2).
func (s *Signer) Sign(msg []byte) ([]byte, error) { return SignSM2(s.Key, msg) }

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	Role                Role
	Province            hcx.ProvinceCode // province signers, feeds and checkpoint devices
	Name                string           // common name, such as "hub-1" or "checkpoint 0042"
	Key                 *PrivateKey      // the subject's key; made fresh if nil
	NotBefore, NotAfter time.Time
	DNSNames            []string // hub members: TLS names
	IPAddresses         []net.IP
}

// validate checks a request against the certificate profiles.
func (req *IssueRequest) validate() error {
	if err := req.Role.Validate(); err != nil || req.Role == RoleRoot {
		return fmt.Errorf("role %q cannot be issued: want province, hub, checkpoint, feed or auditor", req.Role)
	}
	if req.Role.ProvinceBound() {
		if err := req.Province.Validate(); err != nil {
			return fmt.Errorf("%s certificate: %w", req.Role, err)
		}
	} else if req.Province != "" {
		return fmt.Errorf("only province signers, feeds and checkpoint devices are bound to a province; a %s certificate is not (drop the province)", req.Role)
	}
	if strings.TrimSpace(req.Name) == "" {
		return fmt.Errorf("a certificate needs a name (its common name), such as \"province-440000\" or \"hub-1\"")
	}
	if req.NotAfter.IsZero() || !req.NotAfter.After(req.NotBefore) {
		return fmt.Errorf("validity ends (%s) before it starts (%s)", req.NotAfter.UTC().Format(time.RFC3339), req.NotBefore.UTC().Format(time.RFC3339))
	}
	if (len(req.DNSNames) > 0 || len(req.IPAddresses) > 0) && req.Role != RoleHub {
		return fmt.Errorf("only hub members carry DNS names or IP addresses, not a %s certificate", req.Role)
	}
	return nil
}

// rootTemplate is the national root's profile: a CA that signs certificates
// and (digitalSignature) trust lists, and nothing below it may be a CA.
func rootTemplate(name string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"hcx"}, OrganizationalUnit: []string{ouPrefix + string(RoleRoot)}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
}

// NewRoot makes a self-signed national root CA valid from now for validity.
func NewRoot(name string, now time.Time, validity time.Duration) (*Signer, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	// Back-dated an hour for clock skew: nothing it issues may start before it.
	tmpl := rootTemplate(name, now.Add(-time.Hour), now.Add(validity))
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	return signerFromDER(der, key)
}

// leafTemplate is the profile of an issued SM2 signing certificate: not a CA,
// digitalSignature only, the role in OU, the province in ST, and the role's
// signing EKU (hub members also serverAuth and clientAuth).
func leafTemplate(req IssueRequest) *x509.Certificate {
	name := pkix.Name{CommonName: req.Name, Organization: []string{"hcx"}, OrganizationalUnit: []string{ouPrefix + string(req.Role)}}
	if req.Role.ProvinceBound() {
		name.Province = []string{string(req.Province)}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               name,
		NotBefore:             req.NotBefore,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{signingEKU[req.Role]},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
	}
	if req.Role == RoleHub {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return tmpl
}

// Issue signs a certificate for req with the root ca.
func Issue(ca *Signer, req IssueRequest) (*Signer, error) {
	if err := req.validate(); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	key := req.Key
	if key == nil {
		var err error
		if key, err = GenerateKey(); err != nil {
			return nil, err
		}
	}
	der, err := signCert(ca, leafTemplate(req), &key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Role, err)
	}
	return signerFromDER(der, key)
}

// signCert signs tmpl for pub with the root, refusing if the certificate
// would outlive the root.
func signCert(ca *Signer, tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if ca.Role != RoleRoot || !ca.Cert.IsCA {
		return nil, fmt.Errorf("%q is not the national root CA", ca.Cert.Subject.CommonName)
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("validity ends %s, after the root itself expires (%s): shorten it", tmpl.NotAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if tmpl.NotBefore.Before(ca.Cert.NotBefore) {
		tmpl.NotBefore = ca.Cert.NotBefore
	}
	return smx509.CreateCertificate(rand.Reader, tmpl, (*x509.Certificate)(ca.Cert), pub, ca.Key)
}

func signerFromDER(der []byte, key *PrivateKey) (*Signer, error) {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	role, prov := roleOf(cert)
	return &Signer{Key: key, Cert: cert, KID: KID(der), Role: role, Province: prov}, nil
}

// roleOf reads the role and province bound in a certificate's subject.
func roleOf(c *smx509.Certificate) (Role, hcx.ProvinceCode) {
	var role Role
	for _, ou := range c.Subject.OrganizationalUnit {
		if len(ou) > len(ouPrefix) && ou[:len(ouPrefix)] == ouPrefix {
			role = Role(ou[len(ouPrefix):])
		}
	}
	var prov hcx.ProvinceCode
	if len(c.Subject.Province) == 1 {
		prov = hcx.ProvinceCode(c.Subject.Province[0])
	}
	return role, prov
}

// isSM2 reports whether pub is an SM2 public key.
func isSM2(pub any) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && k.Curve == sm2.P256()
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}
