package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hcxfed/hcx"
)

// OIDC reads OpenID Connect ID tokens from trusted identity providers: as
// an Authenticator it reads `Authorization: Bearer <ID token>` (operators,
// the national auditor, residents); VerifyIdentity reads a resident's
// verified document from one; AuthCodeURL and Exchange run the browser's
// authorization code flow (api/node_oidc.go).
//
// Only the configured issuers are trusted. Each token is checked for its
// signature (algorithms RS256 and ES256 only, keys from the issuer's JWKS),
// its audience (the node's client id, or one of Audiences), its expiry
// against Now, and its hcx claims. A provider's metadata is fetched on first
// use, with a timeout, and kept; while a provider cannot be reached its
// tokens are answered 503 naming it, and it is tried again after a short
// pause.
//
// Set the fields before first use; an OIDC is safe for concurrent use.
type OIDC struct {
	Issuers []IssuerConfig
	// Now is the clock of expiry checks. Default time.Now.
	Now func() time.Time
	// HTTPClient talks to the providers. Default: a client with a 5 s
	// timeout.
	HTTPClient *http.Client
	// CachedTokens bounds the cache of verified bearer tokens
	// (DefaultCachedIDTokens if 0; negative: no cache).
	CachedTokens int

	once    sync.Once
	issuers map[string]*issuer
	cache   *tokenCache
}

// IssuerConfig is one trusted identity provider.
type IssuerConfig struct {
	// URL is the issuer, exactly as the tokens' iss says it.
	URL string
	// ClientID is this server's client id at the provider: the audience its
	// ID tokens must carry.
	ClientID string
	// ClientSecret authenticates this server at the provider's token
	// endpoint in the browser login (empty for bearer tokens only).
	ClientSecret string
	// Audiences are further audiences accepted in bearer tokens, such as
	// the command-line client's, so that a token from `hcx dev token` works
	// with curl. The browser login accepts only ClientID.
	Audiences []string
	// Provinces, when set, are the only provinces whose operators this
	// issuer may vouch for (a province's own identity provider).
	Provinces []hcx.ProvinceCode
}

// VerifiedIdentity is the real-name identity an identity provider vouches
// for in an ID token (hcx_doc_verified true). The identity package binds it
// to a subject; it never goes to logs.
type VerifiedIdentity struct {
	DocType   hcx.DocType
	DocNumber string
	Name      string
	// Issuer and Subject name the account at the provider.
	Issuer  string
	Subject string
}

// Login is the outcome of a browser login: who logged in and, for a
// resident whose token carries a verified document, that document.
type Login struct {
	Principal *Principal
	Identity  *VerifiedIdentity
}

// Limits and policy.
const (
	// MaxIDTokenBytes bounds a bearer token.
	MaxIDTokenBytes = 16 << 10
	// oidcDiscoveryTimeout bounds one fetch of a provider's metadata or keys.
	oidcDiscoveryTimeout = 5 * time.Second
	// oidcRetryAfter is how long a provider that could not be reached is
	// not tried again.
	oidcRetryAfter = 10 * time.Second
	// maxIssuedAtSkew is how far in the future iat may be.
	maxIssuedAtSkew = time.Minute
	// DefaultCachedIDTokens bounds the cache of verified bearer tokens.
	DefaultCachedIDTokens = 10_000
)

// oidcAlgorithms is the signature algorithm allow-list.
var oidcAlgorithms = []string{oidc.RS256, oidc.ES256}

// ID token claims that hcx reads, beside the standard ones.
type hcxClaims struct {
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name"`
	Role              string `json:"hcx_role"`
	Province          string `json:"hcx_province"`
	DocType           string `json:"hcx_doc_type"`
	DocNumber         string `json:"hcx_doc_number"`
	DocVerified       bool   `json:"hcx_doc_verified"`
}

// issuer is one configured provider and, once discovered, its verifier.
type issuer struct {
	cfg IssuerConfig

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	lastErr  error
	retryAt  time.Time
}

func (o *OIDC) init() {
	o.once.Do(func() {
		o.issuers = map[string]*issuer{}
		for _, c := range o.Issuers {
			o.issuers[c.URL] = &issuer{cfg: c}
		}
		if o.HTTPClient == nil {
			o.HTTPClient = &http.Client{Timeout: oidcDiscoveryTimeout}
		}
		size := o.CachedTokens
		if size == 0 {
			size = DefaultCachedIDTokens
		}
		if size > 0 {
			o.cache = &tokenCache{max: size, m: make(map[[sha256.Size]byte]*verified)}
		}
	})
}

