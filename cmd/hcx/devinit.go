package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/devidp"
)

// runDevInit is `hcx dev init`: the material of a development federation
// whose members run as separate processes on separate hosts (the
// docker-compose.yml at the top level), made by the code `hcx dev` makes
// its own with, so a scratch image (no shell) needs no script. It writes
// under --dir:
//
//	ca/                         the CA (EnsureDevPKI): the root, the TLS root
//	                            (ca/tls-root.crt), per province its signer,
//	                            feed and checkpoint device, per hub member its
//	                            checkpoint signer and member TLS identity;
//	ca/issued/api-hub-N.*       public API server certificates for the host
//	ca/issued/api-node-P.*      names hub-N and node-P (and localhost)
//	keys/P.json                 each node's keys file (mode 0600)
//	rules/P.yaml                each province's sample rules
//	idp/                        the development identity provider `hcx dev
//	                            idp --dir DIR` serves: its issuer, signing
//	                            key and users (idp.json, which hcx dev token
//	                            --dir DIR reads) and clients.json, one
//	                            client per node
//	oidc/P.json                 each node's --oidc file, trusting that
//	                            provider (mode 0600: the client secret)
//
// Run again, it reuses what is there (certificates past their life are
// renewed under a new name, as `hcx dev` does).
func runDevInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx dev init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "hcx-data", "directory to write the material into (made if missing)")
	hubs := fs.Int("hubs", 3, "hub members (1, 3 or 5), named hub-1 … hub-N")
	issuer := fs.String("idp-issuer", defaultIdPIssuer, "the identity provider's issuer URL, as nodes and users both reach it (hcx dev idp serves it)")
	nodeURLs := map[hcx.ProvinceCode]string{}
	fs.Func("node-url", "P=URL: province P's node as browsers reach it, for its login callback (repeatable; default https://localhost:<8700+first two digits of P>, as docker-compose.yml publishes it)", func(v string) error {
		p, u, ok := strings.Cut(v, "=")
		if !ok || !slices.Contains(devProvinces, hcx.ProvinceCode(p)) {
			return fmt.Errorf("want P=URL with P one of %v", devProvinces)
		}
		if err := checkBaseURL(u); err != nil {
			return err
		}
		nodeURLs[hcx.ProvinceCode(p)] = u
		return nil
	})
	setUsage(fs, "Writes a federation's material (CA, certificates, keys, identity provider) into\nDIR for members on separate hosts (docker-compose.yml); run again, it reuses\nwhat is there.",
		"hcx dev init --dir DIR [flags]")
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hcx dev init: unexpected argument %q; see 'hcx dev init -h'", fs.Arg(0))
	}
	if err := checkBaseURL(*issuer); err != nil {
		return fmt.Errorf("hcx dev init: --idp-issuer: %w", err)
	}
	for _, p := range devProvinces {
		if nodeURLs[p] == "" {
			prefix, _ := strconv.Atoi(string(p)[:2])
			nodeURLs[p] = fmt.Sprintf("https://localhost:%d", 8700+prefix)
		}
	}
	if *hubs != 1 && *hubs != 3 && *hubs != 5 {
		return fmt.Errorf("hcx dev init: --hubs %d: a hub cluster has 1, 3 or 5 members", *hubs)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("hcx dev init: --dir: %w", err)
	}
	now := time.Now().UTC()
	hubIDs := make([]string, *hubs)
	for i := range hubIDs {
		hubIDs[i] = fmt.Sprintf("hub-%d", i+1)
	}
	pki, err := certs.EnsureDevPKI(filepath.Join(*dir, "ca"), devProvinces, hubIDs, now)
	if err != nil {
		return fmt.Errorf("hcx dev init: certificates: %w", err)
	}
	hosts := append([]string(nil), hubIDs...)
	for _, p := range devProvinces {
		hosts = append(hosts, "node-"+string(p))
	}
	for _, h := range hosts {
		// The port is irrelevant: devServerTLS names the host.
		if _, err := devServerTLS(pki.CA, "api-"+h, h+":443", now); err != nil {
			return fmt.Errorf("hcx dev init: %w", err)
		}
	}
	keys, err := ensureDevKeys(filepath.Join(*dir, "keys.json"), devProvinces)
	if err != nil {
		return fmt.Errorf("hcx dev init: keys: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(*dir, "keys"), 0o700); err != nil {
		return fmt.Errorf("hcx dev init: %w", err)
	}
	for _, p := range devProvinces {
		b, _ := json.MarshalIndent(nodeKeys{
			SubjectKeyVersion: 1, SubjectKey: base64.StdEncoding.EncodeToString(keys.Subject),
			FieldKeyVersion: 1, FieldKeys: map[int]string{1: base64.StdEncoding.EncodeToString(keys.Fields[p])},
		}, "", "  ")
		if err := os.WriteFile(filepath.Join(*dir, "keys", string(p)+".json"), b, 0o600); err != nil {
			return fmt.Errorf("hcx dev init: %w", err)
		}
	}
	if err := ensureRules(filepath.Join(*dir, "rules"), devProvinces); err != nil {
		return fmt.Errorf("hcx dev init: rules: %w", err)
	}
	if err := ensureDevIdP(*dir, *issuer, nodeURLs); err != nil {
		return fmt.Errorf("hcx dev init: identity provider: %w", err)
	}
	fmt.Fprintf(stdout, "hcx dev init: material for %d hub members and provinces %v in %s; identity provider %s\n", *hubs, devProvinces, *dir, *issuer)
	return nil
}

// checkBaseURL refuses a URL that is not absolute http(s) or ends in a slash.
func checkBaseURL(u string) error {
	if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.RawQuery != "" || strings.HasSuffix(u, "/") {
		return fmt.Errorf("%q: want an absolute http(s) URL without a query or a trailing slash", u)
	}
	return nil
}

// ensureDevIdP writes the identity provider's state to dir/idp (the
// issuer, key and users, kept from an earlier run but for the issuer),
// registers each node as its client (keeping an earlier secret) and writes
// each node's --oidc file to dir/oidc.
func ensureDevIdP(dir, issuer string, nodeURLs map[hcx.ProvinceCode]string) error {
	idpDir := filepath.Join(dir, "idp")
	// New validates the issuer and writes the key and idp.json; it serves nothing.
	if _, err := devidp.New(devidp.Config{Issuer: issuer, Dir: idpDir, Provinces: devProvinces}); err != nil {
		return err
	}
	old, err := devidp.LoadClients(idpDir)
	if err != nil {
		return err
	}
	secrets := map[string]string{}
	for _, c := range old {
		secrets[c.ID] = c.Secret
	}
	if err := os.MkdirAll(filepath.Join(dir, "oidc"), 0o700); err != nil {
		return err
	}
	var clients []devidp.Client
	for _, p := range devProvinces {
		id := devidp.NodeClientID(p)
		secret := secrets[id]
		if secret == "" {
			secret = fmt.Sprintf("%x", randomKey(16))
		}
		clients = append(clients, devidp.Client{ID: id, Secret: secret, RedirectURIs: []string{nodeURLs[p] + "/v1/auth/oidc/callback"}})
		var f oidcFile
		f.Issuers = append(f.Issuers, oidcIssuer{URL: issuer, ClientID: id, ClientSecret: secret, Audiences: []string{devidp.CLIClientID}})
		b, _ := json.MarshalIndent(&f, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "oidc", string(p)+".json"), b, 0o600); err != nil {
			return err
		}
	}
	return devidp.SaveClients(idpDir, clients)
}
