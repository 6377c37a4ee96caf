package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Request tokens (docs/protocol.md, "Request tokens"): a machine proves
// itself on every request with a compact JWS signed by its certificate's SM2
// key, sent as
//
//	Authorization: HCX-SM2 <jws>
//
// whose protected header is {"alg":"SM2","kid":<kid>,"typ":"hcx-req+jws"} and
// whose payload is exactly
//
//	{"htm":"POST","htu":"http://host/path?query","bh":"<b64url SM3(body)>","iat":<unix s>,"jti":"<b64url, 16+ random bytes>"}
//
// The token binds the method, the URL, the body, the time and a one-time id:
// a token seen once cannot be used again, for another URL or another body,
// nor after Skew.
const (
	// TokenScheme is the Authorization scheme of request tokens.
	TokenScheme = "HCX-SM2"
	// TypRequest is the JWS typ of a request token.
	TypRequest = "hcx-req+jws"
	// MaxTokenBytes bounds a token (the header value after the scheme).
	MaxTokenBytes = 4096
	// MaxTokenURL bounds htu.
	MaxTokenURL = 2048
	// DefaultTokenSkew is how far iat may be from the verifier's clock.
	DefaultTokenSkew = 60 * time.Second
	// DefaultTokenBody bounds the body a verifier reads to hash, and a
	// SigningTransport buffers to sign.
	DefaultTokenBody = 8 << 20
	// DefaultReplayEntries bounds a ReplayCache made with size 0.
	DefaultReplayEntries = 1 << 18
)

// TokenClaims is the payload of a request token.
type TokenClaims struct {
	Htm string `json:"htm"` // the HTTP method
	Htu string `json:"htu"` // scheme://host/path?query as the client called it
	Bh  string `json:"bh"`  // b64url (no padding) SM3 of the body, of the empty body when none
	Iat int64  `json:"iat"` // Unix seconds when signed
	Jti string `json:"jti"` // a one-time id: b64url of 16 to 64 random bytes
}

var b64u = base64.RawURLEncoding.Strict()

// ParseTokenClaims reads a request token's payload strictly (exactly the five
// members, each once, no whitespace; hcx.UnmarshalStrict) and checks each
// member's form. Errors are *hcx.Error of class EUnauthorized, code
// token_malformed, naming the member.
func ParseTokenClaims(payload []byte) (*TokenClaims, error) {
	var c TokenClaims
	if err := hcx.UnmarshalStrict(payload, &c); err != nil {
		return nil, malformed("payload: %v", err)
	}
	if c.Htm == "" || len(c.Htm) > 16 || strings.ToUpper(c.Htm) != c.Htm || strings.ContainsAny(c.Htm, " \t/:") {
		return nil, malformed("htm %q is not an HTTP method in capitals, such as POST", c.Htm)
	}
	if len(c.Htu) > MaxTokenURL || !(strings.HasPrefix(c.Htu, "http://") || strings.HasPrefix(c.Htu, "https://")) {
		return nil, malformed("htu must be the absolute http(s) URL called, at most %d bytes", MaxTokenURL)
	}
	if bh, err := b64u.DecodeString(c.Bh); err != nil || len(bh) != 32 {
		return nil, malformed("bh must be the unpadded base64url SM3 digest (32 bytes) of the body")
	}
	if c.Iat <= 0 {
		return nil, malformed("iat must be Unix seconds, got %d", c.Iat)
	}
	if j, err := b64u.DecodeString(c.Jti); err != nil || len(j) < 16 || len(j) > 64 {
		return nil, malformed("jti must be unpadded base64url of 16 to 64 random bytes")
	}
	return &c, nil
}

func malformed(format string, args ...any) *hcx.Error {
	return hcx.Errorf(hcx.EUnauthorized, "token_malformed", "request token: "+format, args...)
}

// BodyHash is the bh of a body: unpadded base64url SM3.
func BodyHash(body []byte) string {
	sum := certs.SM3(body)
	return b64u.EncodeToString(sum[:])
}

// clientURL is the htu a client signs: the URL it sends, without user info
// or fragment, the Host it sends (req.Host when set).
func clientURL(req *http.Request) string {
	host := req.URL.Host
	if req.Host != "" {
		host = req.Host
	}
	return req.URL.Scheme + "://" + host + req.URL.RequestURI()
}

// SignRequest signs req as s: it sets the Authorization header to a fresh
// request token over req's method, URL and body (nil for none) at now. The
// caller sends exactly body. It fails only if signing fails or the URL is not
// absolute http(s).
func SignRequest(req *http.Request, body []byte, s *certs.Signer, now time.Time) error {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return fmt.Errorf("sign request: the URL must be absolute http(s), got %q", req.URL)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return err
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	payload, err := json.Marshal(TokenClaims{Htm: method, Htu: clientURL(req), Bh: BodyHash(body), Iat: now.Unix(), Jti: b64u.EncodeToString(jti)})
	if err != nil {
		return err
	}
	tok, err := s.SignJWS(TypRequest, payload)
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	req.Header.Set("Authorization", TokenScheme+" "+tok)
	return nil
}

