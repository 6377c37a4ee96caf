package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/hcxfed/hcx"
)

// Certificate errors, each distinct so a verifier can say exactly what is
// wrong. They are wrapped with detail; test with errors.Is. (ErrRevoked,
// ErrExpired, ErrNotYetValid, ErrWrongRole and ErrWrongProvince are declared
// with the JWS errors.)
var (
	// ErrBadCertificate: the certificate does not parse, or names the
	// national root as its issuer but the root's signature on it does not
	// verify (it was altered after issue).
	ErrBadCertificate = errors.New("certificate is malformed or was altered after issue")
	// ErrUntrusted: the certificate was not issued by the national root.
	ErrUntrusted = errors.New("certificate does not chain to the national root")
	// ErrKeyUsage: the certificate's key usage, extended key usage, basic
	// constraints or key type do not allow what it is being used for.
	ErrKeyUsage = errors.New("certificate's key usage does not allow this")
	// ErrDuplicateKID: a different certificate with the same kid is already
	// trusted.
	ErrDuplicateKID = errors.New("kid is already taken by another certificate")
)

// Entry is one trusted certificate.
type Entry struct {
	KID      string
	Role     Role
	Province hcx.ProvinceCode
	Cert     *smx509.Certificate
}

// PublicKey returns the certificate's SM2 public key.
func (e *Entry) PublicKey() *ecdsa.PublicKey {
	pub, _ := e.Cert.PublicKey.(*ecdsa.PublicKey)
	return pub
}

// CheckIssuer checks that e may speak for an issuer: its role is role and,
// for province signers, the province bound in its certificate is province.
// It returns an error wrapping ErrWrongRole or ErrWrongProvince.
func (e *Entry) CheckIssuer(role Role, province hcx.ProvinceCode) error {
	if e.Role != role {
		return fmt.Errorf("%w: kid %s is a %s certificate, this needs a %s one", ErrWrongRole, e.KID, e.Role, role)
	}
	if role == RoleProvince && e.Province != province {
		return fmt.Errorf("%w: kid %s is bound to province %s, the issuer named is %q", ErrWrongProvince, e.KID, e.Province, province)
	}
	return nil
}

// TrustStore is what a verifier trusts: the national root, the certificates
// that chain to it, and the revocations. It is safe for concurrent use.
type TrustStore struct {
	mu      sync.RWMutex
	root    *Entry
	byKID   map[string]*Entry
	revoked map[string]time.Time
	version uint64
	kidOf   func([]byte) string // KID; tests replace it to force a collision
}

// NewTrustStore trusts root, a self-signed CA certificate, and nothing else yet.
func NewTrustStore(root *smx509.Certificate) (*TrustStore, error) {
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	e := &Entry{KID: KID(root.Raw), Role: RoleRoot, Cert: root}
	return &TrustStore{root: e, byKID: map[string]*Entry{e.KID: e}, revoked: map[string]time.Time{}, kidOf: KID}, nil
}

// checkRoot checks the national root's profile.
func checkRoot(root *smx509.Certificate) error {
	name := root.Subject.CommonName
	if !root.BasicConstraintsValid || !root.IsCA {
		return fmt.Errorf("%w: trust root %q is not a CA certificate", ErrKeyUsage, name)
	}
	if root.KeyUsage&x509.KeyUsageCertSign == 0 || root.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w: trust root %q may not sign certificates and trust lists (key usage certSign and digitalSignature)", ErrKeyUsage, name)
	}
	if !isSM2(root.PublicKey) {
		return fmt.Errorf("%w: trust root %q does not hold an SM2 key", ErrKeyUsage, name)
	}
	if r, _ := roleOf(root); r != RoleRoot {
		return fmt.Errorf("%w: trust root %q does not carry OU=%s%s", ErrWrongRole, name, ouPrefix, RoleRoot)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%w: trust root %q is not validly self-signed: %v", ErrBadCertificate, name, err)
	}
	return nil
}

// Root returns the root's entry.
func (t *TrustStore) Root() *Entry { return t.root }

// Add trusts a certificate that chains to the root. Adding the same
// certificate twice is harmless; a different certificate whose kid is already
// known is rejected with ErrDuplicateKID. Other errors: ErrBadCertificate,
// ErrUntrusted, ErrKeyUsage, ErrWrongRole, ErrWrongProvince.
func (t *TrustStore) Add(der []byte) (*Entry, error) {
	e, err := t.check(der)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byKID[e.KID]; ok {
		if bytes.Equal(old.Cert.Raw, der) {
			return old, nil
		}
		return nil, fmt.Errorf("%w: kid %s (%q)", ErrDuplicateKID, e.KID, old.Cert.Subject.CommonName)
	}
	t.byKID[e.KID] = e
	return e, nil
}

