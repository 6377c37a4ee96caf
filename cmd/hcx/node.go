package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// nodeKeys is the file of a node's symmetric keys (mode 0600): the
// federation subject key, distributed by the national platform, and the
// province's own field keys for identity at rest.
type nodeKeys struct {
	SubjectKeyVersion int            `json:"subject_key_version"`
	SubjectKey        string         `json:"subject_key"` // base64
	FieldKeyVersion   int            `json:"field_key_version"`
	FieldKeys         map[int]string `json:"field_keys"` // version -> base64 of 16 bytes
}

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	province := fs.String("province", "", "GB/T 2260 province code of this node, such as 440000 (required)")
	dir := fs.String("dir", "", "data directory; default hcx-data/nodes/PROVINCE, where hcx dev keeps the province's node")
	listen := fs.String("listen", "", "HTTP listen address; default 127.0.0.1:87NN, NN the first two digits of -province, the port hcx dev gives the province (8744 for 440000)")
	admin := fs.String("admin", "", adminFlagHelp)
	hubs := fs.String("hub", "", "comma-separated hub member URLs, such as http://hub-1:8700,http://hub-2:8700 (required)")
	cert := fs.String("cert", "", "the province signer certificate, PEM (required)")
	key := fs.String("key", "", "the province signer private key, PEM (required)")
	root := fs.String("root", "", "the national root certificate, PEM (required)")
	keysFile := fs.String("keys", "", "JSON file of the subject key and field keys (required, mode 0600; format in docs/decisions.md under Dev keys)")
	rules := fs.String("rules", "", "the province's rule file (default configs/rules/<province>.yaml)")
	oidcPath := fs.String("oidc", "", "JSON file of the identity providers this node trusts (mode 0600; format in cmd/hcx/node_oidc.go); none: no OIDC logins")
	publicURL := fs.String("public-url", "", "this node's external URL, for the OIDC callback (default: from each request's Host)")
	apiTLS := apiTLSFlags{
		cert:     fs.String("tls-cert", "", "server TLS certificate of the API, PEM ('hcx ca issue --server'); required unless --listen is loopback"),
		key:      fs.String("tls-key", "", "its ECDSA key, PEM"),
		insecure: fs.Bool("insecure-plaintext-api", false, "DANGER: serve the API, and follow http:// hub URLs, in plain HTTP on an address other than loopback: anyone on the path reads and alters it"),
	}
	hubCA := fs.String("hub-ca", "", "the TLS root the hub's API certificates come from (tls-root.crt in the CA directory); required for https hub URLs")
	logOpts := addLogFlags(fs)
	offlineMaxAge := fs.Duration("offline-max-age", 6*time.Hour, "how old a verification bundle's checkpoint may get before checkpoint devices refuse codes offline (hcx verify)")
	headEvery := fs.Duration("audit-head-every", node.DefaultAuditHeadEvery, "how often the node logs its operator trail's head at the hub when the trail grew; 0 never")
	witnessOpts := addWitnessFlags(fs, "this node")
	setUsage(fs, "Runs one province node until interrupted: it decides its residents' colours with\nthe province's rules, publishes attestations to the national hub, follows the\nhub's log and answers checkpoints. Certificates and keys come from 'hcx ca'.",
		"hcx node -province CODE -hub URLS -cert C -key K -root ROOT.crt -keys KEYS.json [flags]")
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	cosignatures, witnesses, err := witnessOpts.parse()
	if err != nil {
		return fmt.Errorf("hcx node: %w", err)
	}
	if *headEvery < 0 {
		return fmt.Errorf("--audit-head-every %s: want a duration from 0 (never), such as 10m", *headEvery)
	}
	if *headEvery == 0 {
		*headEvery = -1 // node.Config: negative is never, 0 the default
	}
	var missing []string
	for name, v := range map[string]string{"province": *province, "hub": *hubs, "cert": *cert, "key": *key, "root": *root, "keys": *keysFile} {
		if v == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("hcx node needs %s; see 'hcx node -h'", strings.Join(missing, ", "))
	}
	prov := hcx.ProvinceCode(*province)
	if err := prov.Validate(); err != nil {
		return err
	}
	*listen, *dir = nodeDefaults(prov, *listen, *dir)
	srvTLS, err := apiTLS.serverTLS("hcx node", *listen)
	if err != nil {
		return err
	}
	hubURLs := strings.Split(*hubs, ",")
	if err := checkHubURLs(hubURLs, *hubCA != "", *apiTLS.insecure); err != nil {
		return err
	}
	if *rules == "" {
		*rules = "configs/rules/" + *province + ".yaml"
	}
	signer, err := certs.LoadSigner(*cert, *key)
	if err != nil {
		return fmt.Errorf("province signer: %w", err)
	}
	rootCert, err := certs.ReadCert(*root)
	if err != nil {
		return fmt.Errorf("national root: %w", err)
	}
	keys, err := readNodeKeys(*keysFile)
	if err != nil {
		return err
	}
	sec := nodeSecurity{PublicURL: *publicURL, Limits: api.NewLimits(api.DefaultLimitsConfig())}
	if sec.PublicURL == "" {
		sec.PublicURL = "http://" + *listen
	}
	if *oidcPath != "" {
		if sec.OIDC, err = readOIDCConfig(*oidcPath); err != nil {
			return fmt.Errorf("--oidc: %w", err)
		}
	}
	logger, err := logOpts.logger(stderr, false)
	if err != nil {
		return err
	}
	fieldKeys := map[int][]byte{}
	for v, k := range keys.FieldKeys {
		if fieldKeys[v], err = base64.StdEncoding.DecodeString(k); err != nil {
			return fmt.Errorf("%s: field key %d is not base64: %w", *keysFile, v, err)
		}
	}
	subKey, err := base64.StdEncoding.DecodeString(keys.SubjectKey)
	if err != nil {
		return fmt.Errorf("%s: subject key is not base64: %w", *keysFile, err)
	}
	var hubHTTP *http.Client // exchange.NewHubClient's default: plain HTTP
	var self atomic.Pointer[node.Node]
	if *hubCA != "" {
		anchor, err := certs.ReadTLSRoot(*hubCA)
		if err != nil {
			return fmt.Errorf("--hub-ca: %w", err)
		}
		hubHTTP = hubHTTPClient(certs.ClientTLSFrom(anchor, "", func() *certs.TrustStore {
			if n := self.Load(); n != nil {
				return n.Trust() // the hub's certificate is checked against the trust list's revocations
			}
			return nil
		}))
	}
	n, err := node.New(node.Config{
		Province: prov, Dir: *dir, Signer: signer, RootDER: rootCert.Raw, OfflineMaxAge: *offlineMaxAge, AuditHeadEvery: *headEvery,
		SubjectKey: certs.SubjectKey{Version: keys.SubjectKeyVersion, Key: subKey},
		FieldKeys:  fieldKeys, FieldKeyVersion: keys.FieldKeyVersion,
		RulesPath:    *rules,
		Hub:          exchange.NewHubClient(hubURLs, hubHTTP).SignWith(signer, nil),
		Logger:       logger,
		Cosignatures: cosignatures, Witnesses: witnesses,
	})
	if err != nil {
		return err
	}
	defer n.Close()
	self.Store(n)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	sec.Logger = logger
	h, err := nodeHandler(n, sec)
	if err != nil {
		return err
	}
	stopAdmin, err := startAdmin(*admin, stdout, logger)
	if err != nil {
		ln.Close()
		return fmt.Errorf("node: %w", err)
	}
	defer stopAdmin()
	srv := api.NewServer(h, api.ServerTimeouts{})
	go func() { _ = serveAPI(srv, ln, srvTLS) }()
	onHangup(ctx, func() {
		if err := n.ReloadRules(); err != nil {
			logger.Error("rules not reloaded", "err", err)
		}
	})
	fmt.Fprintf(stdout, "hcx node %s (%s) serving on %s, following %s\n", prov, prov.Name(), apiURL(ln, srvTLS), *hubs)
	if srvTLS == nil {
		fmt.Fprintf(stdout, "hcx node: the API is plain HTTP (no --tls-cert)\n")
	}
	err = n.Run(ctx)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	return err
}

// readSecretFile reads a file of secrets, refusing one that others may read.
func readSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

func readNodeKeys(path string) (*nodeKeys, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	var k nodeKeys
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k.SubjectKeyVersion < 1 || k.SubjectKey == "" || k.FieldKeyVersion < 1 || k.FieldKeys[k.FieldKeyVersion] == "" {
		return nil, errors.New(path + ": needs subject_key_version, subject_key, field_key_version and field_keys with that version")
	}
	return &k, nil
}
