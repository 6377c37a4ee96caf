// Package devidp is the development identity provider of `hcx dev` and of
// the tests: a real OpenID Connect provider (github.com/zitadel/oidc/v3
// pkg/op) over a small in-memory storage, with a password login page for
// the authorization code flow with PKCE, and a few dev users per role and
// province whose ID tokens carry hcx's role claims (hcx_role, hcx_province)
// and, for residents, a verified identity document (hcx_doc_type,
// hcx_doc_number, hcx_doc_verified, name).
//
// It is for development only: users and passwords are printed and kept in
// a file, and nothing here is meant to face the Internet.
package devidp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/hcxfed/hcx"
)

// Claims carried in the ID tokens, beside the standard ones.
const (
	ClaimRole        = "hcx_role"
	ClaimProvince    = "hcx_province"
	ClaimDocType     = "hcx_doc_type"
	ClaimDocNumber   = "hcx_doc_number"
	ClaimDocVerified = "hcx_doc_verified"
)

// The command-line client: a public client (no secret) that proves itself
// with PKCE. Its redirect URI is never served: `hcx dev token` reads the
// code from the redirect's Location header.
const (
	CLIClientID    = "hcx-cli"
	CLIRedirectURI = "http://127.0.0.1/hcx-cli/callback"
)

// Limits.
const (
	// MaxAuthRequests bounds the authorization requests waiting for a login.
	MaxAuthRequests = 1024
	// AuthRequestTTL is how long a login may take.
	AuthRequestTTL = 10 * time.Minute
	// MaxClients bounds the registered clients.
	MaxClients = 256
	// IDTokenLifetime is how long an ID token is good for.
	IDTokenLifetime = time.Hour
	// AccessTokenLifetime is how long an access token is good for.
	AccessTokenLifetime = 5 * time.Minute
)

// NodeClientID is the client id (and so the ID token audience) of a
// province node.
func NodeClientID(p hcx.ProvinceCode) string { return "hcx-node-" + string(p) }

// User is a dev user.
type User struct {
	Name     string           `json:"name"` // login name, preferred_username
	Password string           `json:"password"`
	Role     string           `json:"role"` // operator, auditor, national or resident
	Province hcx.ProvinceCode `json:"province,omitempty"`
	// Residents only: the verified identity document.
	FullName  string      `json:"full_name,omitempty"`
	DocType   hcx.DocType `json:"doc_type,omitempty"`
	DocNumber string      `json:"doc_number,omitempty"`
}

// Client is a relying party registered at the provider.
type Client struct {
	ID string `json:"id"`
	// Secret is empty for a public client (it must use PKCE).
	Secret       string   `json:"secret,omitempty"`
	RedirectURIs []string `json:"redirect_uris"`
}

// ClientsFile is the file in Config.Dir that keeps the registered relying
// parties of a provider running on its own (`hcx dev idp`), written by
// `hcx dev init` (mode 0600: it holds the clients' secrets).
const ClientsFile = "clients.json"

// SaveClients writes cs to dir/ClientsFile.
func SaveClients(dir string, cs []Client) error {
	if len(cs) > MaxClients {
		return fmt.Errorf("devidp: at most %d clients", MaxClients)
	}
	b, _ := json.MarshalIndent(cs, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, ClientsFile), b, 0o600); err != nil {
		return fmt.Errorf("devidp: %w", err)
	}
	return nil
}

// LoadClients reads dir/ClientsFile; a missing file is no clients.
func LoadClients(dir string) ([]Client, error) {
	b, err := os.ReadFile(filepath.Join(dir, ClientsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	var cs []Client
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("devidp: %s: %w", filepath.Join(dir, ClientsFile), err)
	}
	if len(cs) > MaxClients {
		return nil, fmt.Errorf("devidp: %s lists %d clients, at most %d", filepath.Join(dir, ClientsFile), len(cs), MaxClients)
	}
	return cs, nil
}

// Config configures a provider.
type Config struct {
	// Issuer is the URL the provider is served at (scheme, host, port, no
	// trailing slash); it is the iss of every token and must match it.
	Issuer string
	// Dir keeps the signing key and the users' passwords so that tokens and
	// passwords survive restarts. Empty: both live in memory only.
	Dir string
	// Provinces get one operator each.
	Provinces []hcx.ProvinceCode
	// Now is the clock of login expiry. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// State is what the provider writes to Dir/idp.json for `hcx dev token`.
type State struct {
	Issuer         string `json:"issuer"`
	CLIClientID    string `json:"cli_client_id"`
	CLIRedirectURI string `json:"cli_redirect_uri"`
	Users          []User `json:"users"`
}

// StateFile is the name of the state file in Config.Dir.
const StateFile = "idp.json"

// Server is a running development provider. Serve Handler at Issuer.
type Server struct {
	cfg      Config
	log      *slog.Logger
	provider *op.Provider
	store    *storage
	handler  http.Handler
	srv      *http.Server
}

// New builds a provider. It returns an error if the issuer is not an
// absolute http(s) URL or Dir cannot be read or written.
func New(cfg Config) (*Server, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.HasSuffix(cfg.Issuer, "/") {
		return nil, fmt.Errorf("devidp: issuer %q must be an absolute http(s) URL without a trailing slash", cfg.Issuer)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, p := range cfg.Provinces {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("devidp: %w", err)
		}
	}
	key, err := loadOrMakeKey(cfg.Dir)
	if err != nil {
		return nil, err
	}
	users, err := loadOrMakeUsers(cfg.Dir, cfg.Provinces)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "devidp")}
	s.store = newStorage(key, users, cfg.Issuer, cfg.Now)
	if err := s.store.addClient(Client{ID: CLIClientID, RedirectURIs: []string{CLIRedirectURI}}); err != nil {
		return nil, err
	}
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, err
	}
	var opts []op.Option
	if u.Scheme == "http" {
		opts = append(opts, op.WithAllowInsecure())
	}
	s.provider, err = op.NewProvider(&op.Config{
		CryptoKey:      cryptoKey,
		CodeMethodS256: true,
		AuthMethodPost: true,
	}, s.store, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/login", op.NewIssuerInterceptor(s.provider.IssuerFromRequest).Handler(http.HandlerFunc(s.login)))
	mux.Handle("/", s.provider)
	s.handler = mux
	if cfg.Dir != "" {
		st := State{Issuer: cfg.Issuer, CLIClientID: CLIClientID, CLIRedirectURI: CLIRedirectURI, Users: users}
		b, _ := json.MarshalIndent(&st, "", "  ")
		if err := os.WriteFile(filepath.Join(cfg.Dir, StateFile), b, 0o600); err != nil {
			return nil, fmt.Errorf("devidp: %w", err)
		}
	}
	return s, nil
}