// CheckCertificate checks a certificate against the signing-certificate
// profile and the root without trusting it, and returns what it says.
func (t *TrustStore) CheckCertificate(der []byte) (*Entry, error) { return t.check(der) }

// check parses der and checks it against the signing-certificate profile.
func (t *TrustStore) check(der []byte) (*Entry, error) {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCertificate, err)
	}
	role, prov, err := checkSigningCert(t.root.Cert, cert)
	if err != nil {
		return nil, err
	}
	return &Entry{KID: t.kidOf(der), Role: role, Province: prov, Cert: cert}, nil
}

// checkChain checks that cert was issued by root, unaltered: the issuer name
// (and authority key id, when present) name the root, and the root's
// signature verifies.
func checkChain(root, cert *smx509.Certificate) error {
	name := cert.Subject.CommonName
	if !bytes.Equal(cert.RawIssuer, root.RawSubject) || (len(cert.AuthorityKeyId) > 0 && len(root.SubjectKeyId) > 0 && !bytes.Equal(cert.AuthorityKeyId, root.SubjectKeyId)) {
		return fmt.Errorf("%w: %q was issued by %q, not by the national root %q", ErrUntrusted, name, cert.Issuer.String(), root.Subject.String())
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("%w: %q names the national root as issuer but the root's signature does not verify: %v", ErrBadCertificate, name, err)
	}
	if len(cert.UnhandledCriticalExtensions) > 0 {
		return fmt.Errorf("%w: %q has critical extensions hcx does not understand: %v", ErrBadCertificate, name, cert.UnhandledCriticalExtensions)
	}
	if cert.NotBefore.Before(root.NotBefore.Add(-time.Second)) || cert.NotAfter.After(root.NotAfter) {
		return fmt.Errorf("%w: %q is valid outside the root's own validity", ErrBadCertificate, name)
	}
	return nil
}

// checkSigningCert checks an SM2 signing certificate against its profile
// (DESIGN.md in this package): chains to root, not a CA, digitalSignature,
// exactly its role's signing EKU, an SM2 key, and a province when the role
// is province.
func checkSigningCert(root, cert *smx509.Certificate) (Role, hcx.ProvinceCode, error) {
	name := cert.Subject.CommonName
	if err := checkChain(root, cert); err != nil {
		return "", "", err
	}
	role, prov := roleOf(cert)
	if err := role.Validate(); err != nil || role == RoleRoot {
		return "", "", fmt.Errorf("%w: %q carries no hcx role (OU=hcx-province, hcx-hub, hcx-checkpoint, hcx-feed or hcx-auditor)", ErrWrongRole, name)
	}
	switch {
	case role.ProvinceBound():
		if err := prov.Validate(); err != nil {
			return "", "", fmt.Errorf("%w: %s certificate %q: %v", ErrWrongProvince, role, name, err)
		}
	case len(cert.Subject.Province) > 0:
		return "", "", fmt.Errorf("%w: %s certificate %q names a province; only province signers, feeds and checkpoint devices are bound to one", ErrWrongProvince, role, name)
	}
	if cert.IsCA || cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return "", "", fmt.Errorf("%w: %q is a CA certificate; only the national root may issue", ErrKeyUsage, name)
	}
	if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return "", "", fmt.Errorf("%w: %q lacks key usage digitalSignature", ErrKeyUsage, name)
	}
	if !isSM2(cert.PublicKey) {
		return "", "", fmt.Errorf("%w: %q does not hold an SM2 key, so it cannot sign hcx envelopes", ErrKeyUsage, name)
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageAny {
			return "", "", fmt.Errorf("%w: %q claims any extended key usage", ErrKeyUsage, name)
		}
	}
	want := signingEKU[role]
	has := false
	for _, oid := range cert.UnknownExtKeyUsage {
		for r, o := range signingEKU {
			if oid.Equal(o) && r != role {
				return "", "", fmt.Errorf("%w: %s certificate %q also carries the %s signing usage", ErrKeyUsage, role, name, r)
			}
		}
		has = has || oid.Equal(want)
	}
	if !has {
		return "", "", fmt.Errorf("%w: %s certificate %q lacks the %s signing usage (EKU %s)", ErrKeyUsage, role, name, role, want)
	}
	return role, prov, nil
}

