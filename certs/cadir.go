package certs

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/hcxfed/hcx"
)

// CA is the national root CA kept in a directory (DESIGN.md in this package):
//
//	<dir>/root.crt          the root certificate (PEM)
//	<dir>/root.key          the root's SM2 key (PKCS#8 PEM, 0600)
//	<dir>/index.json        every certificate issued, revocations, trust-list version
//	<dir>/issued/<name>.crt an issued certificate
//	<dir>/issued/<name>.key its private key (0600)
//
// One process at a time should change a CA directory; within a process a CA is
// safe for concurrent use. Private keys are never overwritten.
type CA struct {
	dir  string
	root *Signer
	mu   sync.Mutex
}

// Kinds of issued certificate.
const (
	KindSigner = "signer" // an SM2 signing certificate (province, hub, checkpoint, auditor)
	KindTLS    = "tls"    // a hub member's TLS certificate (ECDSA P-256, signed by the SM2 root)
)

// Issued is one certificate in a CA's index.
type Issued struct {
	Name      string           `json:"name"`
	KID       string           `json:"kid"`
	Kind      string           `json:"kind"`
	Role      Role             `json:"role"`
	Province  hcx.ProvinceCode `json:"province,omitempty"`
	Serial    string           `json:"serial"`
	NotBefore time.Time        `json:"not_before"`
	NotAfter  time.Time        `json:"not_after"`
	DNSNames  []string         `json:"dns,omitempty"`
	IPs       []string         `json:"ips,omitempty"`
	IssuedAt  time.Time        `json:"issued_at"`
	RevokedAt *time.Time       `json:"revoked_at,omitempty"`
	Reason    string           `json:"reason,omitempty"`
}

// Revoked reports whether the certificate was revoked.
func (i Issued) Revoked() bool { return i.RevokedAt != nil }

// Status is "revoked", "expired", "not yet valid" or "valid" at time now.
func (i Issued) Status(now time.Time) string {
	switch {
	case i.Revoked():
		return "revoked"
	case now.After(i.NotAfter):
		return "expired"
	case now.Before(i.NotBefore):
		return "not yet valid"
	}
	return "valid"
}

type caIndex struct {
	Format       int      `json:"format"`
	RootKID      string   `json:"root_kid"`
	TrustVersion uint64   `json:"trust_version"`
	Issued       []Issued `json:"issued"`
}

// ErrCAExists is returned by InitCA when the directory already holds a CA.
var ErrCAExists = errors.New("a CA already exists here")

// RootValidity is how long InitCA's root is valid.
const RootValidity = 20 * 365 * 24 * time.Hour

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// CheckName checks a certificate name: lower-case letters, digits, '.', '_'
// and '-', at most 64 characters; it is also a file name under issued/.
func CheckName(name string) error {
	if !namePattern.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("certificate name %q: use lower-case letters, digits, '.', '_' and '-' (at most 64), such as province-440000 or hub-1", name)
	}
	return nil
}

// InitCA creates a CA in dir (made 0700 if missing): a new root key (0600)
// and self-signed certificate named name, and an empty index. It refuses, with
// ErrCAExists, if dir already holds a CA.
func InitCA(dir, name string, now time.Time) (*CA, error) {
	if strings.TrimSpace(name) == "" {
		return nil, fmt.Errorf("init CA: the root needs a name, such as \"hcx national root\"")
	}
	if err := os.MkdirAll(filepath.Join(dir, "issued"), 0o700); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	for _, f := range []string{"root.key", "root.crt", "index.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("init CA in %s: %w (%s is there); open it with OpenCA, or see it with `hcx ca list --dir %s`", dir, ErrCAExists, f, dir)
		}
	}
	root, err := NewRoot(name, now, RootValidity)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := WriteKey(filepath.Join(dir, "root.key"), root.Key); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := WriteCert(filepath.Join(dir, "root.crt"), root.Cert.Raw); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	ca := &CA{dir: dir, root: root}
	if err := ca.writeIndex(&caIndex{Format: 1, RootKID: root.KID, Issued: []Issued{}}); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	return ca, nil
}