// Handler serves the provider: discovery, keys, authorize, token,
// userinfo, and the login page at /login.
func (s *Server) Handler() http.Handler { return s.handler }

// Issuer is the provider's issuer URL.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// Users lists the dev users, passwords included.
func (s *Server) Users() []User { return slices.Clone(s.store.userList) }

// RegisterClient registers (or replaces) a relying party, such as a
// province node with its callback URL. A client without a secret is
// public and must use PKCE.
func (s *Server) RegisterClient(c Client) error { return s.store.addClient(c) }

// ReadState reads the state a provider wrote to dir (for `hcx dev token`).
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// devResidents are the dev residents, with CN-ID numbers whose check
// digits are right (tested in devidp_test.go).
var devResidents = []User{
	{Name: "li-lei", FullName: "李雷", DocType: hcx.DocCNID, DocNumber: "440106198805120037"},
	{Name: "han-meimei", FullName: "韩梅梅", DocType: hcx.DocCNID, DocNumber: "510107199203010040"},
	{Name: "wang-fang", FullName: "王芳", DocType: hcx.DocCNID, DocNumber: "110105198501010020"},
	{Name: "zhao-qiang", FullName: "赵强", DocType: hcx.DocCNID, DocNumber: "31011519900215004X"},
}

// OperatorName is the dev operator of province p.
func OperatorName(p hcx.ProvinceCode) string { return "op-" + string(p) }

// AuditorName is the dev national auditor.
const AuditorName = "auditor"

// NationalName is the dev national platform staff member, who confirms
// red orders.
const NationalName = "national-cdc"

func devUsers(provinces []hcx.ProvinceCode) []User {
	var users []User
	for _, p := range provinces {
		users = append(users, User{Name: OperatorName(p), Role: "operator", Province: p})
	}
	users = append(users, User{Name: AuditorName, Role: "auditor"})
	users = append(users, User{Name: NationalName, Role: "national"})
	for _, r := range devResidents {
		r.Role = "resident"
		users = append(users, r)
	}
	return users
}

// loadOrMakeUsers gives every dev user a password, keeping those already
// in dir/idp.json.
func loadOrMakeUsers(dir string, provinces []hcx.ProvinceCode) ([]User, error) {
	old := map[string]string{}
	if dir != "" {
		st, err := ReadState(dir)
		switch {
		case err == nil:
			for _, u := range st.Users {
				old[u.Name] = u.Password
			}
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("devidp: %w (delete it to start afresh)", err)
		}
	}
	users := devUsers(provinces)
	for i := range users {
		if pw := old[users[i].Name]; pw != "" {
			users[i].Password = pw
		} else {
			users[i].Password = randomString(10)
		}
	}
	return users, nil
}

const keyFile = "signing-key.pem"

// loadOrMakeKey reads the ES256 signing key from dir, making it on first
// start. With no dir the key lives in memory.
func loadOrMakeKey(dir string) (*ecdsa.PrivateKey, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("devidp: %w", err)
		}
		b, err := os.ReadFile(filepath.Join(dir, keyFile))
		if err == nil {
			blk, _ := pem.Decode(b)
			if blk == nil {
				return nil, fmt.Errorf("devidp: %s is not PEM (delete it to make a new key)", filepath.Join(dir, keyFile))
			}
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("devidp: %s: %w", filepath.Join(dir, keyFile), err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok || ek.Curve != elliptic.P256() {
				return nil, fmt.Errorf("devidp: %s is not a P-256 key", filepath.Join(dir, keyFile))
			}
			return ek, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("devidp: %w", err)
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("devidp: %w", err)
		}
	}
	return k, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// keyID is the RFC 7638 thumbprint of the public key.
func keyID(k *ecdsa.PrivateKey) string {
	jwk := jose.JSONWebKey{Key: k.Public()}
	t, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(t)[:16]
}

func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Start listens on addr (host:port; port 0 picks a free one), sets
// cfg.Issuer to http://<the address> when it is empty, and serves the
// provider until Close.
func Start(addr string, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devidp: listen on %s: %w (is another hcx dev running?)", addr, err)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "http://" + ln.Addr().String()
	}
	s, err := New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops a provider made by Start.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