func (o *OIDC) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// discover returns the issuer's verifier, fetching the provider's metadata
// on first use. It fails with EUnavailable while the provider cannot be
// reached.
func (o *OIDC) discover(is *issuer) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.provider != nil {
		return is.provider, is.verifier, nil
	}
	if is.lastErr != nil && o.now().Before(is.retryAt) {
		return nil, nil, is.lastErr
	}
	// Not a request's context: go-oidc keeps this one's values for the key
	// set's later fetches, and a request that gives up should not mark the
	// provider down for everyone.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.Background(), o.HTTPClient), oidcDiscoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, is.cfg.URL)
	if err != nil {
		is.lastErr = providerDown(is.cfg.URL, err)
		is.retryAt = o.now().Add(oidcRetryAfter)
		return nil, nil, is.lastErr
	}
	is.provider, is.lastErr = p, nil
	// Audience and expiry are checked by verify, against our own list and
	// clock, so that each failure gets its own code.
	is.verifier = p.Verifier(&oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true, SupportedSigningAlgs: oidcAlgorithms})
	return is.provider, is.verifier, nil
}

func providerDown(url string, err error) *hcx.Error {
	return &hcx.Error{Class: hcx.EUnavailable, Code: "oidc_provider_unavailable", Message: fmt.Sprintf("the identity provider %s cannot be reached; try again shortly", url), Err: err}
}