// OpenCA opens a CA made by InitCA.
func OpenCA(dir string) (*CA, error) {
	if _, err := os.Stat(filepath.Join(dir, "root.crt")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open CA: no CA in %s; create one with `hcx ca init --dir %s`", dir, dir)
	}
	root, err := LoadSigner(filepath.Join(dir, "root.crt"), filepath.Join(dir, "root.key"))
	if err != nil {
		return nil, fmt.Errorf("open CA in %s: %w", dir, err)
	}
	if err := checkRoot(root.Cert); err != nil {
		return nil, fmt.Errorf("open CA in %s: %w", dir, err)
	}
	if err := checkKeyFile(filepath.Join(dir, "root.key")); err != nil {
		return nil, fmt.Errorf("open CA in %s: %w", dir, err)
	}
	ca := &CA{dir: dir, root: root}
	idx, err := ca.readIndex()
	if err != nil {
		return nil, err
	}
	if idx.RootKID != root.KID {
		return nil, fmt.Errorf("open CA in %s: index.json belongs to root %s, root.crt is %s", dir, idx.RootKID, root.KID)
	}
	return ca, nil
}

// checkKeyFile refuses a private key that others may read.
func checkKeyFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("private key %s has permissions %v; run `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	return nil
}

// Dir is the CA's directory.
func (ca *CA) Dir() string { return ca.dir }

// Root returns the root signer.
func (ca *CA) Root() *Signer { return ca.root }

// TrustVersion is the version of the last trust list this CA made.
func (ca *CA) TrustVersion() (uint64, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return 0, err
	}
	return idx.TrustVersion, nil
}

// NextTrustVersion reserves and records a trust-list version above both the
// last one this CA made and atLeast (the newest seen in the log).
func (ca *CA) NextTrustVersion(atLeast uint64) (uint64, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return 0, err
	}
	v := max(idx.TrustVersion, atLeast) + 1
	idx.TrustVersion = v
	if err := ca.writeIndex(idx); err != nil {
		return 0, err
	}
	return v, nil
}

func (ca *CA) certPath(name string) string { return filepath.Join(ca.dir, "issued", name+".crt") }
func (ca *CA) keyPath(name string) string  { return filepath.Join(ca.dir, "issued", name+".key") }

// Issue issues a signing certificate for req, named req.Name, writes
// issued/<name>.crt and .key (0600) and records it in the index. It refuses a
// name already used.
func (ca *CA) Issue(req IssueRequest) (*Signer, error) {
	if err := CheckName(req.Name); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.reserve(req.Name)
	if err != nil {
		return nil, err
	}
	s, err := Issue(ca.root, req)
	if err != nil {
		return nil, err
	}
	if err := ca.store(idx, req.Name, s.Cert, func(p string) error { return WriteKey(p, s.Key) }, KindSigner); err != nil {
		return nil, err
	}
	return s, nil
}

// reserve reads the index and checks that name is free. Callers hold ca.mu.
func (ca *CA) reserve(name string) (*caIndex, error) {
	idx, err := ca.readIndex()
	if err != nil {
		return nil, err
	}
	for _, it := range idx.Issued {
		if it.Name == name {
			return nil, fmt.Errorf("issue: the name %s is taken (kid %s, issued %s); pick another name, or revoke it and issue a new one under a new name", name, it.KID, it.IssuedAt.UTC().Format(time.RFC3339))
		}
	}
	for _, p := range []string{ca.certPath(name), ca.keyPath(name)} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("issue: %s exists but is not in the index; move it away first, hcx never overwrites a key", p)
		}
	}
	return idx, nil
}

