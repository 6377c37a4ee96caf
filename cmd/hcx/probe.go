package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// probeBodyLimit bounds what a probe reads of an answer: it only needs the
// status, and the first bytes of a refusal to show the operator.
const probeBodyLimit = 512

// runProbe is a container healthcheck for images without curl (the image is
// FROM scratch): GET URL, exit 0 on 200 and non-zero otherwise, saying why.
// An https URL is verified against --ca, the federation's TLS root; there is
// no option to skip verification.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caPath := fs.String("ca", "", "the TLS root the server's certificate comes from (tls-root.crt in the CA directory); required for https URLs")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long (at most 1m)")
	setUsage(fs, "A container healthcheck for images without curl: GET URL, exit 0 on 200 and\nnon-zero otherwise, saying why. An https URL is verified against -ca.",
		"hcx probe [-ca TLS-ROOT.crt] [-timeout D] URL")
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("hcx probe needs exactly one URL, such as https://hub-1:7000/readyz; see 'hcx probe -h'")
	}
	if *timeout <= 0 || *timeout > time.Minute {
		return fmt.Errorf("hcx probe: --timeout %v: want more than 0 and at most 1m", *timeout)
	}
	raw := fs.Arg(0)
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("hcx probe: %q: want an http:// or https:// URL with a host", raw)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	switch {
	case u.Scheme == "https" && *caPath == "":
		return fmt.Errorf("hcx probe: %s is https: give --ca, the TLS root its certificate comes from (tls-root.crt in the CA directory)", raw)
	case u.Scheme == "https":
		root, err := certs.ReadTLSRoot(*caPath)
		if err != nil {
			return fmt.Errorf("hcx probe: --ca: %w", err)
		}
		tr.TLSClientConfig = certs.ClientTLS(root, "")
	case *caPath != "":
		return fmt.Errorf("hcx probe: --ca is given but %s is plain http: use the https URL", raw)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return fmt.Errorf("hcx probe: %w", err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("hcx probe: %s unreachable: %w", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeBodyLimit))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("hcx probe: %s answered %s: %q", raw, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s: %s\n", raw, resp.Status)
	return nil
}
