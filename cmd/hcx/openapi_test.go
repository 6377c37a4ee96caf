package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/api/openapitest"
)

var openAPICheck = flag.Bool("openapi", false, "validate every exchange the tests make through the test federation's client against api/openapi/*.yaml")

// openAPIChecker validates exchanges with a federation's node and hub
// listeners against the OpenAPI documents (api/openapi), and reports each
// problem once per operation at the end of the test.
type openAPIChecker struct {
	node, hub *openapitest.Validator
	hosts     map[string]*openapitest.Validator // host:port → its document

	mu       sync.Mutex
	problems map[string][]string // operation → distinct problems
}

func newOpenAPIChecker(t testing.TB, f *federation) *openAPIChecker {
	t.Helper()
	c := &openAPIChecker{hosts: map[string]*openapitest.Validator{}, problems: map[string][]string{}}
	var err error
	if c.node, err = openapitest.NewValidator("node", api.NodeOpenAPI); err != nil {
		t.Fatal(err)
	}
	if c.hub, err = openapitest.NewValidator("hub", api.HubOpenAPI); err != nil {
		t.Fatal(err)
	}
	for _, u := range f.NodeURLs {
		c.hosts[hostOf(t, u)] = c.node
	}
	for _, u := range f.HubURLs {
		c.hosts[hostOf(t, u)] = c.hub
	}
	t.Cleanup(func() { c.report(t) })
	return c
}

func hostOf(t testing.TB, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// client is hc with every exchange checked.
func (c *openAPIChecker) client(hc *http.Client) *http.Client {
	out := *hc
	out.Transport = &openapitest.Transport{Base: hc.Transport, For: func(r *http.Request) *openapitest.Validator { return c.hosts[r.URL.Host] }, Report: c.add}
	return &out
}

func (c *openAPIChecker) add(problem string) {
	op, _, _ := strings.Cut(problem, ":")
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.problems[op]) < 3 {
		c.problems[op] = append(c.problems[op], problem)
	}
}

// report fails t with the problems seen, by operation.
func (c *openAPIChecker) report(t testing.TB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := make([]string, 0, len(c.problems))
	for op := range c.problems {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		for _, p := range c.problems[op] {
			t.Errorf("OpenAPI: %s", p)
		}
	}
}

// unseen lists the operations of v's document that no checked exchange
// reached with a status in [lo, hi].
func unseen(v *openapitest.Validator, lo, hi int) []string {
	seen := v.Seen()
	var out []string
	for _, op := range v.Operations() {
		ok := false
		for _, s := range seen[op] {
			ok = ok || (s >= lo && s <= hi)
		}
		if !ok {
			out = append(out, fmt.Sprintf("%s %v", op, seen[op]))
		}
	}
	return out
}
