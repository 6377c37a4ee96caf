package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/hcxfed/hcx/devidp"
)

// defaultIdPIssuer is the development identity provider of
// docker-compose.yml. The nodes reach it by the network alias
// idp.localhost, the host at the port published on 127.0.0.1, where
// browsers, curl and hcx dev token dial every .localhost name (RFC 6761):
// one issuer, the same iss on both sides (docs/decisions.md, "Issue 14:
// the identity provider in compose").
const defaultIdPIssuer = "http://idp.localhost:8690"

// runDevIdP is `hcx dev idp`: the development identity provider of `hcx
// dev` on its own, for a federation whose nodes run elsewhere (the
// docker-compose.yml service idp). Its issuer, signing key, users and
// clients (one per node) are what `hcx dev init` wrote to DIR/idp.
func runDevIdP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx dev idp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "hcx-data", "the directory hcx dev init wrote (the provider's state is in DIR/idp)")
	listen := fs.String("listen", defaultIdPAddr, "address to listen on (host:port), where hcx dev runs it")
	logOpts := addLogFlags(fs)
	setUsage(fs, "Serves the development OpenID provider of 'hcx dev' on its own, for a federation\nwhose nodes run elsewhere (docker-compose.yml), with the users and clients\n'hcx dev init' wrote to DIR/idp.",
		"hcx dev idp --dir DIR --listen ADDR")
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("hcx dev idp: unexpected argument %q; see 'hcx dev idp -h'", fs.Arg(0))
	}
	logger, err := logOpts.logger(stderr, false)
	if err != nil {
		return err
	}
	s, err := startDevIdP(filepath.Join(*dir, "idp"), *listen, logger)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "hcx dev idp: %s, listening on %s\n", s.Issuer(), *listen)
	<-ctx.Done()
	return nil
}

// startDevIdP starts the provider kept in dir with the issuer and clients
// hcx dev init recorded there.
func startDevIdP(dir, listen string, logger *slog.Logger) (*devidp.Server, error) {
	st, err := devidp.ReadState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("hcx dev idp: no provider in %s: run hcx dev init first (or give --dir)", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("hcx dev idp: %w", err)
	}
	clients, err := devidp.LoadClients(dir)
	if err != nil {
		return nil, fmt.Errorf("hcx dev idp: %w", err)
	}
	s, err := devidp.Start(listen, devidp.Config{Issuer: st.Issuer, Dir: dir, Provinces: devProvinces, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("hcx dev idp: %w", err)
	}
	for _, c := range clients {
		if err := s.RegisterClient(c); err != nil {
			s.Close()
			return nil, fmt.Errorf("hcx dev idp: %s: %w", filepath.Join(dir, devidp.ClientsFile), err)
		}
	}
	return s, nil
}
