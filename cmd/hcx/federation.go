package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/configs"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// federationConfig describes a whole federation in one process: a hub
// cluster and some province nodes, on embedded storage under Dir. `hcx dev`
// and the end-to-end tests build it through startFederation.
type federationConfig struct {
	Dir        string
	Provinces  []hcx.ProvinceCode
	HubMembers int
	// HubHTTP and HubRaft are listen addresses per hub member; NodeAddrs per
	// province. Missing entries listen on 127.0.0.1:0.
	HubHTTP   []string
	HubRaft   []string
	NodeAddrs map[hcx.ProvinceCode]string
	// IdPAddr is where the development identity provider listens;
	// empty: 127.0.0.1:0.
	IdPAddr string
	// Limits makes each server's rate limits and load shedding (one per
	// node and hub member); nil limits nothing (tests).
	Limits func() *api.Limits
	Now    func() time.Time
	Logger *slog.Logger
	// ReceiptInterval is the nodes' node.Config.ReceiptInterval (0: the
	// default, a minute); tests shorten it.
	ReceiptInterval time.Duration
	// AuditHeadEvery is the nodes' node.Config.AuditHeadEvery (0: the
	// default, 10 minutes); tests shorten it.
	AuditHeadEvery time.Duration
	// TLS serves the hub's and the nodes' public APIs over TLS, with server
	// certificates from the dev CA's TLS root (`hcx dev --tls`); the nodes'
	// hub clients verify the hub against that root and the trust list.
	// Without it everything is plain HTTP, for loopback only.
	TLS bool
	// Witnesses are more witnesses of the hub (submission prefixes, such
	// as an auditor's), besides every node at a fixed address (see
	// hubWitnesses).
	Witnesses []string
	// Cosignatures is how many witness cosignatures each node requires of
	// a checkpoint (node.Config.Cosignatures); 0 none, as hcx dev runs.
	Cosignatures int
}

// hubWitnesses are the submission prefixes the hub's leader submits its
// checkpoints to: every province node whose address is known before it
// starts (hcx dev's fixed ports; a node on port 0 is not known yet), then
// cfg.Witnesses.
func (cfg *federationConfig) hubWitnesses() []string {
	scheme := "http://"
	if cfg.TLS {
		scheme = "https://"
	}
	var out []string
	for _, p := range cfg.Provinces {
		if a := cfg.NodeAddrs[p]; a != "" && !strings.HasSuffix(a, ":0") {
			out = append(out, scheme+a+"/v1/witness")
		}
	}
	return append(out, cfg.Witnesses...)
}

func (cfg *federationConfig) limits() *api.Limits {
	if cfg.Limits == nil {
		return nil
	}
	return cfg.Limits()
}

// federation is a running local federation.
type federation struct {
	Dir      string
	PKI      *certs.DevPKI
	Hub      *consensus.Cluster
	HubURLs  []string
	Nodes    map[hcx.ProvinceCode]*node.Node
	NodeURLs map[hcx.ProvinceCode]string
	// IdP is the development OpenID provider whose operators, auditor and
	// residents log in at the nodes.
	IdP *devidp.Server
	// Devices issues device certificates when an operator approves an
	// enrolment, and publishes the next trust list.
	Devices *devIssuer

	// TLSRoot is the anchor clients verify the servers with when the
	// federation serves TLS (nil otherwise); Client is an HTTP client that
	// does (http.DefaultClient without TLS).
	TLSRoot *x509.Certificate
	Client  *http.Client
	// Now is the federation's clock (request tokens are stamped with it).
	Now func() time.Time

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	servers []*http.Server
}

// devKeys are the federation's symmetric keys for a dev federation: the
// subject key every province shares, and each province's field key.
type devKeys struct {
	Subject []byte                      `json:"subject_key_v1"`
	Fields  map[hcx.ProvinceCode][]byte `json:"field_keys_v1"`
}

