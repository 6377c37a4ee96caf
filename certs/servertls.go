package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

// The public APIs of nodes and hub members (the ones residents, checkpoint
// devices, feeds and other provinces call) are served over TLS with server
// certificates from a second, ECDSA P-256 root kept next to the national SM2
// root in the CA directory: the TLS root. It signs nothing but TLS server
// certificates. Go's crypto/tls, curl/OpenSSL 3.0 and browsers cannot verify
// a certificate signed by the SM2 root (OpenSSL verifies SM2 only with an
// explicit distinguishing id that curl cannot pass), so a TLS root that every
// standard client verifies is what makes `curl --cacert tls-root.crt` and
// plain crypto/tls verification (host name, validity, EKU) work. The SM2
// national root stays the anchor of every signature in the federation; the
// TLS root only authenticates transport. See docs/tls.md.

// Files of the TLS root in a CA directory.
const (
	TLSRootCertFile = "tls-root.crt"
	TLSRootKeyFile  = "tls-root.key"
)

// KindServerTLS is the kind of a public API server certificate in a CA's
// index: ECDSA P-256, serverAuth only, signed by the TLS root.
const KindServerTLS = "server-tls"

// RoleTLSServer is the role a public API server certificate's subject names
// (OU hcx-tls-server). It is no federation role: such a certificate signs
// nothing and is never in a trust list, only in its revocations.
const RoleTLSServer Role = "tls-server"

// ouTLSRoot and ouServerTLS mark the TLS root and its server certificates.
const (
	ouTLSRoot   = ouPrefix + "tls-root"
	ouServerTLS = ouPrefix + string(RoleTLSServer)
)

// TLSRoot is the ECDSA P-256 CA that signs public API server certificates.
type TLSRoot struct {
	Key  *ecdsa.PrivateKey
	Cert *x509.Certificate
}

// NewTLSRoot makes a self-signed TLS root named name, valid from an hour
// before now (clock skew) for validity: a CA for server certificates only
// (path length 0, extended key usage serverAuth, so that nothing it signs
// can authenticate a client or sign code).
func NewTLSRoot(name string, now time.Time, validity time.Duration) (*TLSRoot, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"hcx"}, OrganizationalUnit: []string{ouTLSRoot}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create TLS root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &TLSRoot{Key: key, Cert: cert}, nil
}

// ServerTLSRequest describes a public API server certificate.
type ServerTLSRequest struct {
	Name                string   // common name and file name, such as "node-440000" or "hub-1-api"
	DNSNames            []string // the names clients reach the server at
	IPAddresses         []net.IP // and the addresses
	NotBefore, NotAfter time.Time
}

