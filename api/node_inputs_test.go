package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// inputsClock is the node's clock in the input tests: 24 November 2026,
// 08:00 in China.
func inputsClock() time.Time { return time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) }

// cnid completes the first 17 characters of a mainland ID number with its
// GB 11643 check character, so a test can vary one part of a number that is
// otherwise right.
func cnid(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }

type nodeServer struct {
	n   *node.Node
	url string
	sub string // a resident registered before the test
}

func newNodeServer(t *testing.T) *nodeServer {
	t.Helper()
	n := newTestNode(t, inputsClock)
	s := &nodeServer{n: n, url: "http://" + serve(t, api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: asCallerOfTheRoute}), api.ServerTimeouts{})}
	status, body := s.do(t, http.MethodPost, "/v1/residents", `{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三"}`)
	if status != http.StatusCreated {
		t.Fatalf("registering the README's resident: %d %s", status, body)
	}
	var r struct {
		Subject string `json:"subject"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	s.sub = r.Subject
	return s
}

// asCallerOfTheRoute is a test-only authenticator: these tests are about
// inputs, so every call comes from a caller the route admits — the resident
// of {sub} for their code, a Guangdong checkpoint for verify, a Guangdong
// operator otherwise. cmd/hcx's matrix and attacks tests use real
// credentials.
var asCallerOfTheRoute = auth.AuthenticatorFunc(func(r *http.Request) (*auth.Principal, error) {
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/code"):
		sub := strings.TrimSuffix(strings.TrimPrefix(p, "/v1/residents/"), "/code")
		return &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + sub, Subject: hcx.Subject(sub), Method: auth.MethodSession}, nil
	case p == "/v1/verify":
		return &auth.Principal{Role: auth.RoleCheckpoint, Actor: "cert:test-checkpoint", Province: "440000", Method: auth.MethodBearer}, nil
	}
	return &auth.Principal{Role: auth.RoleOperator, Actor: "test:operator", Province: "440000", Method: auth.MethodBearer}, nil
})

func (s *nodeServer) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+strings.ReplaceAll(path, "{sub}", s.sub), rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(auth.HeaderReason, "input test") // registration is audited
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// Every input a person would reject answers 400 naming the field, in words
// that name JSON members and JSON types, never Go types, and writes nothing.
func TestNodeRefusesBadInputsNamingTheFieldAndWritingNothing(t *testing.T) {
	s := newNodeServer(t)
	reg := func(docType, number, name string) string {
		b, _ := json.Marshal(map[string]string{"doc_type": docType, "doc_number": number, "name": name})
		return string(b)
	}
	const id = "440106199003070028"
	for _, tc := range []struct {
		name, method, path, body string
		field, want              string // the field named, and words the message must hold
	}{
		// Names.
		{"reject/name-with-nul", "POST", "/v1/residents", reg("CN-ID", id, "张\x00三"), "name", "control character"},
		{"reject/name-with-control", "POST", "/v1/residents", reg("CN-ID", id, "张\u0007三"), "name", "control character"},
		{"reject/name-with-c1-control", "POST", "/v1/residents", reg("CN-ID", id, "张\u0085三"), "name", "control character"},
		{"reject/name-with-bidi-override", "POST", "/v1/residents", reg("CN-ID", id, "张\u202e三"), "name", "U+202E"},
		{"reject/name-with-bidi-isolate", "POST", "/v1/residents", reg("CN-ID", id, "Ann\u2066a"), "name", "U+2066"},
		{"reject/name-with-arabic-letter-mark", "POST", "/v1/residents", reg("CN-ID", id, "Ann\u061ca"), "name", "U+061C"},
		{"reject/name-only-zero-width", "POST", "/v1/residents", reg("CN-ID", id, "\u200b\u200b"), "name", "U+200B"},
		{"reject/name-only-combining-marks", "POST", "/v1/residents", reg("CN-ID", id, "\u0301\u0308"), "name", "no letter"},
		{"reject/name-only-spaces", "POST", "/v1/residents", reg("CN-ID", id, "   "), "name", "empty"},
		{"reject/name-with-emoji", "POST", "/v1/residents", reg("CN-ID", id, "张三😀"), "name", "U+1F600"},
		{"reject/name-with-digits", "POST", "/v1/residents", reg("CN-ID", id, "张3"), "name", "digit"},
		{"reject/name-too-long", "POST", "/v1/residents", reg("CN-ID", id, strings.Repeat("张", 65)), "name", "65 characters"},
		{"reject/name-not-utf8", "POST", "/v1/residents", `{"doc_type":"CN-ID","doc_number":"` + id + `","name":"` + "\xff\xfe" + `"}`, "body", "UTF-8"},
		{"reject/name-lone-surrogate", "POST", "/v1/residents", `{"doc_type":"CN-ID","doc_number":"` + id + `","name":"张\udc00"}`, "name", "U+FFFD"},
		// Mainland ID numbers.
		{"reject/id-feb-30", "POST", "/v1/residents", reg("CN-ID", cnid("44010619900230002"), "张三"), "doc_number", "19900230"},
		{"reject/id-feb-29-not-leap", "POST", "/v1/residents", reg("CN-ID", cnid("44010619900229002"), "张三"), "doc_number", "19900229"},
		{"reject/id-april-31", "POST", "/v1/residents", reg("CN-ID", cnid("44010619900431002"), "张三"), "doc_number", "19900431"},
		{"reject/id-born-tomorrow", "POST", "/v1/residents", reg("CN-ID", cnid("44010620261125002"), "张三"), "doc_number", "future"},
		{"reject/id-born-before-1900", "POST", "/v1/residents", reg("CN-ID", cnid("44010618991231002"), "张三"), "doc_number", "1900"},
		{"reject/id-unknown-prefecture", "POST", "/v1/residents", reg("CN-ID", cnid("44990619900307002"), "张三"), "doc_number", "449906"},
		{"reject/id-unknown-province", "POST", "/v1/residents", reg("CN-ID", cnid("99010619900307002"), "张三"), "doc_number", "99"},
		// Passports and permits.
		{"reject/passport-zzz", "POST", "/v1/residents", reg("PP-ZZZ", "E12345678", "Anna Schmidt"), "doc_type", "ISO 3166-1"},
		{"reject/passport-not-a-state", "POST", "/v1/residents", reg("PP-ABC", "E12345678", "Anna Schmidt"), "doc_type", "ISO 3166-1"},
		{"reject/passport-number-shows-whole-in-tail", "POST", "/v1/residents", reg("PP-FRA", "1234", "Anna Schmidt"), "doc_number", "at least 6"},
		{"reject/passport-number-too-short", "POST", "/v1/residents", reg("PP-FRA", "12345", "Anna Schmidt"), "doc_number", "at least 6"},
		{"reject/hkmo-shape", "POST", "/v1/residents", reg("HKMO", "12345678", "陈大文"), "doc_number", "H or M"},
		{"reject/tw-shape", "POST", "/v1/residents", reg("TW", "1234567", "林小明"), "doc_number", "8 digits"},
		{"reject/fpr-shape", "POST", "/v1/residents", reg("FPR", "1234567890", "Anna Schmidt"), "doc_number", "15"},
		// JSON bodies.
		{"reject/trailing-object", "POST", "/v1/residents", reg("CN-ID", id, "李四") + `{"x":1}`, "body", "after the JSON object"},
		{"reject/trailing-garbage", "POST", "/v1/residents", reg("CN-ID", id, "李四") + `x`, "body", "after the JSON object"},
		{"reject/unknown-member", "POST", "/v1/residents", `{"doc_type":"CN-ID","doc_number":"` + id + `","name":"李四","nmae":"x"}`, "nmae", "unknown member"},
		{"reject/member-in-other-case", "POST", "/v1/residents", `{"Doc_Type":"CN-ID","doc_number":"` + id + `","name":"李四"}`, "Doc_Type", "unknown member"},
		{"reject/duplicate-member", "POST", "/v1/residents", `{"doc_type":"CN-ID","doc_number":"` + id + `","name":"李四","name":"王五"}`, "name", "twice"},
		{"reject/doc-type-number", "POST", "/v1/residents", `{"doc_type":5,"doc_number":"` + id + `","name":"李四"}`, "doc_type", "want a string"},
		{"reject/name-null", "POST", "/v1/residents", `{"doc_type":"CN-ID","doc_number":"` + id + `","name":null}`, "name", "want a string"},
		{"reject/body-array", "POST", "/v1/residents", `[1,2]`, "body", "JSON object"},
		{"reject/lab-at-not-a-time", "POST", "/v1/residents/{sub}/labs", `{"result":"positive","at":"yesterday"}`, "at", "RFC 3339"},
		{"reject/lab-at-number", "POST", "/v1/residents/{sub}/labs", `{"result":"positive","at":12}`, "at", "want a string"},
		{"reject/lab-trailing", "POST", "/v1/residents/{sub}/labs", `{"result":"positive"}]`, "body", "after the JSON object"},
		{"reject/contact-issuer-no-province", "POST", "/v1/residents/{sub}/contacts", `{"issuer":"440100"}`, "issuer", "440100"},
		{"reject/lab-kind-unknown", "POST", "/v1/residents/{sub}/labs", `{"result":"positive","kind":"blood"}`, "kind", "pcr or antigen"},
		{"reject/contact-issuer-number", "POST", "/v1/residents/{sub}/contacts", `{"issuer":440000}`, "issuer", "want a string"},
		{"reject/verify-code-object", "POST", "/v1/verify", `{"code":{}}`, "code", "want a string"},
		// Query parameters.
		{"reject/offline-yes", "GET", "/v1/residents/{sub}/code?offline=yes", "", "offline", "true or false"},
		{"reject/offline-empty", "GET", "/v1/residents/{sub}/code?offline=", "", "offline", "true or false"},
		{"reject/offline-twice", "GET", "/v1/residents/{sub}/code?offline=true&offline=false", "", "offline", "once"},
		{"reject/unknown-query-parameter", "GET", "/v1/residents/{sub}/code?offlien=true", "", "offlien", "unknown query parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.n.StoreVersion()
			status, body := s.do(t, tc.method, tc.path, tc.body)
			var e struct {
				Error struct {
					Code, Field, Message string
				} `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			if status != http.StatusBadRequest || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.want) {
				t.Errorf("got %d %s; want 400 naming field %q and saying %q", status, body, tc.field, tc.want)
			}
			for _, goType := range []string{"int", "float64", "time.Time", "hcx.", "node.", "api.", "struct", "map["} {
				if strings.Contains(e.Error.Message, goType) {
					t.Errorf("message %q names the Go type %q", e.Error.Message, goType)
				}
			}
			if after := s.n.StoreVersion(); after != before {
				t.Errorf("the store changed from version %d to %d", before, after)
			}
		})
	}
}

