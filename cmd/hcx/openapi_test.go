package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/api/openapitest"
)

var openAPICheck = flag.Bool("openapi", true, "validate every exchange the tests make through the test federation's client against api/openapi/*.yaml (-openapi=false: do not)")

var openAPICoverage = flag.String("openapi-coverage", "", "after the tests, write to this file every documented operation with the statuses the checked exchanges got")

// checkers are the OpenAPI checkers of the test federations, by federation.
var checkers sync.Map

// coverage gathers, across the package's tests, the statuses each
// documented operation answered ("node GET /v1/x" → status → count).
var coverage = struct {
	sync.Mutex
	ops map[string]map[int]int
}{ops: map[string]map[int]int{}}

func (c *openAPIChecker) gather() {
	coverage.Lock()
	defer coverage.Unlock()
	for _, v := range []*openapitest.Validator{c.node, c.hub} {
		seen := v.Seen()
		for _, op := range v.Operations() {
			k := v.Name + " " + op
			if coverage.ops[k] == nil {
				coverage.ops[k] = map[int]int{}
			}
			for _, st := range seen[op] {
				coverage.ops[k][st]++
			}
		}
	}
}

// TestMain runs the tests, then writes the OpenAPI coverage if asked.
func TestMain(m *testing.M) {
	code := m.Run()
	if *openAPICoverage != "" {
		var b strings.Builder
		coverage.Lock()
		keys := slices.Sorted(maps.Keys(coverage.ops))
		no2xx := 0
		for _, k := range keys {
			var sts []int
			ok := false
			for st := range coverage.ops[k] {
				sts = append(sts, st)
				ok = ok || (st >= 200 && st < 300)
			}
			sort.Ints(sts)
			if !ok {
				no2xx++
			}
			fmt.Fprintf(&b, "%s\t%v\n", k, sts)
		}
		coverage.Unlock()
		fmt.Fprintf(&b, "# %d operations, %d without a 2xx answer in any test\n", len(keys), no2xx)
		if err := os.WriteFile(*openAPICoverage, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkOpenAPI makes f's client check every exchange with f's servers
// against the OpenAPI documents, once, and returns its checker.
func checkOpenAPI(t testing.TB, f *federation) *openAPIChecker {
	t.Helper()
	if c, ok := checkers.Load(f); ok {
		return c.(*openAPIChecker)
	}
	c := newOpenAPIChecker(t, f)
	f.Client = c.client(f.client())
	checkers.Store(f, c)
	t.Cleanup(func() { checkers.Delete(f) })
	return c
}

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
	t.Cleanup(func() { c.report(t); c.gather() })
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

// TestOpenAPITraffic drives a real federation with good input on a
// representative set of routes of the node and the hub (at least one success
// per family: residents, events, codes, appeals, venues, feeds, audit,
// discovery and the whole hub), and with bad input that each must refuse
// with a documented 4xx, and holds every exchange to the OpenAPI documents
// (the authorisation matrix calls every route with every caller besides).
func TestOpenAPITraffic(t *testing.T) {
	f := startTestFederation(t, 1)
	oa := checkOpenAPI(t, f)
	hc := f.client()
	const gd = "440000"
	node, hub := f.NodeURLs[gd], f.HubURLs[0]
	waitReady(t, node)
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, self := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619900101111"), "name": "甲一"})
	op, feed, cp := f.asOperator(t, gd), f.asFeed(gd), f.asCheckpoint(gd)
	prov := f.asMachine("province-440000", f.PKI.Provinces[gd])
	for _, who := range []caller{feed, cp, prov} {
		waitKnown(t, f, who, node+"/readyz")
	}
	var code struct {
		Code string `json:"code"`
	}
	if st := callAs(t, hc, self, "GET", node+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
		t.Fatalf("code: %d", st)
	}
	today := f.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
	ndjson := http.Header{"Content-Type": {"application/x-ndjson"}}
	s := "/v1/residents/" + string(sub)

	calls := []struct {
		who         caller
		method, url string
		body        string
		hdr         http.Header
		want        int
		wantField   string // for refusals: the error's field
	}{
		// Discovery and health, both servers.
		{anonymous, "GET", node + "/", "", nil, 200, ""},
		{anonymous, "GET", node + "/openapi.yaml", "", nil, 200, ""},
		{anonymous, "GET", node + "/healthz", "", nil, 200, ""},
		{anonymous, "GET", node + "/readyz", "", nil, 200, ""},
		{op, "GET", node + "/metrics", "", nil, 200, ""},
		{anonymous, "GET", hub + "/", "", nil, 200, ""},
		{anonymous, "GET", hub + "/openapi.yaml", "", nil, 200, ""},
		{anonymous, "GET", hub + "/healthz", "", nil, 200, ""},
		{anonymous, "GET", hub + "/readyz", "", nil, 200, ""},
		{anonymous, "GET", hub + "/metrics", "", nil, 200, ""},
		{anonymous, "GET", hub + "/v1/checkpoint", "", nil, 200, ""},
		// The hub's log, as a province signer.
		{prov, "GET", hub + "/v1/entries?start=0&limit=2&wait=1s", "", nil, 200, ""},
		{prov, "GET", hub + "/v1/trust", "", nil, 200, ""},
		{prov, "GET", hub + "/v1/cluster", "", nil, 200, ""},
		{prov, "GET", hub + "/v1/proof/inclusion?index=0&size=1", "", nil, 200, ""},
		{prov, "GET", hub + "/v1/proof/consistency?from=1&to=1", "", nil, 200, ""},
		{prov, "GET", hub + "/v1/subjects/" + string(sub), "", nil, 200, ""},
		{prov, "GET", hub + "/v1/entries?start=x", "", nil, 400, "start"},
		{prov, "GET", hub + "/v1/proof/inclusion?index=0", "", nil, 400, "size"},
		{prov, "POST", hub + "/v1/entries", "not an envelope", http.Header{"Content-Type": {"text/plain"}}, 400, ""},
		// Residents.
		{op, "POST", node + "/v1/residents", `{"doc_type":"CN-ID","doc_number":"` + id("44010619800202222") + `","name":"乙二"}`, nil, 201, ""},
		{op, "POST", node + "/v1/residents", `{"doc_type":"XX","doc_number":"123456","name":"乙二"}`, nil, 400, "doc_type"},
		{op, "POST", node + "/v1/residents", `{"doc_type":"CN-ID","name":"乙二","extra":1}`, nil, 400, "extra"},
		{self, "GET", node + s, "", nil, 200, ""},
		{self, "GET", node + "/v1/me", "", nil, 200, ""},
		{op, "GET", node + s + "/identity", "", nil, 200, ""},
		{op, "POST", node + "/v1/enrolments", `{"doc_type":"CN-ID","doc_number":"` + id("44010619700303333") + `","name":"丙三"}`, nil, 201, ""},
		{anonymous, "POST", node + "/v1/auth/enrol", `{"code":"not-a-code"}`, nil, 0, ""},
		// Events.
		{feed, "POST", node + s + "/labs", `{"result":"negative","kind":"pcr","id":"oa-lab-1"}`, nil, 200, ""},
		{feed, "POST", node + s + "/labs", `{"result":"maybe"}`, nil, 400, "result"},
		{feed, "POST", node + s + "/vaccinations", `{"dose":1,"product":"CoronaVac","at":"` + f.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `","id":"oa-vax-1"}`, nil, 200, ""},
		{self, "GET", node + s + "/vaccinations", "", nil, 200, ""},
		{self, "POST", node + s + "/declarations", `{"temp_c":36.6}`, nil, 200, ""},
		{self, "GET", node + s + "/declarations", "", nil, 200, ""},
		{op, "GET", node + s + "/orders", "", nil, 200, ""},
		{op, "GET", node + "/v1/orders?state=pending", "", nil, 200, ""},
		{op, "GET", node + "/v1/orders?state=lifted", "", nil, 400, "state"},
		{anonymous, "GET", node + "/v1/risk-areas?in_force=true", "", nil, 200, ""},
		{anonymous, "GET", node + "/v1/risk-areas?in_force=maybe", "", nil, 400, "in_force"},
		// Codes.
		{self, "GET", node + s + "/code?format=png", "", nil, 200, ""},
		{self, "GET", node + s + "/code?offline=yes", "", nil, 400, "offline"},
		{cp, "POST", node + "/v1/verify", `{"code":"` + code.Code + `"}`, nil, 200, ""},
		{cp, "POST", node + "/v1/verify", `{"code":"HCX1:nonsense"}`, nil, 422, ""},
		{cp, "POST", node + "/v1/verify/batch", `{"codes":["` + code.Code + `","HCX1:nonsense"]}`, nil, 200, ""},
		{cp, "POST", node + "/v1/verify/batch", `{"code":"` + code.Code + `"}` + "\n", ndjson, 200, ""},
		{cp, "POST", node + "/v1/verify/batch", `{"codes":[]}`, nil, 400, "codes"},
		{self, "GET", node + s + "/checks?limit=10", "", nil, 200, ""},
		{self, "GET", node + s + "/checks?limit=0", "", nil, 400, "limit"},
		// Appeals, venues, exposures.
		{self, "GET", node + s + "/appeals", "", nil, 200, ""},
		{op, "GET", node + "/v1/appeals?limit=5", "", nil, 200, ""},
		{self, "GET", node + "/v1/venue-categories", "", nil, 200, ""},
		{self, "GET", node + s + "/venues", "", nil, 200, ""},
		{op, "GET", node + "/v1/venues?state=under_review", "", nil, 200, ""},
		{op, "GET", node + "/v1/exposures", "", nil, 200, ""},
		{self, "GET", node + s + "/scans?limit=5", "", nil, 200, ""},
		{self, "POST", node + s + "/scans", `{"code":"not a venue code"}`, nil, 422, ""},
		// Feeds, devices, audit, statistics.
		{feed, "POST", node + "/v1/feeds/labs", `{"id":"oa-feed-1","sub":"` + string(sub) + `","at":"` + f.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `","result":"negative"}` + "\n", ndjson, 200, ""},
		{feed, "POST", node + "/v1/feeds/labs", `{"id":"x"}`, nil, 400, "Content-Type"},
		{op, "GET", node + "/v1/devices/enrolments?status=pending", "", nil, 200, ""},
		{op, "GET", node + "/v1/audit?limit=5", "", nil, 200, ""},
		{op, "GET", node + "/v1/log/status", "", nil, 200, ""},
		{op, "GET", node + "/v1/stats/checks?from=" + today + "&to=" + today, "", nil, 200, ""},
		{op, "GET", node + "/v1/stats/checks?from=" + today, "", nil, 400, "to"},
		{op, "GET", node + "/v1/audit?nope=1", "", nil, 400, "nope"},
	}
	for _, c := range calls {
		a := send(t, hc, c.who, c.method, c.url, c.body, c.hdr)
		if c.want != 0 && a.status != c.want {
			t.Errorf("%s %s as %s: %d %s %s, want %d", c.method, c.url, c.who.name, a.status, a.code, a.body, c.want)
		}
		if c.wantField != "" && a.field != c.wantField {
			t.Errorf("%s %s as %s: refused naming field %q, want %q", c.method, c.url, c.who.name, a.field, c.wantField)
		}
	}

	// Routes whose success needs what an earlier call made.
	otherSub, _ := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619600404444"), "name": "丁四"})
	o := "/v1/residents/" + string(otherSub)
	// A guardian holds someone registered at the desk, never someone who
	// logged in with their own identity.
	var held struct {
		Subject string `json:"subject"`
	}
	if st := callAs(t, hc, op, "POST", node+"/v1/residents", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619500606666"), "name": "戊六"}, &held); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	h := "/v1/residents/" + held.Subject
	now := f.Now().UTC()
	var order struct {
		Order struct {
			ID string `json:"id"`
		} `json:"order"`
	}
	var dep struct {
		Dependant string `json:"dependant"`
	}
	var venue struct {
		ID string `json:"id"`
	}
	window := `"from":"` + now.Add(-2*time.Hour).Format(time.RFC3339) + `","to":"` + now.Add(-time.Hour).Format(time.RFC3339) + `"`
	steps := []struct {
		who         caller
		method, url string
		body        func() string
		want        int
		out         any
	}{
		{feed, "POST", node + o + "/contacts", func() string { return `{}` }, 200, nil},
		{feed, "POST", node + o + "/itinerary", func() string { return `{"days":[{"date":"` + today + `","divs":["440106"]}]}` }, 200, nil},
		{op, "POST", node + h + "/guardians", func() string { return `{"guardian":"` + string(sub) + `"}` }, 201, nil},
		{op, "DELETE", node + h + "/guardians/" + string(sub), nil, 200, nil},
		{self, "POST", node + s + "/dependants", func() string {
			return `{"doc_type":"CN-ID","doc_number":"` + id("44010620150505555") + `","name":"甲五","relation":"child"}`
		}, 201, &dep},
		{self, "DELETE", "", nil, 200, nil}, // the dependant, below
		{op, "POST", node + o + "/orders", func() string { return `{"colour":"yellow","note":"openapi test"}` }, 201, &order},
		{op, "POST", "", func() string { return "" }, 200, nil}, // lift, below
		{op, "POST", node + "/v1/risk-areas", func() string {
			return `{"areas":[{"div":"440106","level":"high","from":"` + now.Add(-time.Hour).Format(time.RFC3339) + `"}]}`
		}, 201, nil},
		{op, "POST", node + "/v1/risk-areas/end", func() string { return `{"div":"440106","from":"` + now.Add(-time.Hour).Format(time.RFC3339) + `"}` }, 200, nil},
		{op, "POST", node + "/v1/venue-categories", func() string { return `{"id":"openapi-test","zh":"测试","en":"Test"}` }, 201, nil},
		{self, "POST", node + s + "/venues", func() string {
			return `{"name":"天河城购物中心","division":"440106","category":"mall","uscc":"` + usccOf("9144010600000000") + `"}`
		}, 201, &venue},
		{op, "POST", "", func() string { return `{"decision":"passed","reason":"checked"}` }, 200, nil}, // review, below
		{self, "GET", "", nil, 200, nil}, // the venue, below
		{self, "GET", "", nil, 200, nil}, // its code, below
		{op, "POST", node + "/v1/exposures", func() string { return `{"vid":"` + venue.ID + `","level":"low",` + window + `}` }, 201, nil},
		{op, "POST", node + "/v1/exposures/withdraw", func() string { return `{"vid":"` + venue.ID + `",` + window + `}` }, 200, nil},
		{op, "POST", "", func() string { return `{"reason":"closed"}` }, 200, nil}, // retire, below
		{anonymous, "GET", node + "/v1/auth/oidc/login", nil, 302, nil},
		{self, "POST", node + "/v1/auth/logout", nil, 200, nil},
	}
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for i, st := range steps {
		url := st.url
		switch i {
		case 5:
			url = node + s + "/dependants/" + dep.Dependant
		case 7:
			url = node + o + "/orders/" + order.Order.ID + "/lift"
		case 12:
			url = node + "/v1/venues/" + venue.ID + "/review"
		case 13:
			url = node + s + "/venues/" + venue.ID
		case 14:
			url = node + s + "/venues/" + venue.ID + "/code?format=svg"
		case 17:
			url = node + "/v1/venues/" + venue.ID + "/retire"
		}
		body := ""
		if st.body != nil {
			body = st.body()
		}
		a := send(t, &noRedirect, st.who, st.method, url, body, nil)
		if a.status != st.want {
			t.Errorf("%s %s as %s: %d %s, want %d", st.method, url, st.who.name, a.status, a.body, st.want)
		}
		if st.out != nil {
			if err := json.Unmarshal(a.body, st.out); err != nil {
				t.Fatalf("%s %s: %v", st.method, url, err)
			}
		}
	}

	// GET / says what it is and where the rest is; GET /openapi.yaml is
	// the embedded document itself.
	var ix api.Index
	if st := callAs(t, hc, anonymous, "GET", node+"/", nil, &ix); st != 200 || ix.Province != gd || ix.Version != api.ProtocolVersion || ix.Links["openapi"] != "/openapi.yaml" || ix.Links["pages"] != "/app/" {
		t.Errorf("GET / at the node: %d %+v", st, ix)
	}
	for _, x := range []struct {
		url  string
		spec []byte
	}{{node, api.NodeOpenAPI}, {hub, api.HubOpenAPI}} {
		resp, err := hc.Get(x.url + "/openapi.yaml")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(b, x.spec) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/yaml") {
			t.Errorf("GET %s/openapi.yaml: %s, %d bytes, want the embedded document", x.url, resp.Header.Get("Content-Type"), len(b))
		}
	}
	for _, v := range []*openapitest.Validator{oa.node, oa.hub} {
		l := unseen(v, 200, 299)
		t.Logf("%s: %d of %d operations without a success here (the matrix and the other end-to-end tests call them): %v", v.Name, len(l), len(v.Operations()), l)
	}
}

// probeQueryBounds holds the documents' bounds on integer query parameters
// to the handlers: for each such parameter of server's operations it sends
// the documented maximum (and minimum), which must not be refused for that
// parameter, and one past each, which must be 400 naming it. Each call is
// made as the first caller of the authorisation matrix the route admits
// (other required parameters take their first enum value).
func probeQueryBounds(t *testing.T, hc *http.Client, v *openapitest.Validator, server, base string, callers map[string]caller, vars *strings.Replacer) {
	t.Helper()
	for _, w := range authzWant {
		if w.server != server {
			continue
		}
		method, path, _ := strings.Cut(w.route, " ")
		item := v.Doc().Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			continue // TestOpenAPIRoutes says so
		}
		who, found := admittedCaller(t, w.cells, callers)
		params := append(slices.Clone(item.Parameters), item.GetOperation(method).Parameters...)
		fixed := url.Values{}
		for _, p := range params {
			if p.Value.In == "query" && p.Value.Required && len(p.Value.Schema.Value.Enum) > 0 {
				fixed.Set(p.Value.Name, fmt.Sprint(p.Value.Schema.Value.Enum[0]))
			}
		}
		for _, p := range params {
			s := p.Value.Schema.Value
			if p.Value.In != "query" || !s.Type.Is("integer") || !found {
				continue
			}
			type probe struct {
				val     float64
				refused bool
			}
			var probes []probe
			if s.Max != nil {
				probes = append(probes, probe{*s.Max, false}, probe{*s.Max + 1, true})
			}
			if s.Min != nil && *s.Min > 0 {
				probes = append(probes, probe{*s.Min, false}, probe{*s.Min - 1, true})
			}
			for _, pr := range probes {
				q := url.Values{}
				for k, vs := range fixed {
					q[k] = vs
				}
				q.Set(p.Value.Name, strconv.FormatFloat(pr.val, 'f', -1, 64))
				u := base + vars.Replace(path) + "?" + q.Encode()
				a := send(t, hc, who, method, u, "", nil)
				refused := a.status == http.StatusBadRequest && a.field == p.Value.Name
				if refused != pr.refused {
					t.Errorf("%s %s as %s: %s=%v answered %d %s %s; the document says %s=%v is %s", server, w.route, who.name, p.Value.Name, pr.val, a.status, a.code, a.field, p.Value.Name, pr.val, map[bool]string{true: "out of bounds", false: "within bounds"}[pr.refused])
				}
			}
		}
	}
}

// probeStrictBodies holds "additionalProperties: false" on a request body to
// the decoder: for each such operation of server's, a body with a member
// the document does not define must be 400 naming it, as a caller the route
// admits. Nothing is written: the body is refused before any handler acts.
func probeStrictBodies(t *testing.T, hc *http.Client, v *openapitest.Validator, server, base string, callers map[string]caller, vars *strings.Replacer) {
	t.Helper()
	const member = "zz_not_a_member"
	probed := 0
	defer func() { t.Logf("%s: %d strict request bodies probed", server, probed) }()
	for _, w := range authzWant {
		if w.server != server {
			continue
		}
		method, path, _ := strings.Cut(w.route, " ")
		item := v.Doc().Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil || item.GetOperation(method).RequestBody == nil {
			continue
		}
		mt := item.GetOperation(method).RequestBody.Value.Content.Get("application/json")
		if mt == nil || mt.Schema == nil || mt.Schema.Value.AdditionalProperties.Has == nil || *mt.Schema.Value.AdditionalProperties.Has {
			continue
		}
		who, found := admittedCaller(t, w.cells, callers)
		if !found {
			continue
		}
		probed++
		a := send(t, hc, who, method, base+vars.Replace(path), `{"`+member+`":1}`, nil)
		if a.status != http.StatusBadRequest || a.field != member {
			t.Errorf("%s %s as %s: a body with an unknown member answered %d %s %q; the document says the body takes no other member (additionalProperties: false)", server, w.route, who.name, a.status, a.code, a.field)
		}
	}
}

// admittedCaller is the first caller of a matrix row that the route admits
// (the guardian aside: its {sub} is another), and whether there is one.
func admittedCaller(t *testing.T, cells string, callers map[string]caller) (caller, bool) {
	for i, c := range wantCells(t, cells) {
		if key := matrixCallers[i].key; c == "ok" && key != "guardian" {
			return callers[key], true
		}
	}
	return caller{}, false
}
