package exchange

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// HubClient talks to the national hub's HTTP API (PROTOCOL.md §5). It spreads
// over the members it is given and moves to the next one when a member does
// not answer; writes may go to any member, which forwards them to the leader.
type HubClient struct {
	members []string
	next    atomic.Uint32
	HTTP    *http.Client
}

// NewHubClient makes a client for the hub members at the given base URLs
// (such as "http://127.0.0.1:8700").
func NewHubClient(members []string, hc *http.Client) *HubClient {
	if hc == nil {
		hc = &http.Client{Timeout: 65 * time.Second}
	}
	ms := make([]string, len(members))
	for i, m := range members {
		ms[i] = strings.TrimRight(m, "/")
	}
	return &HubClient{members: ms, HTTP: hc}
}

// SignWith makes c sign every request it sends with s, an SM2 request token
// per request (auth.SigningTransport): the hub serves its log only to
// province signers, hub members and auditors. now dates the tokens
// (time.Now if nil); the hub allows auth.DefaultTokenSkew. It returns c.
func (c *HubClient) SignWith(s *certs.Signer, now func() time.Time) *HubClient {
	hc := *c.HTTP
	hc.Transport = &auth.SigningTransport{Base: c.HTTP.Transport, Signer: s, Now: now, MaxBody: MaxEnvelopeBytes + 4<<10}
	c.HTTP = &hc
	return c
}

// SubmitResult is the hub's answer to a submitted envelope.
type SubmitResult struct {
	Index    uint64 `json:"index"`
	LeafHash string `json:"leaf_hash"`
}

// Entries is a page of the log. Times[i] is when Entries[i] was committed
// (Unix seconds, non-decreasing along the log), or 0 for a leaf logged before
// the hub recorded commit times; pass it to OpenLogged (Committed does).
type Entries struct {
	Start   uint64   `json:"start"`
	Entries []string `json:"entries"`
	Times   []int64  `json:"times"`
	Size    uint64   `json:"size"`
}

// Committed is when entry i of the page was committed, or the zero time when
// the hub did not say (an older hub, or a leaf logged before commit times
// were recorded): OpenLogged then decides at the envelope's signed at.
func (e Entries) Committed(i int) time.Time {
	if i < 0 || i >= len(e.Times) || len(e.Times) != len(e.Entries) || e.Times[i] <= 0 {
		return time.Time{}
	}
	return time.Unix(e.Times[i], 0)
}

// SubjectAnswer is the hub's view of a subject.
type SubjectAnswer struct {
	Applied      uint64              `json:"applied"`
	Attestations []LoggedAttestation `json:"attestations"`
}