// The inputs of the README walkthrough and documents people really carry are
// still accepted.
func TestNodeAcceptsRealPeoplesDocuments(t *testing.T) {
	s := newNodeServer(t)
	for _, tc := range []struct{ name, docType, number, person string }{
		{"accept/readme-walkthrough-again-other-number", "CN-ID", cnid("11010519491231002"), "张三"},
		{"accept/leap-day", "CN-ID", cnid("44010620000229002"), "王五"},
		{"accept/born-today", "CN-ID", cnid("44010620261124002"), "赵六"},
		{"accept/chaohu-prefecture-abolished-2011", "CN-ID", cnid("34140119850101002"), "钱七"},
		{"accept/chongqing-under-sichuan-before-1997", "CN-ID", cnid("51021219700101002"), "孙八"},
		{"accept/macau-resident-permit", "CN-ID", cnid("82000019850101002"), "何鸿"},
		{"accept/transliterated-with-middle-dot", "CN-ID", cnid("65010219800101002"), "阿卜杜勒·艾力"},
		{"accept/latin-with-diacritics", "PP-FRA", "15AB12345", "Zoë Lefèvre-Dupont"},
		{"accept/apostrophe-and-spaces", "PP-IRL", "PA1234567", "Seán O'Brien"},
		{"accept/decomposed-accent-normalised", "PP-ESP", "PAA123456", "Jose\u0301 Mari\u0301a"},
		{"accept/hong-kong-permit", "HKMO", "H12345678", "陈大文"},
		{"accept/hong-kong-permit-with-issue-count", "HKMO", "M1234567801", "陳小明"},
		{"accept/taiwan-permit", "TW", "12345678", "林小明"},
		{"accept/permanent-residence-2017", "FPR", "931586197001010011", "Anna Schmidt"},
		{"accept/permanent-residence-2004", "FPR", "USA310075010101", "John Smith"},
		{"accept/persian-with-zwnj", "PP-IRN", "K12345678", "مهر\u200cناز"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(map[string]string{"doc_type": tc.docType, "doc_number": tc.number, "name": tc.person})
			if status, body := s.do(t, http.MethodPost, "/v1/residents", string(b)); status != http.StatusCreated {
				t.Errorf("got %d %s, want 201", status, body)
			}
		})
	}
	for _, q := range []string{"", "?offline=true", "?offline=false", "?offline=1", "?offline=0"} {
		if status, body := s.do(t, http.MethodGet, "/v1/residents/{sub}/code"+q, ""); status != http.StatusOK {
			t.Errorf("code%s: got %d %s, want 200", q, status, body)
		}
	}
}