// store writes an issued certificate and its key and records it. Callers
// hold ca.mu.
func (ca *CA) store(idx *caIndex, name string, cert *smx509.Certificate, writeKey func(string) error, kind string) error {
	if err := writeKey(ca.keyPath(name)); err != nil {
		return fmt.Errorf("issue %s: %w", name, err)
	}
	if err := WriteCert(ca.certPath(name), cert.Raw); err != nil {
		return fmt.Errorf("issue %s: %w", name, err)
	}
	role, prov := roleOf(cert)
	it := Issued{
		Name: name, KID: KID(cert.Raw), Kind: kind, Role: role, Province: prov,
		Serial: cert.SerialNumber.Text(16), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(),
		DNSNames: cert.DNSNames, IssuedAt: time.Now().UTC().Truncate(time.Second),
	}
	for _, ip := range cert.IPAddresses {
		it.IPs = append(it.IPs, ip.String())
	}
	for _, old := range idx.Issued {
		if old.KID == it.KID {
			return fmt.Errorf("issue %s: %w: kid %s is %s", name, ErrDuplicateKID, it.KID, old.Name)
		}
	}
	idx.Issued = append(idx.Issued, it)
	return ca.writeIndex(idx)
}

// Load returns a signer issued earlier by name.
func (ca *CA) Load(name string) (*Signer, error) {
	it, err := ca.Find(name)
	if err != nil {
		return nil, err
	}
	if it.Kind != KindSigner {
		return nil, fmt.Errorf("load %s: it is a %s certificate, not a signer; load it with LoadTLS", name, it.Kind)
	}
	if _, err := os.Stat(ca.keyPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load %s: the CA holds no key for it; it was issued for a CSR and its key stays with the device", name)
	}
	if err := checkKeyFile(ca.keyPath(name)); err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	s, err := LoadSigner(ca.certPath(name), ca.keyPath(name))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	if s.KID != it.KID {
		return nil, fmt.Errorf("load %s: the certificate on disk (kid %s) is not the one issued (kid %s)", name, s.KID, it.KID)
	}
	return s, nil
}

// Certificate returns an issued certificate by name.
func (ca *CA) Certificate(name string) (*smx509.Certificate, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	return ReadCert(ca.certPath(name))
}

// Find returns the index record of a certificate by name or kid.
func (ca *CA) Find(nameOrKID string) (Issued, error) {
	list, err := ca.List()
	if err != nil {
		return Issued{}, err
	}
	for _, it := range list {
		if it.Name == nameOrKID || it.KID == nameOrKID {
			return it, nil
		}
	}
	return Issued{}, fmt.Errorf("no certificate named or with kid %q in the CA at %s; see `hcx ca list --dir %s`", nameOrKID, ca.dir, ca.dir)
}

// Revoke records that the certificate with kid stops counting at at, for
// reason. A certificate already revoked keeps its earlier time.
func (ca *CA) Revoke(kid string, at time.Time, reason string) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return err
	}
	if kid == idx.RootKID {
		return fmt.Errorf("revoke: %s is the root itself; a compromised root means a new CA (`hcx ca init`) and new certificates for everyone", kid)
	}
	for i := range idx.Issued {
		it := &idx.Issued[i]
		if it.KID != kid {
			continue
		}
		if it.RevokedAt != nil {
			if !at.Before(*it.RevokedAt) {
				return fmt.Errorf("revoke: %s (kid %s) was already revoked at %s", it.Name, kid, it.RevokedAt.Format(time.RFC3339))
			}
		}
		t := at.UTC().Truncate(time.Second)
		it.RevokedAt, it.Reason = &t, reason
		return ca.writeIndex(idx)
	}
	return fmt.Errorf("revoke: no certificate with kid %s in the CA at %s; see `hcx ca list --dir %s`", kid, ca.dir, ca.dir)
}

// List returns every certificate the CA issued, oldest first.
func (ca *CA) List() ([]Issued, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return nil, err
	}
	return idx.Issued, nil
}

// Revocations returns the revoked kids and when they were revoked.
func (ca *CA) Revocations() (map[string]time.Time, error) {
	list, err := ca.List()
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, it := range list {
		if it.RevokedAt != nil {
			out[it.KID] = *it.RevokedAt
		}
	}
	return out, nil
}