// APIError is an error answer from a hub member.
type APIError struct {
	Status   int
	Code     string  `json:"code"`
	Message  string  `json:"message"`
	Expected *uint64 `json:"expected,omitempty"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("hub answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Submit sends a compact JWS envelope to the hub and returns its leaf index.
func (c *HubClient) Submit(ctx context.Context, compact string) (SubmitResult, error) {
	var out SubmitResult
	err := c.do(ctx, http.MethodPost, "/v1/entries", "text/plain", []byte(compact), &out)
	return out, err
}

// Entries reads up to limit entries from start, waiting up to wait for the
// first one to exist.
func (c *HubClient) Entries(ctx context.Context, start uint64, limit int, wait time.Duration) (Entries, error) {
	q := url.Values{"start": {strconv.FormatUint(start, 10)}, "limit": {strconv.Itoa(limit)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out Entries
	err := c.do(ctx, http.MethodGet, "/v1/entries?"+q.Encode(), "", nil, &out)
	return out, err
}

// Subject asks a hub member for the latest attestation per issuer about sub.
func (c *HubClient) Subject(ctx context.Context, sub hcx.Subject) (SubjectAnswer, error) {
	var out SubjectAnswer
	err := c.do(ctx, http.MethodGet, "/v1/subjects/"+url.PathEscape(string(sub)), "", nil, &out)
	return out, err
}

// Checkpoint fetches the hub's newest signed checkpoint note.
func (c *HubClient) Checkpoint(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.do(ctx, http.MethodGet, "/v1/checkpoint", "", nil, &out)
	return out, err
}

// WitnessedCheckpoint fetches the newest checkpoint note that carries at
// least one witness cosignature, with all of them (PROTOCOL.md §5); a hub
// with none yet answers 404 no_checkpoint. The cosignatures are for the
// caller to verify (Checkpoint.VerifyCosignatures).
func (c *HubClient) WitnessedCheckpoint(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.do(ctx, http.MethodGet, "/v1/checkpoint/witnessed", "", nil, &out)
	return out, err
}

// MaxProofHashes bounds the hashes of a proof the client accepts: a proof in
// a tree of 2^64 leaves has at most 2*64 of them.
const MaxProofHashes = 128

// ErrMalformedProof is returned when a hub member's proof is not the shape
// asked for: other sizes, too many hashes, hashes that are not 32 bytes.
var ErrMalformedProof = errors.New("malformed proof")

// ConsistencyProof fetches the proof that the log's tree of size from is a
// prefix of its tree of size to (PROTOCOL.md §5). The client checks the
// answer's shape (the sizes it names, at most MaxProofHashes 32-byte hashes);
// whether the proof holds is for the caller to verify against roots it
// trusts.
func (c *HubClient) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	q := url.Values{"from": {strconv.FormatUint(from, 10)}, "to": {strconv.FormatUint(to, 10)}}
	var out struct {
		From   uint64   `json:"from"`
		To     uint64   `json:"to"`
		Hashes []string `json:"hashes"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/proof/consistency?"+q.Encode(), "", nil, &out); err != nil {
		return nil, err
	}
	if out.From != from || out.To != to {
		return nil, fmt.Errorf("%w: consistency proof: asked for %d..%d, the hub answered for %d..%d", ErrMalformedProof, from, to, out.From, out.To)
	}
	if len(out.Hashes) > MaxProofHashes {
		return nil, fmt.Errorf("%w: consistency proof %d..%d: %d hashes, at most %d", ErrMalformedProof, from, to, len(out.Hashes), MaxProofHashes)
	}
	hs := make([][]byte, len(out.Hashes))
	for i, h := range out.Hashes {
		b, err := base64.StdEncoding.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w: consistency proof %d..%d: hashes[%d] is not a base64 32-byte hash", ErrMalformedProof, from, to, i)
		}
		hs[i] = b
	}
	return hs, nil
}

// Members are the hub members' base URLs, in the order given.
func (c *HubClient) Members() []string { return append([]string(nil), c.members...) }

// Member is a client that talks to member i only (0-based, as in Members),
// sharing this client's HTTP client. A follower reads a page, the checkpoint
// and the proofs from one member, so that what it checks came from one
// source and a lie can be pinned on that member.
func (c *HubClient) Member(i int) *HubClient {
	if len(c.members) == 0 {
		return c
	}
	return &HubClient{members: []string{c.members[i%len(c.members)]}, HTTP: c.HTTP}
}

// Trust fetches the newest trust-list envelope.
func (c *HubClient) Trust(ctx context.Context) (string, error) {
	var out []byte
	err := c.do(ctx, http.MethodGet, "/v1/trust", "", nil, &out)
	return string(out), err
}

// do runs one request, trying each member in turn while they fail to answer
// or answer 503. Any other answer, good or bad, is final. out may be *[]byte
// for a raw body.
func (c *HubClient) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	if len(c.members) == 0 {
		return errors.New("no hub members configured")
	}
	var lastErr error
	first := int(c.next.Load())
	for i := 0; i < len(c.members); i++ {
		idx := (first + i) % len(c.members)
		err := c.once(ctx, c.members[idx]+path, method, ctype, body, out)
		var apiErr *APIError
		if err == nil || (errors.As(err, &apiErr) && apiErr.Status != http.StatusServiceUnavailable) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lastErr = err
		c.next.Store(uint32((idx + 1) % len(c.members)))
	}
	return fmt.Errorf("no hub member answered: %w", lastErr)
}

func (c *HubClient) once(ctx context.Context, u, method, ctype string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &APIError{Status: resp.StatusCode}
		var wrapper struct {
			Error *APIError `json:"error"`
		}
		if json.Unmarshal(b, &wrapper) == nil && wrapper.Error != nil {
			apiErr.Code, apiErr.Message, apiErr.Expected = wrapper.Error.Code, wrapper.Error.Message, wrapper.Error.Expected
		} else {
			apiErr.Message = strings.TrimSpace(string(b))
		}
		return apiErr
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode hub answer from %s: %w", u, err)
	}
	return nil
}