// Revoke records that kid was revoked at time at: anything it signed at or
// after that time is rejected. An earlier revocation time wins.
func (t *TrustStore) Revoke(kid string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.revoked[kid]; !ok || at.Before(old) {
		t.revoked[kid] = at.UTC()
	}
}

// RevokedAt says when kid was revoked, if it was.
func (t *TrustStore) RevokedAt(kid string) (time.Time, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	at, ok := t.revoked[kid]
	return at, ok
}

// Entries returns the trusted certificates other than the root, by kid.
func (t *TrustStore) Entries() []*Entry {
	t.mu.RLock()
	out := make([]*Entry, 0, len(t.byKID))
	for _, e := range t.byKID {
		if e != t.root {
			out = append(out, e)
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].KID < out[j].KID })
	return out
}

// Lookup returns the entry for kid, or an error wrapping ErrUnknownKey.
func (t *TrustStore) Lookup(kid string) (*Entry, error) {
	t.mu.RLock()
	e, ok := t.byKID[kid]
	t.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: kid %s", ErrUnknownKey, kid)
	}
	return e, nil
}

// CheckAt checks that e could sign at time at: it had not been revoked (an
// error wrapping ErrRevoked names the revocation), and its certificate and
// the root's were valid then (ErrNotYetValid, ErrExpired).
func (t *TrustStore) CheckAt(e *Entry, at time.Time) error {
	if err := t.checkRevoked(e, at, "signed"); err != nil {
		return err
	}
	return t.CheckValidAt(e, at)
}

// CheckRevokedAt checks only revocation: an error wrapping ErrRevoked if e's
// key had been revoked at or before t. Use it where revocation is decided at
// a time nobody signed: the commit time of a log leaf (exchange.OpenLogged)
// or the moment a code is presented (exchange.VerifyCode). Certificate
// validity stays a question of the signed time (CheckValidAt).
func (t *TrustStore) CheckRevokedAt(e *Entry, at time.Time) error {
	return t.checkRevoked(e, at, "checked")
}

// CheckValidAt checks only validity: e's certificate and the root's were
// valid at at (ErrNotYetValid, ErrExpired).
func (t *TrustStore) CheckValidAt(e *Entry, at time.Time) error {
	return checkValidity(e.KID, e.Cert, t.root.Cert, at.UTC())
}

func (t *TrustStore) checkRevoked(e *Entry, at time.Time, what string) error {
	at = at.UTC()
	t.mu.RLock()
	rev, revoked := t.revoked[e.KID]
	t.mu.RUnlock()
	if revoked && !at.Before(rev) {
		return fmt.Errorf("%w: kid %s (%q) was revoked at %s, %s at %s", ErrRevoked, e.KID, e.Cert.Subject.CommonName, rev.Format(time.RFC3339), what, at.Format(time.RFC3339))
	}
	return nil
}

