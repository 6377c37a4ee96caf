package api_test

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/api/openapitest"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

// TestOpenAPIDocumentsLoad: both documents load and validate as OpenAPI 3,
// and say the protocol version the servers say.
func TestOpenAPIDocumentsLoad(t *testing.T) {
	for name, spec := range map[string][]byte{"node": api.NodeOpenAPI, "hub": api.HubOpenAPI} {
		doc, err := openapitest.Load(spec)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc.Info.Version != api.ProtocolVersion {
			t.Errorf("%s document: info.version %q, want api.ProtocolVersion %q", name, doc.Info.Version, api.ProtocolVersion)
		}
	}
}

// TestProtocolVersionIsTheDocumentedOne: api.ProtocolVersion is the version
// docs/protocol.md's title names, so GET / never claims another.
func TestProtocolVersionIsTheDocumentedOne(t *testing.T) {
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^# hcx federation protocol, version ([0-9.]+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/protocol.md has no title line '# hcx federation protocol, version X.Y'")
	}
	if got := string(m[1]); got != api.ProtocolVersion {
		t.Errorf("docs/protocol.md is version %s, api.ProtocolVersion %s: bump api.ProtocolVersion and info.version in api/openapi/*.yaml together", got, api.ProtocolVersion)
	}
}

// TestOpenAPIRoutes walks each server's route table and its mounted router
// and holds the document to them: every route is in the document with the
// same query parameters, roles and audited flag, and every operation of the
// document is routed. The messages say what to add where.
func TestOpenAPIRoutes(t *testing.T) {
	hubMounted, err := api.MountedRoutes(api.NewHubHandler(nil, nil, api.HubOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	nodeMounted, err := api.MountedRoutes(api.NewNodeHandler(newTestNode(t, nil), slog.New(slog.DiscardHandler), api.NodeOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name, file string
		spec       []byte
		table      []api.RouteInfo
		mounted    []string
	}{
		{"node", "api/openapi/node.yaml", api.NodeOpenAPI, api.NodeRoutes(), nodeMounted},
		{"hub", "api/openapi/hub.yaml", api.HubOpenAPI, api.HubRoutes(), hubMounted},
	} {
		t.Run(s.name, func(t *testing.T) {
			doc, err := openapitest.Load(s.spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range routeProblems(s.name, s.file, doc, s.table, s.mounted) {
				t.Error(p)
			}
		})
	}
}

// routeProblems compares a document with a route table and the routes a
// router really serves.
func routeProblems(server, file string, doc *openapi3.T, table []api.RouteInfo, mounted []string) []string {
	var out []string
	inTable := map[string]api.RouteInfo{}
	for _, r := range table {
		inTable[r.Key()] = r
	}
	for _, m := range mounted {
		if _, ok := inTable[m]; !ok {
			out = append(out, fmt.Sprintf("the %s's router serves %s, which its route table does not declare", server, m))
		}
	}
	keys := make([]string, 0, len(inTable))
	for k := range inTable {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r := inTable[k]
		op := operation(doc, r.Method, r.Path)
		if op == nil {
			out = append(out, fmt.Sprintf("%s route %s is not in %s: add under paths:\n%s", server, k, file, operationSkeleton(server, r)))
			continue
		}
		if got, want := queryParams(doc, r.Method, r.Path), slices.Sorted(slices.Values(r.Query)); !slices.Equal(got, want) {
			out = append(out, fmt.Sprintf("%s %s: %s documents query parameters %v, the route takes %v", server, k, file, got, want))
		}
		if got, want := extStrings(op, "x-hcx-roles"), rolesOf(r.Allow); !slices.Equal(got, want) {
			out = append(out, fmt.Sprintf("%s %s: %s says x-hcx-roles: %s, the route table allows %s", server, k, file, yamlList(got), yamlList(want)))
		}
		if got := op.Extensions["x-hcx-audited"] == true; got != r.Audited {
			out = append(out, fmt.Sprintf("%s %s: %s says x-hcx-audited: %v, the route table says Audited: %v", server, k, file, got, r.Audited))
		}
		if got, want := securityText(op), securityOf(server, r.Allow); got != want && !securityExceptions[server+" "+k] {
			out = append(out, fmt.Sprintf("%s %s: %s says security: %s, the roles prove themselves with %s", server, k, file, got, want))
		}
		if op.Responses == nil || op.Responses.Value("401") == nil {
			out = append(out, fmt.Sprintf("%s %s: %s documents no 401 (every route may refuse a bad credential)", server, k, file))
		}
	}
	for _, k := range openapitest.Operations(doc) {
		if _, ok := inTable[k]; !ok {
			out = append(out, fmt.Sprintf("%s documents %s, which the %s does not route: remove it, or add the route", file, k, server))
		}
	}
	return out
}

func operation(doc *openapi3.T, method, path string) *openapi3.Operation {
	item := doc.Paths.Value(path)
	if item == nil {
		return nil
	}
	return item.GetOperation(method)
}

// queryParams are the names of an operation's query parameters, the path
// item's included, sorted.
func queryParams(doc *openapi3.T, method, path string) []string {
	item := doc.Paths.Value(path)
	var out []string
	for _, ps := range []openapi3.Parameters{item.Parameters, item.GetOperation(method).Parameters} {
		for _, p := range ps {
			if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
				out = append(out, p.Value.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func extStrings(op *openapi3.Operation, name string) []string {
	l, _ := op.Extensions[name].([]any)
	out := make([]string, 0, len(l))
	for _, v := range l {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// rolesOf writes grants as the documents do: "role", or "role:scope" when
// the scope narrows it.
func rolesOf(gs []api.Grant) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		s := string(g.Role)
		if g.Scope != "" && g.Scope != api.ScopeAny {
			s += ":" + string(g.Scope)
		}
		out = append(out, s)
	}
	return out
}

func yamlList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// operationSkeleton is what to paste into a document for route r: its
// path, method, roles, credentials and parameters, with the answers to
// fill in.
func operationSkeleton(server string, r api.RouteInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    %s:\n", r.Path, strings.ToLower(r.Method))
	fmt.Fprintf(&b, "      operationId: <name>\n      summary: <what it does>\n")
	fmt.Fprintf(&b, "      x-hcx-roles: %s\n", yamlList(rolesOf(r.Allow)))
	if r.Audited {
		b.WriteString("      x-hcx-audited: true\n")
	}
	fmt.Fprintf(&b, "      security: %s\n", securityOf(server, r.Allow))
	var params []string
	for _, seg := range strings.Split(r.Path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			params = append(params, fmt.Sprintf("{name: %s, in: path, required: true, schema: {type: string}}", strings.TrimSuffix(name, "}")))
		}
	}
	for _, q := range r.Query {
		params = append(params, fmt.Sprintf("{name: %s, in: query, schema: {type: string}}", q))
	}
	if len(params) > 0 {
		b.WriteString("      parameters:\n")
		for _, p := range params {
			fmt.Fprintf(&b, "        - %s\n", p)
		}
	}
	if r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH" {
		b.WriteString("      requestBody:\n        required: true\n        content:\n          <media type>: {schema: <the body>}\n")
	}
	b.WriteString("      responses:\n        <<: *gate\n        \"200\":\n          description: <the answer>\n          content:\n            <media type>: {schema: <the answer>}")
	return b.String()
}

// securityExceptions are routes whose credentials are not their roles'
// usual ones.
var securityExceptions = map[string]bool{
	// A resident proves a reclaim with their identity provider's ID token
	// (a bearer), not with a session.
	"node POST /v1/reclaims": true, "node GET /v1/reclaims/{id}": true,
}

// securityText writes an operation's security requirement as securityOf
// does.
func securityText(op *openapi3.Operation) string {
	if op.Security == nil {
		return "(none: the document's default)"
	}
	var out []string
	for _, req := range *op.Security {
		if len(req) == 0 {
			return "[{}]"
		}
		for name := range req {
			out = append(out, "{"+name+": []}")
		}
	}
	order := map[string]int{"{session: []}": 0, "{oidcBearer: []}": 1, "{requestToken: []}": 2}
	sort.Slice(out, func(i, j int) bool { return order[out[i]] < order[out[j]] })
	return "[" + strings.Join(out, ", ") + "]"
}

// securityOf is the security requirement of grants at server: the schemes
// their roles prove themselves with (api/openapi/*.yaml,
// components.securitySchemes). At the hub only request tokens count.
func securityOf(server string, gs []api.Grant) string {
	schemes := map[string]bool{}
	for _, g := range gs {
		switch {
		case g.Role == auth.RoleAnonymous:
			return "[{}]"
		case server == "hub":
			schemes["requestToken"] = true
		case g.Role == auth.RoleResident:
			schemes["session"] = true
		case g.Role == auth.RoleOperator || g.Role == auth.RoleNational:
			schemes["oidcBearer"] = true
		case g.Role == auth.RoleAuditor:
			schemes["oidcBearer"], schemes["requestToken"] = true, true
		default: // machines: feed, checkpoint, province, hub
			schemes["requestToken"] = true
		}
	}
	var out []string
	for _, s := range []string{"session", "oidcBearer", "requestToken"} {
		if schemes[s] {
			out = append(out, "{"+s+": []}")
		}
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// TestOpenAPIVocabularies: the enums the node document copies from the
// code are the code's.
func TestOpenAPIVocabularies(t *testing.T) {
	doc, err := openapitest.Load(api.NodeOpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range doc.Components.Schemas["Symptoms"].Value.Items.Value.Enum {
		got = append(got, fmt.Sprint(v))
	}
	if want := policy.Symptoms(); !slices.Equal(got, want) {
		t.Errorf("components.schemas.Symptoms enumerates %v, policy.Symptoms() is %v", got, want)
	}
	if got, want := int(*doc.Components.Schemas["Symptoms"].Value.MaxItems), node.MaxSymptoms; got != want {
		t.Errorf("components.schemas.Symptoms has maxItems %d, node.MaxSymptoms is %d", got, want)
	}
}
