package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// Hub members talk TLS to each other. Go's crypto/tls cannot use SM2 keys, so
// a hub member's TLS certificate holds an ECDSA P-256 key, signed by the SM2
// national root. Go's tls parses such a leaf (it does not know the signature
// algorithm, and does not need to): each side verifies the peer's chain itself
// in VerifyPeerCertificate, with smx509, against the root — role hub, EKU,
// validity, not revoked. See DESIGN.md in this package.

// TLSIdentity is a hub member's TLS key and certificate.
type TLSIdentity struct {
	Name string // the certificate's name in the CA directory
	// Member is the hub member id the certificate authenticates (its
	// subject common name): a member may only join, be promoted and
	// announce itself under this id.
	Member string
	Key    *ecdsa.PrivateKey
	Cert   *smx509.Certificate
	KID    string
}

// TLSPeerMember is the hub member id that the peer's certificate in a
// completed handshake names, "" if the peer sent none. The certificate was
// verified during the handshake (HubServerTLS, HubClientTLS).
func TLSPeerMember(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

// Certificate is the identity in crypto/tls form.
func (id *TLSIdentity) Certificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key}
}

// tlsTemplate is the profile of a hub TLS certificate: role hub, ECDSA P-256,
// digitalSignature, serverAuth and clientAuth, and no hcx signing usage (a
// TLS key cannot sign envelopes or checkpoints). The subject common name is
// the member id.
func tlsTemplate(member string, dns []string, ips []net.IP, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: member, Organization: []string{"hcx"}, OrganizationalUnit: []string{ouPrefix + string(RoleHub)}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
}

// IssueTLS makes a TLS identity for hub member id member, signed by root,
// without touching disk. The member id is the certificate's subject common
// name.
func IssueTLS(root *Signer, member string, dns []string, ips []net.IP, notBefore, notAfter time.Time) (*TLSIdentity, error) {
	if err := CheckName(member); err != nil {
		return nil, fmt.Errorf("issue TLS: member id: %w", err)
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("issue TLS %s: validity ends before it starts", member)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := signCert(root, tlsTemplate(member, dns, ips, notBefore, notAfter), &key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issue TLS %s: %w", member, err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &TLSIdentity{Name: member, Member: member, Key: key, Cert: cert, KID: KID(der)}, nil
}

// IssueHubTLS issues the TLS identity of hub member member, stored under
// name (names are unique in a CA directory: the member's signing
// certificate may already be called after the member, so the TLS one is
// usually <member>-tls), valid for the DNS names and IP addresses given,
// and stores it like Issue does.
func (ca *CA) IssueHubTLS(name, member string, dns []string, ips []net.IP, notBefore, notAfter time.Time) (*TLSIdentity, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("issue TLS: %w", err)
	}
	if err := CheckName(member); err != nil {
		return nil, fmt.Errorf("issue TLS %s: member id: %w", name, err)
	}
	if len(dns) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("issue TLS %s: give the DNS names or IP addresses the hub member is reached at", name)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.reserve(name)
	if err != nil {
		return nil, err
	}
	id, err := IssueTLS(ca.root, member, dns, ips, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	id.Name = name
	if err := ca.store(idx, name, id.Cert, func(p string) error { return writeECKey(p, id.Key) }, KindTLS); err != nil {
		return nil, err
	}
	return id, nil
}

// LoadTLS returns a hub member TLS identity issued earlier by name.
func (ca *CA) LoadTLS(name string) (*TLSIdentity, error) { return ca.loadTLS(name, KindTLS) }

// LoadServerTLS returns a public API server TLS identity issued earlier by
// name (IssueServerTLS).
func (ca *CA) LoadServerTLS(name string) (*TLSIdentity, error) {
	return ca.loadTLS(name, KindServerTLS)
}

func (ca *CA) loadTLS(name, kind string) (*TLSIdentity, error) {
	it, err := ca.Find(name)
	if err != nil {
		return nil, err
	}
	if it.Kind != kind {
		return nil, fmt.Errorf("load %s: it is a %s certificate, not a %s one", name, it.Kind, kind)
	}
	id, err := LoadTLSIdentity(ca.certPath(name), ca.keyPath(name))
	if err != nil {
		return nil, err
	}
	id.Name = name
	return id, nil
}

// LoadTLSIdentity reads a TLS certificate and its ECDSA key (PEM): a hub
// member's (Member is then its member id) or a public API server's
// (ServerTLS; Member is empty).
func LoadTLSIdentity(certPath, keyPath string) (*TLSIdentity, error) {
	c, err := ReadCert(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readECKey(keyPath, certPath, c.PublicKey)
	if err != nil {
		return nil, err
	}
	id := &TLSIdentity{Name: c.Subject.CommonName, Key: key, Cert: c, KID: KID(c.Raw)}
	if role, _ := roleOf(c); role == RoleHub {
		id.Member = c.Subject.CommonName // a server certificate authenticates no member
	}
	return id, nil
}

// readECKey reads the ECDSA private key (PKCS #8 PEM, mode 0600) of the
// certificate at certPath, whose public key is pub.
func readECKey(keyPath, certPath string, pub any) (*ecdsa.PrivateKey, error) {
	if err := checkKeyFile(keyPath); err != nil {
		return nil, err
	}
	der, err := readPEM(keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !keyMatches(pub, key) {
		return nil, fmt.Errorf("%s does not hold the ECDSA key of %s", keyPath, certPath)
	}
	return key, nil
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeKeyPEM(path, der)
}

// VerifyHubPeer checks a peer's TLS certificate (DER) at time now: issued by
// the national root and unaltered, role hub, not a CA, digitalSignature and
// the extended key usage usage (serverAuth for a server, clientAuth for a
// client), valid now, not revoked. Errors wrap ErrBadCertificate,
// ErrUntrusted, ErrWrongRole, ErrKeyUsage, ErrExpired, ErrNotYetValid or
// ErrRevoked.
func (t *TrustStore) VerifyHubPeer(der []byte, usage x509.ExtKeyUsage, now time.Time) (*Entry, error) {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	name := cert.Subject.CommonName
	if err := checkChain(t.root.Cert, cert); err != nil {
		return nil, err
	}
	if role, _ := roleOf(cert); role != RoleHub {
		return nil, fmt.Errorf("%w: TLS peer %q is a %q certificate, not a hub member", ErrWrongRole, name, role)
	}
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: TLS peer %q needs key usage digitalSignature and no CA", ErrKeyUsage, name)
	}
	ok := false
	for _, u := range cert.ExtKeyUsage {
		ok = ok || u == usage
	}
	if !ok {
		return nil, fmt.Errorf("%w: TLS peer %q lacks extended key usage %s", ErrKeyUsage, name, ekuName(usage))
	}
	e := &Entry{KID: KID(der), Role: RoleHub, Cert: cert}
	if err := t.CheckAt(e, now); err != nil {
		return nil, err
	}
	return e, nil
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	}
	return fmt.Sprint(int(u))
}

// CheckHubPeerAt re-checks a hub TLS peer certificate that passed
// VerifyHubPeer at its handshake against what changes afterwards: not
// revoked and still valid at now. A member runs it over its open
// connections when the trust list changes, to close those of a revoked
// member. Errors wrap ErrBadCertificate, ErrRevoked, ErrExpired or
// ErrNotYetValid.
func (t *TrustStore) CheckHubPeerAt(der []byte, now time.Time) error {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	return t.CheckAt(&Entry{KID: KID(der), Role: RoleHub, Cert: cert}, now)
}

func verifyPeer(cfg *tls.Config, trust func() *TrustStore, usage x509.ExtKeyUsage) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return fmt.Errorf("hub TLS: the peer sent no certificate")
		}
		now := time.Now()
		if cfg.Time != nil {
			now = cfg.Time()
		}
		if _, err := trust().VerifyHubPeer(raw[0], usage, now); err != nil {
			return fmt.Errorf("hub TLS: %w", err)
		}
		return nil
	}
}

