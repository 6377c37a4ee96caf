package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hcxfed/hcx/certs"
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
//
// Run again, it reuses what is there (certificates past their life are
// renewed under a new name, as `hcx dev` does).
func runDevInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx dev init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "hcx-data", "directory to write the material into (made if missing)")
	hubs := fs.Int("hubs", 3, "hub members (1, 3 or 5), named hub-1 … hub-N")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hcx dev init: unexpected argument %q; see 'hcx dev init -h'", fs.Arg(0))
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
	fmt.Fprintf(stdout, "hcx dev init: material for %d hub members and provinces %v in %s\n", *hubs, devProvinces, *dir)
	return nil
}
