// Package openapitest holds the OpenAPI documents of package api to real
// traffic, for tests: a Validator checks one request and its answer against a
// document with kin-openapi's openapi3filter, and Transport does so for every
// exchange an http.Client makes. Only tests import it.
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Load reads and validates an OpenAPI document.
func Load(spec []byte) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	return doc, nil
}

// Validator checks exchanges against one document and counts, per operation,
// the answers it saw by status.
type Validator struct {
	Name   string // "node" or "hub", for messages
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]map[int]int // "GET /v1/x/{id}" → status → count
}

// NewValidator loads spec (see Load) and routes by its paths.
func NewValidator(name string, spec []byte) (*Validator, error) {
	doc, err := Load(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// The documents say "servers: [{url: /}]": any host, any port.
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: router: %w", name, err)
	}
	return &Validator{Name: name, doc: doc, router: r, seen: map[string]map[int]int{}}, nil
}

// Doc is the loaded document.
func (v *Validator) Doc() *openapi3.T { return v.doc }

// Check validates one exchange: req with its body reqBody, and the answer's
// status, header and body. It returns what is wrong, each problem naming the
// operation; nothing when the exchange is as documented.
//
// A request the document refuses is bad input: the answer must then be a
// documented 4xx (the error shape is checked like any answer). A request
// the document accepts may still be refused by a handler for what a schema
// cannot say (a check digit, a record that does not exist).
func (v *Validator) Check(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) []string {
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed || (status == http.StatusBadRequest && errors.Is(err, routers.ErrMethodNotAllowed)) {
			return nil // a path or method the server does not serve either
		}
		return []string{fmt.Sprintf("%s %s %s: not in the %s document (%v), but answered %d", v.Name, req.Method, req.URL.Path, v.Name, err, status)}
	}
	op := req.Method + " " + route.Path
	v.mu.Lock()
	if v.seen[op] == nil {
		v.seen[op] = map[int]int{}
	}
	v.seen[op][status]++
	v.mu.Unlock()

	r2 := req.Clone(context.Background())
	r2.Body = io.NopCloser(bytes.NewReader(reqBody))
	// The node reads a JSON body whatever its Content-Type says, and
	// clients such as curl -d or Go's http.Post with "" send none: the
	// documents say so in prose, and a body without a type is checked as
	// JSON where the operation takes JSON.
	if rb := route.Operation.RequestBody; len(reqBody) > 0 && r2.Header.Get("Content-Type") == "" && rb != nil && rb.Value != nil && rb.Value.Content.Get("application/json") != nil {
		r2.Header.Set("Content-Type", "application/json")
	}
	in := &openapi3filter.RequestValidationInput{
		Request: r2, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			// Credentials are the gate's business, and the authorisation
			// matrix's; the schemes here are documentation.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
			// Status codes are part of the contract.
			IncludeResponseStatus: true,
		},
	}
	var problems []string
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	if reqErr != nil && status < 400 {
		problems = append(problems, fmt.Sprintf("%s %s: the document refuses the request (%s) but the server answered %d: the document is stricter than the server", v.Name, op, oneLine(reqErr), status))
	}
	if reqErr != nil && status >= 500 {
		problems = append(problems, fmt.Sprintf("%s %s: bad input (%s) answered %d, not a 4xx", v.Name, op, oneLine(reqErr), status))
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                in.Options,
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		problems = append(problems, fmt.Sprintf("%s %s: answer %d %s does not match the document: %s (body %.300q)", v.Name, op, status, header.Get("Content-Type"), oneLine(err), respBody))
	}
	return problems
}

// Seen returns, per operation ("METHOD /template"), the statuses answered.
func (v *Validator) Seen() map[string][]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string][]int, len(v.seen))
	for op, st := range v.seen {
		for s := range st {
			out[op] = append(out[op], s)
		}
		sort.Ints(out[op])
	}
	return out
}

// Operations lists the document's operations as "METHOD /template", sorted.
func (v *Validator) Operations() []string { return Operations(v.doc) }

// Operations lists doc's operations as "METHOD /template", sorted.
func Operations(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Transport is an http.RoundTripper that checks every exchange with the
// validator of the server it goes to and reports each problem. Requests to
// a host with no validator pass unchecked.
type Transport struct {
	Base http.RoundTripper // nil: http.DefaultTransport
	// For picks the validator of a request (by its host); nil: none.
	For    func(*http.Request) *Validator
	Report func(problem string)
	// MaxBody bounds the bodies read for checking (8 MiB if 0): a larger
	// request passes unchecked, a larger answer is reported.
	MaxBody int64
}

// RoundTrip sends req and checks the exchange.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	limit := t.MaxBody
	if limit <= 0 {
		limit = 8 << 20
	}
	v := t.For(req)
	hasBody := req.Body != nil && req.Body != http.NoBody
	// A body of unknown length is a stream (NDJSON to /v1/verify/batch,
	// written while answers are read): reading it first would deadlock a
	// full-duplex caller, and it may be unbounded. It passes unchecked, as
	// does a body over the limit.
	// (A client request's ContentLength of 0 with a body is unknown too.)
	if v == nil || (hasBody && (req.ContentLength <= 0 || req.ContentLength > limit)) {
		return base.RoundTrip(req)
	}
	var reqBody []byte
	if hasBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		// A RoundTripper must not change the caller's request: send a copy
		// with the body read.
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if resp.ContentLength < 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		return resp, nil // a streamed answer, read by the caller as it comes
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if int64(len(body)) > limit {
		t.Report(fmt.Sprintf("%s %s: answer over %d bytes, not checked", req.Method, req.URL.Path, limit))
		return resp, nil
	}
	for _, p := range v.Check(req, reqBody, resp.StatusCode, resp.Header, body) {
		t.Report(p)
	}
	return resp, nil
}
