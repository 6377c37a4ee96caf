package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
)

// runHub runs one member of the national hub's Raft cluster until ctx ends,
// then leaves gracefully (leadership transfer if it leads).
func runHub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "hub-1", "member id, unique in the cluster")
	dir := fs.String("dir", "", "data directory (Raft log, snapshots, badger state); default hcx-data/hub/ID, where hcx dev keeps member ID's")
	raftAddr := fs.String("raft", defaultHubRaft, "Raft listen address (other members dial it); hcx dev's members take 8800, 8801, …")
	httpAddr := fs.String("http", defaultHubHTTP, "API listen address; hcx dev's members take 8700, 8701, …")
	bootstrap := fs.Bool("bootstrap", false, "bootstrap a new cluster with this member (first member only, first start only)")
	join := fs.String("join", "", "comma-separated Raft addresses (host:port) of existing members to join through, over member TLS")
	rootPath := fs.String("root", "", "national root certificate (PEM)")
	certPath := fs.String("cert", "", "this member's hub signing certificate (PEM), for checkpoints")
	keyPath := fs.String("key", "", "its SM2 key (PEM)")
	tlsCert := fs.String("tls-cert", "", "this member's hub TLS certificate (PEM, 'hcx ca issue --tls --member ID'): members talk in mutual TLS; required")
	tlsKey := fs.String("tls-key", "", "its ECDSA key (PEM)")
	insecure := fs.Bool("insecure-plaintext-members", false, "DANGER: members talk in plain TCP, unauthenticated: anyone reaching -raft can change the membership; single-machine development only")
	publicURL := fs.String("public-url", "", "scheme://host clients call this member's API at, when behind a reverse proxy or a published port: request tokens sign it; several, comma-separated, when clients reach the member under several names (such as https://hub-1:7000,https://localhost:7001)")
	apiTLS := apiTLSFlags{prefix: "api-",
		cert:     fs.String("api-tls-cert", "", "server TLS certificate of the public API, PEM ('hcx ca issue --server'; not the member certificate of -tls-cert); required unless -http is loopback"),
		key:      fs.String("api-tls-key", "", "its ECDSA key, PEM"),
		insecure: fs.Bool("insecure-plaintext-api", false, "DANGER: serve the public API in plain HTTP on an address other than loopback: anyone on the path reads and alters it"),
	}
	var witnesses listFlag
	fs.Var(&witnesses, "witness", "submission prefix of a witness this member submits checkpoints to while it leads, such as https://node-110000:8711/v1/witness or an auditor's https://auditor:9470/v1/witness (repeatable or comma-separated)")
	witnessCA := fs.String("witness-ca", "", "TLS root (PEM) the https witnesses' server certificates chain to (default: the system's roots)")
	logOpts := addLogFlags(fs)
	admin := fs.String("admin", "", adminFlagHelp)
	setUsage(fs, "Runs one member of the national hub's Raft cluster until interrupted, then leaves\ngracefully (leadership transfer if it leads). The first member starts with\n-bootstrap, the others with -join; certificates come from 'hcx ca'.",
		"hcx hub -id ID -root ROOT.crt -cert C -key K -tls-cert T -tls-key TK (-bootstrap | -join ADDRS) [flags]")
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if *rootPath == "" || *certPath == "" || *keyPath == "" {
		fs.Usage()
		return errors.New("hub: -root, -cert and -key are required (make them with 'hcx ca')")
	}
	switch {
	case *insecure && (*tlsCert != "" || *tlsKey != ""):
		return errors.New("hub: -insecure-plaintext-members and -tls-cert/-tls-key exclude each other: drop -insecure-plaintext-members")
	case !*insecure && (*tlsCert == "" || *tlsKey == ""):
		return fmt.Errorf("hub: -tls-cert and -tls-key are required: members talk in mutual TLS (make them with 'hcx ca issue --tls --name %s-tls --member %s --ip ...'); -insecure-plaintext-members runs without, for single-machine development only", *id, *id)
	}
	apiTLSConfig, err := apiTLS.serverTLS("hub", *httpAddr)
	if err != nil {
		return err
	}
	root, err := certs.ReadCert(*rootPath)
	if err != nil {
		return fmt.Errorf("hub: root certificate: %w", err)
	}
	signer, err := certs.LoadSigner(*certPath, *keyPath)
	if err != nil {
		return fmt.Errorf("hub: signing key: %w", err)
	}
	if signer.Role != certs.RoleHub {
		return fmt.Errorf("hub: %s is a %s certificate, not a hub member's", *certPath, signer.Role)
	}
	log, err := logOpts.logger(stderr, false)
	if err != nil {
		return err
	}
	if *dir == "" {
		*dir = hubDir(defaultDataDir, *id)
	}
	cfg := consensus.Config{ID: *id, Dir: *dir, RaftAddr: *raftAddr, HTTPAddr: *httpAddr, Bootstrap: *bootstrap,
		RootDER: root.Raw, Signer: signer, Logger: log, Handler: api.HubHandlerFunc(log, api.HubOptions{PublicURL: *publicURL, Limits: api.NewLimits(api.DefaultLimitsConfig())}), InsecurePlaintext: *insecure, APITLS: apiTLSConfig}
	if *join != "" {
		cfg.Join = strings.Split(*join, ",")
	}
	cfg.Witnesses = witnesses
	if *witnessCA != "" {
		anchor, err := certs.ReadTLSRoot(*witnessCA)
		if err != nil {
			return fmt.Errorf("hub: -witness-ca: %w", err)
		}
		cfg.WitnessTLS = certs.ClientTLS(anchor, "")
	}
	if !*insecure {
		if cfg.TLS, err = certs.LoadTLSIdentity(*tlsCert, *tlsKey); err != nil {
			return fmt.Errorf("hub: TLS identity: %w", err)
		}
	}
	h, err := consensus.New(cfg)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	stopAdmin, err := startAdmin(*admin, stdout, log)
	if err != nil {
		h.Close()
		return fmt.Errorf("hub: %w", err)
	}
	defer stopAdmin()
	fmt.Fprintf(stdout, "hub member %s: API %s, Raft %s\n", *id, h.URL(), h.RaftAddr())
	if apiTLSConfig == nil {
		fmt.Fprintln(stdout, "hub: the public API is plain HTTP (no -api-tls-cert)")
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := h.WaitLeader(wctx); err != nil {
		fmt.Fprintf(stderr, "hub: still no leader after 30s (%v); waiting on\n", err)
	}
	cancel()
	<-ctx.Done()
	fmt.Fprintln(stdout, "hub: leaving the cluster gracefully")
	return h.Close()
}