// SigningTransport is an http.RoundTripper that signs every request it sends
// with Signer (SignRequest), buffering the body (at most MaxBody bytes,
// DefaultTokenBody if 0) to hash it. Redirects and retries go through it
// again and get fresh tokens. The hub client and the CLI use it.
type SigningTransport struct {
	Base    http.RoundTripper // http.DefaultTransport if nil
	Signer  *certs.Signer
	Now     func() time.Time // time.Now if nil
	MaxBody int64
}

// RoundTrip implements http.RoundTripper. It does not change req.
func (t *SigningTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	limit := t.MaxBody
	if limit <= 0 {
		limit = DefaultTokenBody
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("sign request: read body: %w", err)
		}
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("sign request: body over %d bytes; a signed request's body is hashed whole", limit)
		}
		body = b
	}
	r2 := req.Clone(req.Context())
	if body != nil {
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r2.ContentLength = int64(len(body))
	}
	if err := SignRequest(r2, body, t.Signer, now()); err != nil {
		return nil, err
	}
	return base.RoundTrip(r2)
}

// RequestTokens authenticates machines by their request tokens against a
// trust list. It implements Authenticator: a request without an
// "Authorization: HCX-SM2" header is not its kind (nil, nil).
type RequestTokens struct {
	// Trust returns the trust store in force (it may change as trust lists
	// arrive from the hub log; revocations take effect on the next request).
	Trust func() *certs.TrustStore
	Now   func() time.Time // time.Now if nil
	Skew  time.Duration    // DefaultTokenSkew if 0
	// Replay remembers the tokens seen. Required: without it every token
	// is refused (a verifier that cannot detect replays must not accept).
	Replay *ReplayCache
	// PublicURL, when set (scheme://host, as clients call this server),
	// rebuilds htu instead of the request's Host and TLS state; set it
	// behind a reverse proxy. Several bases, separated by commas, are for
	// a server that clients reach under several names (a hub member by its
	// name inside its network and by a published port outside): htu may
	// be any of them.
	PublicURL string
	// MaxBody bounds the body read to check bh (DefaultTokenBody if 0).
	MaxBody int64
	// RootAs, when set, lets the national root sign request tokens and
	// names the role they act in. Only the hub sets it (RoleHub), so that
	// the CA can publish the first trust list to a hub that trusts nobody
	// else yet; everywhere else a root token is wrong_role.
	RootAs Role
}

var _ Authenticator = (*RequestTokens)(nil)