func startFederation(ctx context.Context, cfg federationConfig) (f *federation, err error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HubMembers < 1 {
		cfg.HubMembers = 1
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	hubIDs := make([]string, cfg.HubMembers)
	for i := range hubIDs {
		hubIDs[i] = fmt.Sprintf("hub-%d", i+1)
	}
	pki, err := certs.EnsureDevPKI(filepath.Join(cfg.Dir, "ca"), cfg.Provinces, hubIDs, cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("development certificates: %w", err)
	}
	keys, err := ensureDevKeys(filepath.Join(cfg.Dir, "keys.json"), cfg.Provinces)
	if err != nil {
		return nil, err
	}
	rulesDir := filepath.Join(cfg.Dir, "rules")
	if err := ensureRules(rulesDir, cfg.Provinces); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	f = &federation{Dir: cfg.Dir, Now: cfg.Now, PKI: pki, Nodes: map[hcx.ProvinceCode]*node.Node{}, NodeURLs: map[hcx.ProvinceCode]string{}, cancel: cancel}
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()

	root := pki.CA.Root()
	hubSigners := make([]*certs.Signer, len(hubIDs))
	hubTLS := make([]*certs.TLSIdentity, len(hubIDs))
	for i, id := range hubIDs {
		hubSigners[i], hubTLS[i] = pki.Hubs[id], pki.HubTLS[id]
	}
	f.Client = http.DefaultClient
	var hubAPITLS []*tls.Config
	if cfg.TLS {
		tlsRoot, err := pki.CA.TLSRoot()
		if err != nil {
			return f, fmt.Errorf("TLS root: %w", err)
		}
		f.TLSRoot = tlsRoot.Cert
		f.Client = &http.Client{Timeout: 65 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientTLS(f.TLSRoot, "")}}
		for i, id := range hubIDs {
			c, err := devServerTLS(pki.CA, "api-"+id, addrAt(cfg.HubHTTP, i), cfg.Now())
			if err != nil {
				return f, err
			}
			hubAPITLS = append(hubAPITLS, certs.ServerTLS(c))
		}
	}
	f.Hub, err = consensus.StartCluster(ctx, consensus.ClusterConfig{
		Dir:     filepath.Join(cfg.Dir, "hub"),
		N:       cfg.HubMembers,
		RootDER: root.Cert.Raw,
		Signers: hubSigners,
		TLS:     hubTLS,
		APITLS:  hubAPITLS,
		Handler: func(h *consensus.Hub) http.Handler {
			return api.HubHandlerFunc(cfg.Logger, api.HubOptions{Limits: cfg.limits()})(h)
		},
		HTTPAddr: cfg.HubHTTP,
		RaftAddr: cfg.HubRaft,
		Logger:   cfg.Logger,
		Now:      cfg.Now,
		Tune: func(c *consensus.Config) {
			c.Witnesses = cfg.hubWitnesses()
			if f.TLSRoot != nil {
				c.WitnessTLS = certs.ClientTLS(f.TLSRoot, "")
			}
		},
	})
	if err != nil {
		return f, fmt.Errorf("start hub: %w", err)
	}
	f.HubURLs = f.Hub.URLs()
	// The CA publishes its trust list as the national root, the one key
	// a new hub trusts before any list is in its log.
	hubClient := exchange.NewHubClient(f.HubURLs, f.Client).SignWith(root, cfg.Now)
	if err := publishDevTrustList(ctx, hubClient, pki.CA, cfg.Now()); err != nil {
		return f, err
	}
	f.Devices = &devIssuer{ca: pki.CA, hub: hubClient, now: cfg.Now}

	if cfg.IdPAddr == "" {
		cfg.IdPAddr = "127.0.0.1:0"
	}
	f.IdP, err = devidp.Start(cfg.IdPAddr, devidp.Config{Dir: filepath.Join(cfg.Dir, "idp"), Provinces: cfg.Provinces, Logger: cfg.Logger})
	if err != nil {
		return f, fmt.Errorf("development identity provider: %w", err)
	}

	for _, p := range cfg.Provinces {
		var self atomic.Pointer[node.Node]
		hubHTTP := f.hubHTTPClient(func() *certs.TrustStore {
			if n := self.Load(); n != nil {
				return n.Trust()
			}
			return nil
		})
		n, err := node.New(node.Config{
			Province:        p,
			Dir:             nodeDir(cfg.Dir, p),
			Signer:          pki.Provinces[p],
			RootDER:         root.Cert.Raw,
			SubjectKey:      certs.SubjectKey{Version: 1, Key: keys.Subject},
			FieldKeys:       map[int][]byte{1: keys.Fields[p]},
			FieldKeyVersion: 1,
			RulesPath:       filepath.Join(rulesDir, string(p)+".yaml"),
			Hub:             exchange.NewHubClient(f.HubURLs, hubHTTP).SignWith(pki.Provinces[p], cfg.Now),
			Now:             cfg.Now,
			Logger:          cfg.Logger,
			ReceiptInterval: cfg.ReceiptInterval,
			AuditHeadEvery:  cfg.AuditHeadEvery,
			Cosignatures:    cfg.Cosignatures,
		})
		if err != nil {
			return f, fmt.Errorf("province %s: %w", p, err)
		}
		self.Store(n)
		f.Nodes[p] = n
		addr := cfg.NodeAddrs[p]
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		var srvTLS *tls.Config
		if cfg.TLS {
			c, err := devServerTLS(pki.CA, "api-"+string(p), addr, cfg.Now())
			if err != nil {
				return f, err
			}
			srvTLS = certs.ServerTLS(c)
		}
		ln, url, err := listen(addr, srvTLS)
		if err != nil {
			return f, fmt.Errorf("province %s: %w", p, err)
		}
		o, err := devNodeOIDC(f.IdP, p, url)
		if err == nil {
			var h http.Handler
			h, err = nodeHandler(n, nodeSecurity{PublicURL: url, PasskeyURL: strings.Replace(url, "127.0.0.1", "localhost", 1),
				OIDC: o, Devices: f.Devices, Limits: cfg.limits(), Now: cfg.Now, Logger: cfg.Logger})
			if err == nil {
				f.serveOn(ln, h, srvTLS)
			}
		}
		if err != nil {
			ln.Close()
			return f, fmt.Errorf("province %s: %w", p, err)
		}
		f.NodeURLs[p] = url
		f.wg.Add(1)
		go func() { defer f.wg.Done(); _ = n.Run(runCtx) }()
	}
	return f, nil
}