// SigningCertificates returns every signing certificate the CA issued,
// revoked and expired ones included: a trust list is cumulative, so that
// envelopes signed before a revocation or expiry still verify.
func (ca *CA) SigningCertificates() ([]*Entry, error) {
	list, err := ca.List()
	if err != nil {
		return nil, err
	}
	var out []*Entry
	for _, it := range list {
		if it.Kind != KindSigner {
			continue
		}
		c, err := ca.Certificate(it.Name)
		if err != nil {
			return nil, err
		}
		if KID(c.Raw) != it.KID {
			return nil, fmt.Errorf("%s on disk (kid %s) is not the certificate issued (kid %s)", ca.certPath(it.Name), KID(c.Raw), it.KID)
		}
		role, prov := roleOf(c)
		out = append(out, &Entry{KID: it.KID, Role: role, Province: prov, Cert: c})
	}
	return out, nil
}

// TrustStore returns a trust store holding the root, every signing
// certificate this CA issued and its revocations, at version 0 (so that the
// first trust list from the log still applies). Use it to bootstrap a process
// that holds the CA directory, such as `hcx dev`; everyone else learns trust
// from the log.
func (ca *CA) TrustStore() (*TrustStore, error) {
	ts, err := NewTrustStore(ca.root.Cert)
	if err != nil {
		return nil, err
	}
	cs, err := ca.SigningCertificates()
	if err != nil {
		return nil, err
	}
	for _, e := range cs {
		if _, err := ts.Add(e.Cert.Raw); err != nil {
			return nil, err
		}
	}
	rev, err := ca.Revocations()
	if err != nil {
		return nil, err
	}
	for kid, at := range rev {
		ts.Revoke(kid, at)
	}
	return ts, nil
}

func (ca *CA) readIndex() (*caIndex, error) {
	b, err := os.ReadFile(filepath.Join(ca.dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("read CA index: %w", err)
	}
	var idx caIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("read CA index %s: %w", filepath.Join(ca.dir, "index.json"), err)
	}
	if idx.Format != 1 {
		return nil, fmt.Errorf("CA index %s has format %d; this hcx reads format 1", filepath.Join(ca.dir, "index.json"), idx.Format)
	}
	return &idx, nil
}

// writeIndex replaces index.json atomically (write, sync, rename).
func (ca *CA) writeIndex(idx *caIndex) error {
	sort.SliceStable(idx.Issued, func(i, j int) bool { return idx.Issued[i].IssuedAt.Before(idx.Issued[j].IssuedAt) })
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(ca.dir, "index.json")
	tmp, err := os.CreateTemp(ca.dir, ".index-*.json")
	if err != nil {
		return fmt.Errorf("write CA index: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write CA index: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write CA index: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write CA index: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write CA index: %w", err)
	}
	return nil
}

// DevPKI is the certificates of a local federation (`hcx dev`).
type DevPKI struct {
	CA        *CA
	Provinces map[hcx.ProvinceCode]*Signer
	Hubs      map[string]*Signer      // by hub id: signs the hub's checkpoints
	HubTLS    map[string]*TLSIdentity // by hub id: TLS between hub members
	// Feeds and Checkpoints are one lab feed (feed-<code>) and one
	// checkpoint device (checkpoint-<code>) per province, so that a
	// developer can act as each machine role; Auditor is the national
	// auditor's certificate (auditor), for reading the hub's log.
	Feeds       map[hcx.ProvinceCode]*Signer
	Checkpoints map[hcx.ProvinceCode]*Signer
	Auditor     *Signer
}

// DevValidity is how long `hcx dev` certificates are valid.
const DevValidity = 365 * 24 * time.Hour

