package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// The public APIs of `hcx node` and `hcx hub` are served over TLS with a
// server certificate from the CA's TLS root ('hcx ca issue --server'). Plain
// HTTP is for loopback: a command refuses it on any other address unless
// told --insecure-plaintext-api. See docs/tls.md.

// apiTLSFlags are the flags of a public API listener.
type apiTLSFlags struct {
	cert, key *string
	insecure  *bool
	prefix    string // "" for hcx node, "api-" for hcx hub (whose -tls-cert is the member certificate)
}

// serverTLS loads the server certificate, or returns nil for plain HTTP
// after checking that plain HTTP is allowed on listen.
func (fl apiTLSFlags) serverTLS(cmd, listen string) (*tls.Config, error) {
	cert, key := "--"+fl.prefix+"tls-cert", "--"+fl.prefix+"tls-key"
	switch {
	case (*fl.cert == "") != (*fl.key == ""):
		return nil, fmt.Errorf("%s: give both %s and %s (a server certificate and its key from 'hcx ca issue --server'), or neither", cmd, cert, key)
	case *fl.cert != "" && *fl.insecure:
		return nil, fmt.Errorf("%s: --insecure-plaintext-api and %s exclude each other: drop --insecure-plaintext-api", cmd, cert)
	case *fl.cert == "":
		if !*fl.insecure && !isLoopbackAddr(listen) {
			return nil, fmt.Errorf("%s: %s is not a loopback address, and the API would be plain HTTP: give %s and %s (make them with 'hcx ca issue --server --name NAME --dns HOST --ip ADDR'); --insecure-plaintext-api serves plain HTTP anyway, for a network you fully trust", cmd, listen, cert, key)
		}
		return nil, nil
	}
	id, err := certs.LoadTLSIdentity(*fl.cert, *fl.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", cmd, cert, err)
	}
	if !hasServerAuth(id.Cert.ExtKeyUsage) {
		return nil, fmt.Errorf("%s: %s is not a server certificate (no serverAuth); issue one with 'hcx ca issue --server'", cmd, *fl.cert)
	}
	return certs.ServerTLS(id), nil
}

func hasServerAuth(ekus []x509.ExtKeyUsage) bool {
	for _, u := range ekus {
		if u == x509.ExtKeyUsageServerAuth {
			return true
		}
	}
	return false
}

// isLoopbackAddr reports whether a listen address (host:port) binds only
// loopback: localhost or a loopback IP. An empty host binds every address.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// checkHubURLs refuses a hub member URL the node cannot follow safely: an
// https URL without the TLS root to verify it (--hub-ca), or a plain http
// URL to a host other than loopback unless insecure.
func checkHubURLs(urls []string, haveCA, insecure bool) error {
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
			return fmt.Errorf("hcx node: --hub %q: want a URL such as https://hub-1:8700", u)
		}
		switch {
		case p.Scheme == "https" && !haveCA:
			return fmt.Errorf("hcx node: --hub %s is https: give --hub-ca, the TLS root the hub's certificates come from (tls-root.crt in the CA directory)", u)
		case p.Scheme == "http" && !insecure && !isLoopbackAddr(p.Host) && p.Hostname() != "localhost":
			return fmt.Errorf("hcx node: --hub %s is plain HTTP to another machine: use https with --hub-ca, or --insecure-plaintext-api for a network you fully trust", u)
		}
	}
	return nil
}

// hubHTTPClient is the HTTP client a node talks to the hub with, verifying
// the hub members with tlsCfg (certs.ClientTLSFrom). The time-out leaves
// room for the hub's long polls (exchange.HubClient's default).
func hubHTTPClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 65 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, Proxy: http.ProxyFromEnvironment,
	}}
}

// serveAPI serves srv on ln, over TLS when tlsCfg is set.
func serveAPI(srv *http.Server, ln net.Listener, tlsCfg *tls.Config) error {
	if tlsCfg == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = tlsCfg.Clone()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// apiURL is the base URL of a listener.
func apiURL(ln net.Listener, tlsCfg *tls.Config) string {
	if tlsCfg != nil {
		return "https://" + ln.Addr().String()
	}
	return "http://" + ln.Addr().String()
}