// devIssuer issues device certificates at the dev federation's CA (named
// <province>-<name>, so two provinces' gate-7 do not collide) and publishes
// the trust list that lists them.
type devIssuer struct {
	ca  *certs.CA
	hub *exchange.HubClient
	now func() time.Time
	mu  sync.Mutex
}

var _ api.DeviceIssuer = (*devIssuer)(nil)

// devDeviceValidity is how long a dev device certificate lasts.
const devDeviceValidity = 365 * 24 * time.Hour

// IssueDevice implements api.DeviceIssuer.
func (d *devIssuer) IssueDevice(ctx context.Context, csr []byte, role certs.Role, prov hcx.ProvinceCode, name string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cert, err := d.ca.IssueCSR(csr, role, prov, string(prov)+"-"+name, devDeviceValidity)
	if err != nil {
		return nil, hcx.Errorf(hcx.EInvalid, "device_not_issued", "the CA refused the device: %v", err)
	}
	if err := publishDevTrustList(ctx, d.hub, d.ca, d.now()); err != nil {
		return nil, fmt.Errorf("device %s issued (kid %s) but %w; restart hcx dev to publish it", name, certs.KID(cert.Raw), err)
	}
	return certs.CertPEM(cert.Raw), nil
}

// Revoke revokes a device (or any certificate) and publishes the trust list
// that says so.
func (d *devIssuer) Revoke(ctx context.Context, kid, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ca.Revoke(kid, d.now(), reason); err != nil {
		return err
	}
	return publishDevTrustList(ctx, d.hub, d.ca, d.now())
}

// listen listens on addr and returns the listener and its base URL
// (https:// when tlsCfg is set).
func listen(addr string, tlsCfg *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w (is another hcx running? choose other ports)", addr, err)
	}
	return ln, apiURL(ln, tlsCfg), nil
}

// serveOn serves h on ln, over TLS with tlsCfg unless it is nil, until
// Close.
func (f *federation) serveOn(ln net.Listener, h http.Handler, tlsCfg *tls.Config) {
	srv := api.NewServer(h, api.ServerTimeouts{})
	f.servers = append(f.servers, srv)
	f.wg.Add(1)
	go func() { defer f.wg.Done(); _ = serveAPI(srv, ln, tlsCfg) }()
}

// devNodeOIDC registers province p's node, served at nodeURL, as a client
// of the development identity provider, and returns the node's API options
// trusting it: ID tokens for the node (browser login) and for the
// command-line client (`hcx dev token`, as bearer tokens with curl).
func devNodeOIDC(idp *devidp.Server, p hcx.ProvinceCode, nodeURL string) (*auth.OIDC, error) {
	secret := fmt.Sprintf("%x", randomKey(16))
	if err := idp.RegisterClient(devidp.Client{ID: devidp.NodeClientID(p), Secret: secret, RedirectURIs: []string{nodeURL + "/v1/auth/oidc/callback"}}); err != nil {
		return nil, err
	}
	// The provider stamps tokens with the real time, so the node checks
	// them against it too, whatever clock the federation runs on.
	o := &auth.OIDC{Issuers: []auth.IssuerConfig{{
		URL:          idp.Issuer(),
		ClientID:     devidp.NodeClientID(p),
		ClientSecret: secret,
		Audiences:    []string{devidp.CLIClientID},
	}}}
	return o, nil
}

// hubHTTPClient is the HTTP client a node follows the hub with: over TLS,
// it verifies the hub members against the TLS root and, once the node has
// one, the trust list's revocations.
func (f *federation) hubHTTPClient(trust func() *certs.TrustStore) *http.Client {
	if f.TLSRoot == nil {
		return nil // exchange.NewHubClient's default
	}
	return hubHTTPClient(certs.ClientTLSFrom(f.TLSRoot, "", trust))
}

