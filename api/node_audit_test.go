package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// do sends one request to srv as who (X-Test-As, "" anonymous) with body
// and headers, and returns the status and the body.
func do(t *testing.T, srv *httptest.Server, method, path, who, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set("X-Test-As", who)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const (
	gdOperator = "operator oidc:https://idp.gd#op-7 440000"
	scOperator = "operator oidc:https://idp.sc#op-9 510000"
	gdLab      = "feed cert:lab-kid 440000"
	auditor    = "auditor oidc:https://idp.nat#aud-1"
	resident   = "resident resident:someone"
)

func TestAuditTrailRouteServesTheChainedTrailToTheAuditorAndTheProvince(t *testing.T) {
	n := newTestNode(t, time.Now)
	srv := httptest.NewServer(api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: api.AsPrincipal, Limits: api.NewLimits(api.DefaultLimitsConfig())}))
	defer srv.Close()

	// Registration is audited: an operator must say why.
	if code, b := do(t, srv, "POST", "/v1/residents", gdOperator, `{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三"}`); code != 400 || !strings.Contains(string(b), "reason_required") {
		t.Fatalf("register without a reason: %d %s", code, b)
	}
	code, b := do(t, srv, "POST", "/v1/residents", gdOperator, `{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三"}`,
		auth.HeaderReason, "walk-in enrolment, desk 3", auth.HeaderRequestID, "r-1")
	if code != http.StatusCreated {
		t.Fatalf("register: %d %s", code, b)
	}
	var res node.Resident
	json.Unmarshal(b, &res)
	if code, b := do(t, srv, "POST", "/v1/residents/"+string(res.Subject)+"/labs", gdLab, `{"result":"positive"}`); code != 200 {
		t.Fatalf("lab: %d %s", code, b)
	}
	// A refused write leaves no entry.
	before := n.StoreVersion()
	if code, _ := do(t, srv, "POST", "/v1/residents/"+string(res.Subject)+"/labs", gdLab, `{"result":"maybe"}`); code != 400 {
		t.Fatalf("bad lab: %d", code)
	}
	if n.StoreVersion() != before {
		t.Error("a refused lab result wrote something")
	}
	if code, b := do(t, srv, "POST", "/v1/residents/"+string(res.Subject)+"/contacts", gdLab, `{}`); code != 200 {
		t.Fatalf("contact: %d %s", code, b)
	}

	for _, tc := range []struct {
		name, who, query string
		status           int
		field            string
	}{
		{"anonymous", "", "", http.StatusUnauthorized, ""},
		{"resident", resident, "", http.StatusForbidden, ""},
		{"feed", gdLab, "", http.StatusForbidden, ""},
		{"operator/other-province", scOperator, "", http.StatusForbidden, ""},
		{"operator/own-province", gdOperator, "", http.StatusOK, ""},
		{"auditor", auditor, "", http.StatusOK, ""},
		{"reject/after-negative", auditor, "?after=-1", http.StatusBadRequest, "after"},
		{"reject/after-word", auditor, "?after=last", http.StatusBadRequest, "after"},
		{"reject/limit-zero", auditor, "?limit=0", http.StatusBadRequest, "limit"},
		{"reject/limit-too-big", auditor, "?limit=1001", http.StatusBadRequest, "limit"},
		{"reject/limit-twice", auditor, "?limit=1&limit=2", http.StatusBadRequest, "limit"},
		{"reject/unknown-parameter", auditor, "?before=3", http.StatusBadRequest, "before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := do(t, srv, "GET", "/v1/audit"+tc.query, tc.who, "")
			if code != tc.status {
				t.Fatalf("%d %s, want %d", code, b, tc.status)
			}
			if tc.field != "" && !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
				t.Errorf("%s does not name the field %s", b, tc.field)
			}
		})
	}

	// The auditor pages one entry at a time and checks that the pages join
	// up and end at the head.
	prev, after := strings.Repeat("0", 64), uint64(0)
	var all []node.AuditRecord
	var head node.AuditHead
	for range 10 {
		code, b := do(t, srv, "GET", "/v1/audit?limit=1&after="+itoa(after), auditor, "")
		if code != 200 {
			t.Fatalf("page after %d: %d %s", after, code, b)
		}
		var page node.AuditPage
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		var err error
		if prev, err = node.VerifyAuditRecords(prev, after, page.Entries); err != nil {
			t.Fatalf("page after %d: %v", after, err)
		}
		all = append(all, page.Entries...)
		if len(page.Entries) > 0 {
			after = page.Entries[len(page.Entries)-1].Seq
		}
		head = page.Head
		if !page.More {
			break
		}
	}
	if len(all) != 3 || head.Seq != 3 || head.Hash != prev {
		t.Fatalf("read %d entries ending at %s, head %+v", len(all), prev, head)
	}
	for i, want := range []struct{ action, actor, why, req string }{
		{node.ActionResidentRegister, "oidc:https://idp.gd#op-7", "walk-in enrolment, desk 3", "r-1"},
		{node.ActionLabPost, "cert:lab-kid", "", ""},
		{node.ActionContactPost, "cert:lab-kid", "", ""},
	} {
		e := all[i]
		if e.Action != want.action || e.Actor != want.actor || e.Why != want.why || e.Subject != res.Subject || e.Province != "440000" {
			t.Errorf("entry %d: %+v, want %+v", i+1, e.AuditEntry, want)
		}
		if want.req != "" && e.RequestID != want.req {
			t.Errorf("entry %d request id %q, want %q", i+1, e.RequestID, want.req)
		}
		if e.RequestID == "" {
			t.Errorf("entry %d has no request id", i+1)
		}
	}
	code, b = do(t, srv, "GET", "/metrics", auditor, "")
	if code != 200 || !strings.Contains(string(b), `hcx_api_shed_total{class="bulk"} 0`) || !strings.Contains(string(b), "hcx_api_rate_limited_total") ||
		!strings.Contains(string(b), `hcx_node_audit_seq{province="440000"} 3`) {
		t.Errorf("metrics lack the limits: %d\n%s", code, b)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