// EnsureDevPKI makes or reopens the CA in dir for a local federation. On
// first start it makes the CA, one signer per province (named
// province-<code>), and per hub id a checkpoint signer (hub-<id>) and a TLS
// identity (hub-<id>-tls, naming member id, for localhost, 127.0.0.1 and
// ::1), and per province a feed (feed-<code>) and a checkpoint device
// (checkpoint-<code>), and the national auditor (auditor). Later starts
// reopen them; one that has expired, or was revoked, is replaced by a new one
// named <name>.<yyyymmddhhmmss>.
func EnsureDevPKI(dir string, provinces []hcx.ProvinceCode, hubs []string, now time.Time) (*DevPKI, error) {
	ca, err := OpenCA(dir)
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "root.crt")); !errors.Is(statErr, fs.ErrNotExist) {
			return nil, err
		}
		if ca, err = InitCA(dir, "hcx dev national root", now); err != nil {
			return nil, err
		}
	}
	p := &DevPKI{CA: ca, Provinces: map[hcx.ProvinceCode]*Signer{}, Hubs: map[string]*Signer{}, HubTLS: map[string]*TLSIdentity{},
		Feeds: map[hcx.ProvinceCode]*Signer{}, Checkpoints: map[hcx.ProvinceCode]*Signer{}}
	for _, prov := range provinces {
		s, err := ca.ensureSigner("province-"+string(prov), now, IssueRequest{Role: RoleProvince, Province: prov})
		if err != nil {
			return nil, err
		}
		p.Provinces[prov] = s
		if p.Feeds[prov], err = ca.ensureSigner("feed-"+string(prov), now, IssueRequest{Role: RoleFeed, Province: prov}); err != nil {
			return nil, err
		}
		if p.Checkpoints[prov], err = ca.ensureSigner("checkpoint-"+string(prov), now, IssueRequest{Role: RoleCheckpoint, Province: prov}); err != nil {
			return nil, err
		}
	}
	if p.Auditor, err = ca.ensureSigner("auditor", now, IssueRequest{Role: RoleAuditor}); err != nil {
		return nil, err
	}
	for _, id := range hubs {
		name := "hub-" + strings.TrimPrefix(id, "hub-")
		s, err := ca.ensureSigner(name, now, IssueRequest{Role: RoleHub})
		if err != nil {
			return nil, err
		}
		p.Hubs[id] = s
		tid, err := ca.ensureTLS(name+"-tls", id, now)
		if err != nil {
			return nil, err
		}
		p.HubTLS[id] = tid
	}
	return p, nil
}

// LoadCurrent loads the newest usable signer named base (or a renewal of
// it, base.<suffix>), as EnsureDevPKI keeps them.
func (ca *CA) LoadCurrent(base string, now time.Time) (*Signer, error) {
	name, ok, err := ca.current(base, now)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no valid certificate named %s in %s", base, ca.dir)
	}
	return ca.Load(name)
}

// current returns the newest usable certificate named base or base.<suffix>.
func (ca *CA) current(base string, now time.Time) (string, bool, error) {
	list, err := ca.List()
	if err != nil {
		return "", false, err
	}
	best, found := "", false
	for _, it := range list {
		if (it.Name == base || strings.HasPrefix(it.Name, base+".")) && it.Status(now.Add(time.Hour)) == "valid" {
			best, found = it.Name, true // the list is oldest first
		}
	}
	return best, found, nil
}

func renewedName(base string, now time.Time) string {
	return base + "." + now.UTC().Format("20060102150405")
}

func (ca *CA) ensureSigner(base string, now time.Time, req IssueRequest) (*Signer, error) {
	name, ok, err := ca.current(base, now)
	if err != nil {
		return nil, err
	}
	if ok {
		return ca.Load(name)
	}
	req.Name = base
	if _, err := ca.Find(base); err == nil {
		req.Name = renewedName(base, now)
	}
	req.NotBefore, req.NotAfter = now.Add(-time.Hour), now.Add(DevValidity)
	return ca.Issue(req)
}

// ensureTLS reopens member's TLS identity, or issues one. An identity that
// names another member (dev directories made before certificates carried
// the member id) is replaced too.
func (ca *CA) ensureTLS(base, member string, now time.Time) (*TLSIdentity, error) {
	name, ok, err := ca.current(base, now)
	if err != nil {
		return nil, err
	}
	if ok {
		id, err := ca.LoadTLS(name)
		if err != nil || id.Member == member {
			return id, err
		}
	}
	if _, err := ca.Find(base); err == nil {
		base = renewedName(base, now)
	}
	return ca.IssueHubTLS(base, member, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, now.Add(-time.Hour), now.Add(DevValidity))
}

// keyMatches reports whether a private key belongs to a certificate.
func keyMatches(pub any, key *ecdsa.PrivateKey) bool {
	p, ok := pub.(*ecdsa.PublicKey)
	return ok && p.Equal(&key.PublicKey)
}