// HubServerTLS is the TLS configuration of a hub member accepting
// connections from other members: TLS 1.3, and the client must present a hub
// certificate (clientAuth) from the national root, checked against ts (so a
// revocation in the trust list takes effect on the next handshake).
func HubServerTLS(id *TLSIdentity, ts *TrustStore) *tls.Config {
	return HubServerTLSFrom(id, func() *TrustStore { return ts })
}

// HubServerTLSFrom is HubServerTLS checking each handshake against the store
// trust returns then: a hub member passes its log's trust store, which
// trust-list leaves update and a snapshot install replaces.
func HubServerTLSFrom(id *TLSIdentity, trust func() *TrustStore) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Certificate()},
		ClientAuth:   tls.RequireAnyClientCert,
	}
	cfg.VerifyPeerCertificate = verifyPeer(cfg, trust, x509.ExtKeyUsageClientAuth)
	return cfg
}

// HubClientTLS is the TLS configuration of a hub member dialling another:
// it presents id and accepts only a hub certificate (serverAuth) from the
// national root, checked against ts. Go's own chain check is off
// (InsecureSkipVerify) because it cannot verify SM2 signatures; the check in
// VerifyPeerCertificate replaces it, not skips it. Host names are not
// checked: any hub member may answer for any member address.
func HubClientTLS(id *TLSIdentity, ts *TrustStore) *tls.Config {
	return HubClientTLSFrom(id, func() *TrustStore { return ts })
}

// HubClientTLSFrom is HubClientTLS checking each handshake against the store
// trust returns then (see HubServerTLSFrom).
func HubClientTLSFrom(id *TLSIdentity, trust func() *TrustStore) *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{id.Certificate()},
		InsecureSkipVerify: true, // replaced by verifyPeer, see above
	}
	cfg.VerifyPeerCertificate = verifyPeer(cfg, trust, x509.ExtKeyUsageServerAuth)
	return cfg
}