func (req *ServerTLSRequest) validate(root *TLSRoot) error {
	if err := CheckName(req.Name); err != nil {
		return fmt.Errorf("server TLS certificate: %w", err)
	}
	if len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return fmt.Errorf("server TLS certificate %s: give the DNS names (--dns) or IP addresses (--ip) clients reach the server at", req.Name)
	}
	if req.NotAfter.IsZero() || !req.NotAfter.After(req.NotBefore) {
		return fmt.Errorf("server TLS certificate %s: validity ends (%s) before it starts (%s)", req.Name, req.NotAfter.UTC().Format(time.RFC3339), req.NotBefore.UTC().Format(time.RFC3339))
	}
	if req.NotAfter.After(root.Cert.NotAfter) {
		return fmt.Errorf("server TLS certificate %s: validity ends %s, after the TLS root expires (%s): shorten it", req.Name, req.NotAfter.UTC().Format(time.RFC3339), root.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// IssueServerTLS makes a public API server certificate signed by root,
// without touching disk: a fresh ECDSA P-256 key, digitalSignature,
// serverAuth only, the names and addresses of req. The identity's Member is
// empty: a server certificate authenticates no hub member.
func IssueServerTLS(root *TLSRoot, req ServerTLSRequest) (*TLSIdentity, error) {
	if err := req.validate(root); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	nb := req.NotBefore
	if nb.Before(root.Cert.NotBefore) {
		nb = root.Cert.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: req.Name, Organization: []string{"hcx"}, OrganizationalUnit: []string{ouServerTLS}},
		NotBefore:             nb,
		NotAfter:              req.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, &key.PublicKey, root.Key)
	if err != nil {
		return nil, fmt.Errorf("issue server TLS certificate %s: %w", req.Name, err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &TLSIdentity{Name: req.Name, Key: key, Cert: cert, KID: KID(der)}, nil
}

// TLSRoot returns the CA's TLS root, making it (tls-root.key 0600 and
// tls-root.crt) on first use, so that CA directories made before it existed
// gain one. Its validity is the national root's remaining validity.
func (ca *CA) TLSRoot() (*TLSRoot, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.tlsRoot()
}

func (ca *CA) tlsRoot() (*TLSRoot, error) {
	certPath, keyPath := filepath.Join(ca.dir, TLSRootCertFile), filepath.Join(ca.dir, TLSRootKeyFile)
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	switch {
	case errors.Is(errC, fs.ErrNotExist) && errors.Is(errK, fs.ErrNotExist):
		now := time.Now()
		root, err := NewTLSRoot(ca.root.Cert.Subject.CommonName+" (TLS)", now, ca.root.Cert.NotAfter.Sub(now))
		if err != nil {
			return nil, err
		}
		if err := writeECKey(keyPath, root.Key); err != nil {
			return nil, fmt.Errorf("TLS root: %w", err)
		}
		if err := WriteCert(certPath, root.Cert.Raw); err != nil {
			return nil, fmt.Errorf("TLS root: %w", err)
		}
		return root, nil
	case errC != nil || errK != nil:
		return nil, fmt.Errorf("TLS root in %s: one of %s and %s is missing or unreadable; restore it from backup (hcx never overwrites a key)", ca.dir, TLSRootCertFile, TLSRootKeyFile)
	}
	return LoadTLSRoot(certPath, keyPath)
}

// LoadTLSRoot reads a TLS root certificate and its key (PEM).
func LoadTLSRoot(certPath, keyPath string) (*TLSRoot, error) {
	cert, err := ReadTLSRoot(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readECKey(keyPath, certPath, cert.PublicKey)
	if err != nil {
		return nil, err
	}
	return &TLSRoot{Key: key, Cert: cert}, nil
}

// ReadTLSRoot reads a TLS root certificate (PEM), the anchor clients verify
// public API servers against. It refuses the SM2 national root, which no
// TLS client can verify with, naming the file to use instead.
func ReadTLSRoot(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := ParseTLSRoot(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseTLSRoot parses a TLS root certificate (DER) and checks its profile:
// a self-signed ECDSA P-256 CA marked as the TLS root.
func ParseTLSRoot(der []byte) (*x509.Certificate, error) {
	if sc, err := smx509.ParseCertificate(der); err == nil && isSM2(sc.PublicKey) {
		return nil, fmt.Errorf("%q is an SM2 certificate (the national root?): TLS clients verify servers against the ECDSA TLS root, %s in the CA directory", sc.Subject.CommonName, TLSRootCertFile)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("TLS root: %w", err)
	}
	ou := c.Subject.OrganizationalUnit
	if !c.IsCA || len(ou) != 1 || ou[0] != ouTLSRoot {
		return nil, fmt.Errorf("%q is not an hcx TLS root (a CA with OU %s)", c.Subject.CommonName, ouTLSRoot)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return nil, fmt.Errorf("TLS root %q is not self-signed: %w", c.Subject.CommonName, err)
	}
	return c, nil
}

// IssueServerTLS issues a public API server certificate from the CA's TLS
// root (made on first use), stores it as issued/<name>.crt and .key (0600)
// and records it in the index with kind KindServerTLS. Revoking it (Revoke)
// puts it in the next trust list, which clients given a trust store check
// (ClientTLSFrom).
func (ca *CA) IssueServerTLS(req ServerTLSRequest) (*TLSIdentity, error) {
	if err := CheckName(req.Name); err != nil {
		return nil, fmt.Errorf("issue server TLS: %w", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.reserve(req.Name)
	if err != nil {
		return nil, err
	}
	root, err := ca.tlsRoot()
	if err != nil {
		return nil, err
	}
	id, err := IssueServerTLS(root, req)
	if err != nil {
		return nil, err
	}
	if err := ca.store(idx, req.Name, id.Cert, func(p string) error { return writeECKey(p, id.Key) }, KindServerTLS); err != nil {
		return nil, err
	}
	return id, nil
}

// ServerTLS is the TLS configuration of a public API server (a node, a hub
// member's public listener) presenting id: TLS 1.3 only (every supported
// client speaks it; its suites are all AEAD with forward secrecy, so there
// is no suite list to get wrong), no client certificate asked for (callers
// authenticate per request, see package auth).
func ServerTLS(id *TLSIdentity) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Certificate()},
	}
}

// ClientTLS is the TLS configuration of a client of public APIs (a node
// following the hub, a device, a test): TLS 1.3, and the server must present
// a certificate chaining to tlsRoot, valid now, for serverAuth, naming the
// host dialled. serverName overrides the host name checked; leave it empty
// when an http.Transport dials several servers (it checks each URL's host).
// Verification is Go's own; nothing is skipped.
func ClientTLS(tlsRoot *x509.Certificate, serverName string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(tlsRoot)
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: serverName}
}

// ClientTLSFrom is ClientTLS that also refuses a server certificate revoked
// in the trust store trust returns at each handshake (a trust list from the
// hub log carries the CA's revocations, server certificates included). trust
// may return nil while no store is known yet: only revocation is then
// unchecked. The error on a revoked certificate wraps ErrRevoked.
func ClientTLSFrom(tlsRoot *x509.Certificate, serverName string, trust func() *TrustStore) *tls.Config {
	cfg := ClientTLS(tlsRoot, serverName)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server TLS: the server sent no certificate")
		}
		ts := trust()
		if ts == nil {
			return nil
		}
		now := time.Now()
		if cfg.Time != nil {
			now = cfg.Time()
		}
		leaf := cs.PeerCertificates[0]
		kid := KID(leaf.Raw)
		if at, ok := ts.RevokedAt(kid); ok && !now.Before(at) {
			return fmt.Errorf("server TLS: %w: certificate %q (kid %s) was revoked at %s", ErrRevoked, leaf.Subject.CommonName, kid, at.UTC().Format(time.RFC3339))
		}
		return nil
	}
	return cfg
}

// CheckServerTLS checks a public API server certificate (DER) at now the way
// a client given the CA's TLS root and trust store would: it chains to the
// TLS root, is for serverAuth, is valid now and is not revoked in the CA.
// Errors wrap ErrRevoked when it was revoked.
func (ca *CA) CheckServerTLS(der []byte, now time.Time) error {
	root, err := ca.TLSRoot()
	if err != nil {
		return err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("server TLS certificate %q: %w", c.Subject.CommonName, err)
	}
	rev, err := ca.Revocations()
	if err != nil {
		return err
	}
	if at, ok := rev[KID(der)]; ok && !now.Before(at) {
		return fmt.Errorf("%w: server TLS certificate %q was revoked at %s", ErrRevoked, c.Subject.CommonName, at.UTC().Format(time.RFC3339))
	}
	return nil
}

// EnsureDevServerTLS reopens the public API server certificate named base,
// or its newest renewal base.<yyyymmddhhmmss>, when it stays valid for
// another hour and names exactly dns and ips; otherwise it issues a new one
// valid for DevValidity. `hcx dev --tls` serves with it.
func (ca *CA) EnsureDevServerTLS(base string, dns []string, ips []net.IP, now time.Time) (*TLSIdentity, error) {
	want := sanKey(dns, ips)
	list, err := ca.List()
	if err != nil {
		return nil, err
	}
	name, taken := "", false
	for _, it := range list { // oldest first: the last match is the newest
		if it.Name != base && !strings.HasPrefix(it.Name, base+".") {
			continue
		}
		taken = taken || it.Name == base
		if it.Kind == KindServerTLS && it.Status(now.Add(time.Hour)) == "valid" && sanKey(it.DNSNames, parseIPs(it.IPs)) == want {
			name = it.Name
		}
	}
	if name != "" {
		return ca.LoadServerTLS(name)
	}
	if taken {
		base = renewedName(base, now)
	}
	return ca.IssueServerTLS(ServerTLSRequest{Name: base, DNSNames: dns, IPAddresses: ips, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(DevValidity)})
}

// sanKey is a canonical form of a set of DNS names and IP addresses.
func sanKey(dns []string, ips []net.IP) string {
	var all []string
	all = append(all, dns...)
	for _, ip := range ips {
		all = append(all, ip.String())
	}
	slices.Sort(all)
	return strings.Join(slices.Compact(all), ",")
}

func parseIPs(ss []string) []net.IP {
	out := make([]net.IP, 0, len(ss))
	for _, s := range ss {
		if ip := net.ParseIP(s); ip != nil {
			out = append(out, ip)
		}
	}
	return out
}