// Authenticate checks the request token, in this order: form, kid in the
// trust list, signature, the certificate's role, its validity and
// revocation now, iat within ±Skew, method, URL, body hash, and last the
// replay cache. Each failure is an *hcx.Error with its own code:
// token_malformed, unknown_key, token_bad_signature, wrong_role,
// certificate_expired, certificate_not_yet_valid, revoked, token_expired,
// token_not_yet_valid, token_wrong_method, token_wrong_url,
// token_wrong_body (all 401), too_large (413), replay_cache_full (503
// with retry_after) and token_replayed (401).
func (a *RequestTokens) Authenticate(r *http.Request) (*Principal, error) {
	vals := r.Header.Values("Authorization")
	tok, ours := "", false
	for _, v := range vals {
		if len(v) > len(TokenScheme) && strings.EqualFold(v[:len(TokenScheme)], TokenScheme) && v[len(TokenScheme)] == ' ' {
			tok, ours = strings.TrimLeft(v[len(TokenScheme)+1:], " "), true
		}
	}
	if !ours {
		return nil, nil
	}
	if len(vals) != 1 {
		return nil, malformed("send one Authorization header, got %d", len(vals))
	}
	if len(tok) > MaxTokenBytes {
		return nil, malformed("token is over %d bytes", MaxTokenBytes)
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	ts := a.Trust()
	if ts == nil {
		return nil, hcx.Errorf(hcx.EUnavailable, "trust_unavailable", "this server has no trust list yet; retry once it has followed the hub log")
	}
	h, err := certs.ParseHeader(tok)
	if err != nil {
		return nil, malformed("%v", err)
	}
	if h.Typ != TypRequest {
		return nil, malformed("typ is %q, want %s", h.Typ, TypRequest)
	}
	v, err := ts.VerifyJWS(tok)
	switch {
	case errors.Is(err, certs.ErrUnknownKey):
		return nil, hcx.Errorf(hcx.EUnauthorized, "unknown_key", "kid %s is not in the trust list: have the certificate issued and published (hcx ca issue, hcx ca publish)", h.Kid)
	case errors.Is(err, certs.ErrSignature):
		return nil, hcx.Errorf(hcx.EUnauthorized, "token_bad_signature", "the request token's signature does not verify with kid %s", h.Kid)
	case err != nil:
		return nil, malformed("%v", err)
	}
	role, ok := machineRoles[v.Entry.Role]
	if v.Entry.Role == certs.RoleRoot && a.RootAs != "" {
		role, ok = a.RootAs, true
	}
	if !ok {
		return nil, hcx.Errorf(hcx.EUnauthorized, "wrong_role", "kid %s is a %s certificate; request tokens are signed by feed, checkpoint, province, auditor or hub certificates", h.Kid, v.Entry.Role)
	}
	if err := ts.CheckAt(v.Entry, now); err != nil {
		switch {
		case errors.Is(err, certs.ErrRevoked):
			return nil, hcx.Errorf(hcx.EUnauthorized, "revoked", "certificate %s was revoked; this machine needs a new certificate", h.Kid)
		case errors.Is(err, certs.ErrNotYetValid):
			return nil, hcx.Errorf(hcx.EUnauthorized, "certificate_not_yet_valid", "%v", err)
		default:
			return nil, hcx.Errorf(hcx.EUnauthorized, "certificate_expired", "%v", err)
		}
	}
	c, err := ParseTokenClaims(v.Payload)
	if err != nil {
		return nil, err
	}
	skew := a.Skew
	if skew <= 0 {
		skew = DefaultTokenSkew
	}
	iat := time.Unix(c.Iat, 0)
	if iat.Before(now.Add(-skew)) {
		return nil, hcx.Errorf(hcx.EUnauthorized, "token_expired", "the request token was signed at %s, over %s ago; sign each request when sending it and keep the clock right", iat.UTC().Format(time.RFC3339), skew)
	}
	if iat.After(now.Add(skew)) {
		return nil, hcx.Errorf(hcx.EUnauthorized, "token_not_yet_valid", "the request token is dated %s, over %s ahead of this server's clock; fix the clock", iat.UTC().Format(time.RFC3339), skew)
	}
	if c.Htm != r.Method {
		return nil, hcx.Errorf(hcx.EUnauthorized, "token_wrong_method", "the request token was signed for %s, the request is %s", c.Htm, r.Method)
	}
	if want := a.serverURLs(r); !slices.Contains(want, c.Htu) {
		return nil, hcx.Errorf(hcx.EUnauthorized, "token_wrong_url", "the request token was signed for %s, this request is %s", c.Htu, strings.Join(want, " or "))
	}
	body, err := a.readBody(r)
	if err != nil {
		return nil, err
	}
	if got := BodyHash(body); subtle.ConstantTimeCompare([]byte(got), []byte(c.Bh)) != 1 {
		return nil, hcx.Errorf(hcx.EUnauthorized, "token_wrong_body", "the request token was signed over another body (bh %s, the body received hashes to %s)", c.Bh, got)
	}
	if a.Replay == nil {
		return nil, hcx.Errorf(hcx.EUnavailable, "replay_cache_missing", "this server cannot detect replayed tokens, so it accepts none")
	}
	if err := a.Replay.Use(h.Kid, c.Jti, iat.Add(skew), now); err != nil {
		return nil, err
	}
	return &Principal{
		Role:     role,
		Actor:    "cert:" + h.Kid,
		Name:     v.Entry.Cert.Subject.CommonName,
		Province: v.Entry.Province,
		Method:   MethodRequestToken,
	}, nil
}

// machineRoles maps certificate roles that may sign request tokens to the
// roles they act in.
var machineRoles = map[certs.Role]Role{
	certs.RoleFeed:       RoleFeed,
	certs.RoleCheckpoint: RoleCheckpoint,
	certs.RoleProvince:   RoleProvince,
	certs.RoleAuditor:    RoleAuditor,
	certs.RoleHub:        RoleHub,
}

// serverURLs are the URLs the client may have called: one per public base,
// or the one the request itself names.
func (a *RequestTokens) serverURLs(r *http.Request) []string {
	if a.PublicURL == "" {
		return []string{a.serverURL(r)}
	}
	var out []string
	for _, base := range strings.Split(a.PublicURL, ",") {
		out = append(out, strings.TrimRight(strings.TrimSpace(base), "/")+r.URL.RequestURI())
	}
	return out
}

// serverURL rebuilds the URL the client called from the request's Host
// and TLS state.
func (a *RequestTokens) serverURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// readBody reads the body (bounded) to hash it and puts it back for the
// handler.
func (a *RequestTokens) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	limit := a.MaxBody
	if limit <= 0 {
		limit = DefaultTokenBody
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body.Close()
	if err != nil {
		return nil, hcx.Errorf(hcx.EInvalid, "bad_body", "could not read the request body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, hcx.Errorf(hcx.ETooLarge, "too_large", "request body is over the limit of %d bytes", limit)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return b, nil
}

// retryAfter is the Detail key api.WriteError turns into a Retry-After
// header (seconds).
const retryAfter = "retry_after"

func unavailableFor(d time.Duration, code, format string, args ...any) *hcx.Error {
	e := hcx.Errorf(hcx.EUnavailable, code, format, args...)
	e.Detail = map[string]any{retryAfter: max(1, int((d+time.Second-1)/time.Second))}
	return e
}