func checkValidity(kid string, c, root *smx509.Certificate, at time.Time) error {
	if at.Before(c.NotBefore) {
		return fmt.Errorf("%w: kid %s is valid from %s, used at %s", ErrNotYetValid, kid, c.NotBefore.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
	}
	if at.After(c.NotAfter) {
		return fmt.Errorf("%w: kid %s expired at %s, used at %s", ErrExpired, kid, c.NotAfter.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
	}
	if at.Before(root.NotBefore) || at.After(root.NotAfter) {
		return fmt.Errorf("%w: the national root is valid %s to %s, used at %s", ErrExpired, root.NotBefore.UTC().Format(time.RFC3339), root.NotAfter.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
	}
	return nil
}

// Verified is a JWS whose signature checked out against a trusted key.
type Verified struct {
	Header  Header
	Payload []byte
	Entry   *Entry
}

// jwsRoles says which role may sign each JWS type of the protocol
// (PROTOCOL.md §3 and §6). Types not listed may be signed by any trusted
// certificate; callers then check the role themselves.
var jwsRoles = map[string]Role{
	"hcx-trust+jws":     RoleRoot,
	"hcx-batch+jws":     RoleProvince,
	"hcx-riskareas+jws": RoleProvince,
	"hcx-policy+jws":    RoleProvince,
	"hcx-vax+jws":       RoleProvince,
	"hcx-code+jws":      RoleProvince,
	"hcx-venue+jws":     RoleProvince,
	"hcx-boxkey+jws":    RoleProvince,
	"hcx-receipts+jws":  RoleProvince,
	"hcx-bundle+jws":    RoleProvince,
}

// VerifyJWS checks a compact JWS's signature against the trusted key its kid
// names, and that the key's role may sign the header's typ (ErrWrongRole).
// It does not check times or revocation: the signed time lives in the
// payload, so callers follow with CheckAt. Errors wrap ErrMalformed,
// ErrUnknownKey, ErrSignature or ErrWrongRole.
func (t *TrustStore) VerifyJWS(compact string) (*Verified, error) {
	return t.verifyJWS(compact, verifyEntry)
}

// verifyJWS is VerifyJWS with the signature check given: verifyEntry, or
// in the differential tests the generic and jwx paths it replaced.
func (t *TrustStore) verifyJWS(compact string, verify func(string, *Entry) ([]byte, error)) (*Verified, error) {
	h, err := ParseHeader(compact)
	if err != nil {
		return nil, err
	}
	return t.verifyParsed(compact, h, verify)
}

// VerifyParsedJWS is VerifyJWS for a caller that has already read the
// header with ParseHeader (h must be what ParseHeader returned for
// compact): the same checks, without reading the header twice.
func (t *TrustStore) VerifyParsedJWS(compact string, h Header) (*Verified, error) {
	return t.verifyParsed(compact, h, verifyEntry)
}

func (t *TrustStore) verifyParsed(compact string, h Header, verify func(string, *Entry) ([]byte, error)) (*Verified, error) {
	e, err := t.Lookup(h.Kid)
	if err != nil {
		return nil, err
	}
	if want, ok := jwsRoles[h.Typ]; ok && e.Role != want {
		return nil, fmt.Errorf("%w: %s is signed by a %s certificate (kid %s); only a %s certificate may sign it", ErrWrongRole, h.Typ, e.Role, e.KID, want)
	}
	payload, err := verify(compact, e)
	if err != nil {
		return nil, err
	}
	return &Verified{Header: h, Payload: payload, Entry: e}, nil
}

// Version is the version of the newest trust list applied, 0 if none.
func (t *TrustStore) Version() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.version
}

// ErrStaleTrustList is returned when a trust list is not newer than the one
// in force.
var ErrStaleTrustList = errors.New("trust list is not newer than the one in force")

// ApplyList applies a trust list of version ver: its certificates are added
// and its revocations recorded, all or nothing. A version not above the
// current one is refused with ErrStaleTrustList; a certificate that fails its
// profile, or a second certificate with a known kid (ErrDuplicateKID), fails
// the whole list.
func (t *TrustStore) ApplyList(ver uint64, ders [][]byte, revoked map[string]time.Time) error {
	if cur := t.Version(); ver <= cur {
		return fmt.Errorf("%w: version %d, in force %d", ErrStaleTrustList, ver, cur)
	}
	// Check everything first so a bad list changes nothing.
	staged := make([]*Entry, 0, len(ders))
	seen := map[string]*Entry{}
	for i, der := range ders {
		e, err := t.check(der)
		if err != nil {
			return fmt.Errorf("trust list certificate %d: %w", i, err)
		}
		if old, ok := seen[e.KID]; ok && !bytes.Equal(old.Cert.Raw, der) {
			return fmt.Errorf("trust list certificate %d: %w: kid %s", i, ErrDuplicateKID, e.KID)
		}
		seen[e.KID] = e
		staged = append(staged, e)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ver <= t.version {
		return fmt.Errorf("%w: version %d, in force %d", ErrStaleTrustList, ver, t.version)
	}
	for _, e := range staged {
		if old, ok := t.byKID[e.KID]; ok && !bytes.Equal(old.Cert.Raw, e.Cert.Raw) {
			return fmt.Errorf("%w: kid %s (%q)", ErrDuplicateKID, e.KID, old.Cert.Subject.CommonName)
		}
	}
	for _, e := range staged {
		if _, ok := t.byKID[e.KID]; !ok {
			t.byKID[e.KID] = e
		}
	}
	for kid, at := range revoked {
		if old, ok := t.revoked[kid]; !ok || at.Before(old) {
			t.revoked[kid] = at.UTC()
		}
	}
	t.version = ver
	return nil
}
