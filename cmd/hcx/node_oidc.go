package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// oidcFile is the --oidc file of `hcx node`: the identity providers the
// node trusts (mode 0600: it holds the node's client secrets).
//
//	{"issuers": [{"url": "https://idp.gd.example", "client_id": "hcx-node-440000",
//	  "client_secret": "...", "audiences": ["hcx-cli"], "provinces": ["440000"]}]}
type oidcFile struct {
	Issuers []oidcIssuer `json:"issuers"`
}

// oidcIssuer is one provider of an --oidc file.
type oidcIssuer struct {
	URL          string   `json:"url"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	Audiences    []string `json:"audiences"`
	Provinces    []string `json:"provinces,omitempty"`
}

// maxOIDCIssuers bounds the trusted providers of a node.
const maxOIDCIssuers = 16

// readOIDCConfig reads an --oidc file into the node's OIDC authenticator.
func readOIDCConfig(path string) (*auth.OIDC, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	var f oidcFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Issuers) == 0 || len(f.Issuers) > maxOIDCIssuers {
		return nil, fmt.Errorf("%s: list 1 to %d issuers", path, maxOIDCIssuers)
	}
	o := &auth.OIDC{}
	seen := map[string]bool{}
	for i, is := range f.Issuers {
		if is.URL == "" || is.ClientID == "" {
			return nil, fmt.Errorf("%s: issuers[%d] needs url and client_id", path, i)
		}
		if seen[is.URL] {
			return nil, fmt.Errorf("%s: issuer %s is listed twice", path, is.URL)
		}
		seen[is.URL] = true
		c := auth.IssuerConfig{URL: is.URL, ClientID: is.ClientID, ClientSecret: is.ClientSecret, Audiences: is.Audiences}
		for _, p := range is.Provinces {
			c.Provinces = append(c.Provinces, hcx.ProvinceCode(p))
			if err := c.Provinces[len(c.Provinces)-1].Validate(); err != nil {
				return nil, fmt.Errorf("%s: issuers[%d].provinces: %w", path, i, err)
			}
		}
		o.Issuers = append(o.Issuers, c)
	}
	return o, nil
}