func tokenError(code, format string, args ...any) *hcx.Error {
	return &hcx.Error{Class: hcx.EUnauthorized, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Authenticate implements Authenticator for `Authorization: Bearer <ID
// token>`. A bearer token whose JOSE header names a typ other than JWT is
// not an ID token and is left to other authenticators (nil, nil).
// Errors: token_malformed, token_unknown_issuer, token_bad_signature,
// token_wrong_audience, token_expired, token_claims (EUnauthorized);
// oidc_provider_unavailable (EUnavailable). A token that passed every check
// is kept (tokenCache) and, presented again before its exp, is answered
// without checking its signature again.
func (o *OIDC) Authenticate(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, nil
	}
	raw = strings.TrimSpace(raw)
	o.init()
	// A cached token was an ID token of a configured issuer: the header
	// need not be read again.
	v := o.cache.get(raw, o.now())
	hit := v != nil
	if !hit {
		hdr, _, err := peekJWT(raw)
		if err != nil {
			return nil, err
		}
		if hdr.Typ != "" && !strings.EqualFold(hdr.Typ, "JWT") {
			return nil, nil
		}
		if v, err = o.verify(r.Context(), raw, true); err != nil {
			return nil, err
		}
	}
	p, err := v.principal()
	if err != nil {
		return nil, err
	}
	if !hit {
		o.cache.put(raw, v)
	}
	p.Method = MethodBearer
	return p, nil
}

// VerifyIdentity checks a raw ID token like Authenticate and returns the
// verified identity document it carries. Errors: those of Authenticate, and
// token_claims when the token carries no verified document or an invalid
// one.
func (o *OIDC) VerifyIdentity(ctx context.Context, rawIDToken string) (*VerifiedIdentity, error) {
	v, hit, err := o.verifyBearer(ctx, rawIDToken)
	if err != nil {
		return nil, err
	}
	id, err := v.identity(o.now())
	if err != nil {
		return nil, err
	}
	if !hit {
		o.cache.put(rawIDToken, v)
	}
	return id, nil
}

// verifyBearer is verify of a bearer token, answered from the cache of
// tokens that checked out before while they have not expired; hit says
// whether it was. The caller puts a token in the cache only once
// everything it checks of it (principal, identity) has passed.
func (o *OIDC) verifyBearer(ctx context.Context, raw string) (v *verified, hit bool, err error) {
	o.init()
	if v := o.cache.get(raw, o.now()); v != nil {
		return v, true, nil
	}
	v, err = o.verify(ctx, raw, true)
	return v, false, err
}

// tokenCache holds bearer ID tokens that were verified, by the SHA-256 of
// their exact bytes, at most max of them; when full, an entry picked at
// random (Go's map order) makes room. An entry answers only while now is
// before the token's exp, and carries the issuer it was verified against
// (the configuration is fixed after first use). A nil cache holds nothing.
type tokenCache struct {
	mu  sync.Mutex
	max int
	m   map[[sha256.Size]byte]*verified
}

func (c *tokenCache) get(raw string, now time.Time) *verified {
	if c == nil || len(raw) > MaxIDTokenBytes {
		return nil
	}
	k := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.m[k]
	if v == nil {
		return nil
	}
	if !now.Before(v.tok.Expiry) {
		delete(c.m, k)
		return nil
	}
	return v
}

func (c *tokenCache) put(raw string, v *verified) {
	if c == nil {
		return
	}
	k := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// DefaultIssuer is the first configured issuer, "" if none.
func (o *OIDC) DefaultIssuer() string {
	if len(o.Issuers) == 0 {
		return ""
	}
	return o.Issuers[0].URL
}

func (o *OIDC) issuer(url string) (*issuer, error) {
	o.init()
	is, ok := o.issuers[url]
	if !ok {
		return nil, &hcx.Error{Class: hcx.EInvalid, Code: "invalid_issuer", Field: "issuer", Message: fmt.Sprintf("%q is not a trusted identity provider", url)}
	}
	return is, nil
}

func (o *OIDC) oauth2Config(issuerURL, redirectURL string) (*oauth2.Config, *issuer, error) {
	is, err := o.issuer(issuerURL)
	if err != nil {
		return nil, nil, err
	}
	p, _, err := o.discover(is)
	if err != nil {
		return nil, nil, err
	}
	return &oauth2.Config{
		ClientID:     is.cfg.ClientID,
		ClientSecret: is.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       []string{oidc.ScopeOpenID, "profile"},
	}, is, nil
}

// AuthCodeURL is where to send a browser to log in at issuerURL: an
// authorization code request with state, nonce and a PKCE challenge made
// from verifier. Errors: invalid_issuer (EInvalid),
// oidc_provider_unavailable (EUnavailable).
func (o *OIDC) AuthCodeURL(issuerURL, redirectURL, state, nonce, verifier string) (string, error) {
	c, _, err := o.oauth2Config(issuerURL, redirectURL)
	if err != nil {
		return "", err
	}
	return c.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// Exchange trades an authorization code for an ID token at issuerURL and
// checks it: audience this server's ClientID only, and the nonce of the
// login. Errors: oidc_code_refused (EUnauthorized) when the provider refuses
// the code, token_nonce (EUnauthorized), those of Authenticate.
func (o *OIDC) Exchange(ctx context.Context, issuerURL, redirectURL, code, verifier, nonce string) (*Login, error) {
	c, _, err := o.oauth2Config(issuerURL, redirectURL)
	if err != nil {
		return nil, err
	}
	ectx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, o.HTTPClient), oidcDiscoveryTimeout)
	defer cancel()
	tok, err := c.Exchange(ectx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, &hcx.Error{Class: hcx.EUnauthorized, Code: "oidc_code_refused", Message: "the identity provider refused the login code; log in again", Err: err}
		}
		return nil, providerDown(issuerURL, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, tokenError("token_malformed", "the identity provider answered without an ID token")
	}
	v, err := o.verify(ctx, raw, false)
	if err != nil {
		return nil, err
	}
	if v.iss.cfg.URL != issuerURL {
		return nil, tokenError("token_unknown_issuer", "the ID token comes from %s, not from %s where the login started", v.iss.cfg.URL, issuerURL)
	}
	if nonce == "" || v.tok.Nonce != nonce {
		return nil, tokenError("token_nonce", "the ID token's nonce is not this login's: log in again")
	}
	p, err := v.principal()
	if err != nil {
		return nil, err
	}
	p.Method = MethodSession
	l := &Login{Principal: p}
	if p.Role == RoleResident {
		if l.Identity, err = v.identity(o.now()); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// verified is an ID token that checked out.
type verified struct {
	iss    *issuer
	tok    *oidc.IDToken
	claims hcxClaims
}

// verify checks raw: a known issuer, its signature, the audience (bearer:
// ClientID or Audiences; login: ClientID only), expiry and issued-at.
func (o *OIDC) verify(ctx context.Context, raw string, bearer bool) (*verified, error) {
	o.init()
	_, payload, err := peekJWT(raw)
	if err != nil {
		return nil, err
	}
	is, ok := o.issuers[payload.Iss]
	if !ok {
		return nil, tokenError("token_unknown_issuer", "the ID token's issuer %q is not a trusted identity provider", truncate(payload.Iss, 100))
	}
	_, verifier, err := o.discover(is)
	if err != nil {
		return nil, err
	}
	vctx, cancel := context.WithTimeout(ctx, oidcDiscoveryTimeout)
	defer cancel()
	tok, err := verifier.Verify(vctx, raw)
	if err != nil {
		if vctx.Err() != nil || strings.Contains(err.Error(), "fetching keys") {
			return nil, providerDown(is.cfg.URL, err)
		}
		return nil, &hcx.Error{Class: hcx.EUnauthorized, Code: "token_bad_signature", Message: fmt.Sprintf("the ID token's signature does not check out against %s's keys (allowed algorithms: %s)", is.cfg.URL, strings.Join(oidcAlgorithms, ", ")), Err: err}
	}
	audiences := []string{is.cfg.ClientID}
	if bearer {
		audiences = append(audiences, is.cfg.Audiences...)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return a != "" && slices.Contains(audiences, a) }) {
		return nil, tokenError("token_wrong_audience", "the ID token is for %s, not for this server (%s)", truncate(strings.Join(tok.Audience, ", "), 200), strings.Join(audiences, ", "))
	}
	now := o.now()
	if !now.Before(tok.Expiry) {
		return nil, tokenError("token_expired", "the ID token expired at %s; get a new one", tok.Expiry.UTC().Format(time.RFC3339))
	}
	if tok.IssuedAt.After(now.Add(maxIssuedAtSkew)) {
		return nil, tokenError("token_claims", "the ID token is issued in the future (%s); check the clocks", tok.IssuedAt.UTC().Format(time.RFC3339))
	}
	if tok.Subject == "" || len(tok.Subject) > 255 {
		return nil, tokenError("token_claims", "the ID token's sub must be 1 to 255 characters")
	}
	v := &verified{iss: is, tok: tok}
	if err := tok.Claims(&v.claims); err != nil {
		return nil, tokenError("token_claims", "the ID token's hcx claims do not parse: %v", err)
	}
	return v, nil
}

// principal maps the role claims to a Principal.
func (v *verified) principal() (*Principal, error) {
	c := &v.claims
	p := &Principal{Actor: "oidc:" + v.iss.cfg.URL + "#" + v.tok.Subject}
	if len(c.PreferredUsername) > 64 {
		return nil, tokenError("token_claims", "preferred_username is longer than 64 bytes")
	}
	switch Role(c.Role) {
	case RoleOperator:
		prov := hcx.ProvinceCode(c.Province)
		if err := prov.Validate(); err != nil {
			return nil, tokenError("token_claims", "an operator's hcx_province must be a province code: %v", err)
		}
		if len(v.iss.cfg.Provinces) > 0 && !slices.Contains(v.iss.cfg.Provinces, prov) {
			return nil, tokenError("token_claims", "the identity provider %s may not vouch for operators of %s", v.iss.cfg.URL, prov)
		}
		p.Role, p.Province, p.Name = RoleOperator, prov, c.PreferredUsername
	case RoleAuditor:
		p.Role, p.Name = RoleAuditor, c.PreferredUsername
	case RoleNational:
		// National platform staff are vouched for by the national
		// identity provider; a province's own provider (one limited to
		// Provinces) may not make them.
		if len(v.iss.cfg.Provinces) > 0 {
			return nil, tokenError("token_claims", "the identity provider %s is a province's and may not vouch for national platform staff", v.iss.cfg.URL)
		}
		p.Role, p.Name = RoleNational, c.PreferredUsername
	case RoleResident:
		// The subject is bound by the node (VerifyIdentity, BindIdentity);
		// a resident's name stays out of the Principal.
		p.Role = RoleResident
	default:
		return nil, tokenError("token_claims", "hcx_role %q must be operator, auditor, national or resident", truncate(c.Role, 40))
	}
	return p, nil
}

// identity reads the verified document.
func (v *verified) identity(now time.Time) (*VerifiedIdentity, error) {
	c := &v.claims
	if Role(c.Role) != RoleResident {
		return nil, tokenError("token_claims", "only a resident's ID token carries an identity to bind, not a %s's", truncate(c.Role, 40))
	}
	if !c.DocVerified {
		return nil, tokenError("token_claims", "the ID token does not say the document is verified (hcx_doc_verified)")
	}
	t := hcx.DocType(c.DocType)
	if err := t.Validate(); err != nil {
		return nil, tokenError("token_claims", "hcx_doc_type: %v", err)
	}
	n := hcx.NormaliseDocNumber(c.DocNumber)
	if err := hcx.ValidateDocument(t, n, now); err != nil {
		return nil, tokenError("token_claims", "hcx_doc_number is not a valid %s number", t)
	}
	if c.Name == "" || len(c.Name) > 200 {
		return nil, tokenError("token_claims", "the ID token's name must be 1 to 200 bytes")
	}
	return &VerifiedIdentity{DocType: t, DocNumber: n, Name: c.Name, Issuer: v.iss.cfg.URL, Subject: v.tok.Subject}, nil
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
}

type jwtPayload struct {
	Iss string `json:"iss"`
}

// peekJWT reads a compact JWS's header and issuer without checking
// anything, to pick the issuer whose keys check it.
func peekJWT(raw string) (*jwtHeader, *jwtPayload, error) {
	if len(raw) > MaxIDTokenBytes {
		return nil, nil, tokenError("token_malformed", "the bearer token is longer than %d bytes", MaxIDTokenBytes)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, nil, tokenError("token_malformed", "the bearer token is not a JWT (three base64url parts separated by dots)")
	}
	var h jwtHeader
	var p jwtPayload
	for i, dst := range []any{&h, &p} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil {
			return nil, nil, tokenError("token_malformed", "the bearer token's %s is not base64url JSON", [...]string{"header", "payload"}[i])
		}
	}
	return &h, &p, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