// devServerTLS reopens or issues the dev server certificate named base for
// the host of addr (the machine's name and addresses when it listens on
// all), localhost, 127.0.0.1 and ::1.
func devServerTLS(ca *certs.CA, base, addr string, now time.Time) (*certs.TLSIdentity, error) {
	dns, ips := []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && host != "localhost" {
		switch ip := net.ParseIP(host); {
		case ip == nil:
			dns = append(dns, host)
		case ip.IsUnspecified(): // every address: name the machine's own
			if name, err := os.Hostname(); err == nil {
				dns = append(dns, name)
			}
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
					ips = append(ips, n.IP)
				}
			}
		case !ip.IsLoopback():
			ips = append(ips, ip)
		}
	}
	id, err := ca.EnsureDevServerTLS(base, dns, ips, now)
	if err != nil {
		return nil, fmt.Errorf("server TLS certificate %s: %w", base, err)
	}
	return id, nil
}

func addrAt(addrs []string, i int) string {
	if i < len(addrs) && addrs[i] != "" {
		return addrs[i]
	}
	return "127.0.0.1:0"
}

// Close stops the nodes, their servers and the hub, in that order.
func (f *federation) Close() error {
	f.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range f.servers {
		_ = s.Shutdown(ctx)
	}
	f.wg.Wait()
	var errs []error
	for _, n := range f.Nodes {
		errs = append(errs, n.Close())
	}
	if f.Hub != nil {
		errs = append(errs, f.Hub.Close())
	}
	if f.IdP != nil {
		errs = append(errs, f.IdP.Close())
	}
	return errors.Join(errs...)
}

// publishDevTrustList publishes the CA's trust list when the hub has none,
// or when the CA has certificates or revocations that the hub's list lacks
// (dev certificates are renewed before they expire). An unchanged CA
// publishes nothing, so restarts do not grow the log.
func publishDevTrustList(ctx context.Context, hub *exchange.HubClient, ca *certs.CA, now time.Time) error {
	if current, err := hub.Trust(ctx); err == nil {
		upToDate, err := trustListCovers(ca, current)
		if err != nil {
			return err
		}
		if upToDate {
			return nil
		}
	}
	if _, _, err := exchange.PublishTrustList(ctx, ca, hub, now); err != nil {
		return fmt.Errorf("publish the trust list: %w", err)
	}
	return nil
}

// trustListCovers reports whether a trust-list envelope lists every signing
// certificate and revocation the CA holds.
func trustListCovers(ca *certs.CA, compact string) (bool, error) {
	ts, err := ca.TrustStore()
	if err != nil {
		return false, err
	}
	env, err := exchange.Open(ts, compact)
	if err != nil {
		return false, nil // not a list this CA signed: publish ours
	}
	tl, err := exchange.DecodeTrustList(env)
	if err != nil {
		return false, nil
	}
	listed := map[string]bool{}
	for _, c := range tl.Certs {
		listed[c.KID] = true
	}
	revoked := map[string]bool{}
	for _, r := range tl.Revoked {
		revoked[r.KID] = true
	}
	entries, err := ca.SigningCertificates()
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !listed[e.KID] {
			return false, nil
		}
	}
	revs, err := ca.Revocations()
	if err != nil {
		return false, err
	}
	for kid := range revs {
		if !revoked[kid] {
			return false, nil
		}
	}
	return true, nil
}

// ensureDevKeys reads the dev federation's symmetric keys, making them on
// first start.
func ensureDevKeys(path string, provinces []hcx.ProvinceCode) (*devKeys, error) {
	var k devKeys
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &k); err != nil {
			return nil, fmt.Errorf("%s: %w (delete the data directory to start afresh)", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		k.Fields = map[hcx.ProvinceCode][]byte{}
	default:
		return nil, err
	}
	changed := false
	if len(k.Subject) == 0 {
		k.Subject, changed = randomKey(32), true
	}
	for _, p := range provinces {
		if len(k.Fields[p]) == 0 {
			k.Fields[p], changed = randomKey(16), true
		}
	}
	if changed {
		b, _ := json.MarshalIndent(&k, "", "  ")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	}
	return &k, nil
}

func randomKey(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// ensureRules copies the shipped sample rules into dir on first start; later
// starts use (and keep) whatever is there, so edits survive.
func ensureRules(dir string, provinces []hcx.ProvinceCode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range provinces {
		dst := filepath.Join(dir, string(p)+".yaml")
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		src, err := configs.Rules.ReadFile("rules/" + string(p) + ".yaml")
		if err != nil {
			return fmt.Errorf("no sample rules ship for province %s: write %s yourself", p, dst)
		}
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			return err
		}
	}
	return nil
}
