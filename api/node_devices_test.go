package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/node"
)

// asPrincipal is a test-only authenticator standing in for the operators'
// OIDC login (another package): "X-Test-As: operator/440000" makes the
// caller an operator of Guangdong. Production code never reads this header.
var asPrincipal = auth.AuthenticatorFunc(func(r *http.Request) (*auth.Principal, error) {
	v := r.Header.Get("X-Test-As")
	if v == "" {
		return nil, nil
	}
	role, prov, _ := strings.Cut(v, "/")
	return &auth.Principal{Role: auth.Role(role), Actor: "test:" + v, Province: hcx.ProvinceCode(prov), Method: auth.MethodBearer}, nil
})

// caIssuer issues at a real CA directory, as hcx dev's in-process CA does.
type caIssuer struct{ ca *certs.CA }

func (c caIssuer) IssueDevice(_ context.Context, csr []byte, role certs.Role, prov hcx.ProvinceCode, name string) ([]byte, error) {
	cert, err := c.ca.IssueCSR(csr, role, prov, name, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	return certs.CertPEM(cert.Raw), nil
}

type enrolmentClient struct {
	t   *testing.T
	url string
}

func (c enrolmentClient) do(method, path, as string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	if as != "" {
		req.Header.Set("X-Test-As", as)
		req.Header.Set("X-HCX-Reason", "device enrolment test")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func newDeviceCSR(t *testing.T, name string) (*certs.PrivateKey, string) {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := certs.CreateCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(csr)
}

func TestDeviceEnrolmentFromCSRToCertificate(t *testing.T) {
	n := newTestNode(t, time.Now)
	ca, err := certs.InitCA(t.TempDir(), "test national root", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	withIssuer := httptest.NewServer(api.NewNodeHandler(n, log, api.NodeOptions{Authn: asPrincipal, DeviceIssuer: caIssuer{ca}}))
	defer withIssuer.Close()
	withoutIssuer := httptest.NewServer(api.NewNodeHandler(n, log, api.NodeOptions{Authn: asPrincipal}))
	defer withoutIssuer.Close()
	c, bare := enrolmentClient{t, withIssuer.URL}, enrolmentClient{t, withoutIssuer.URL}

	key, csr := newDeviceCSR(t, "gate-7")
	st, filed := c.do("POST", "/v1/devices/enrolments", "", map[string]string{"csr": csr, "name": "gate-7"})
	if st != http.StatusAccepted || filed["status"] != "pending" || filed["role"] != "checkpoint" {
		t.Fatalf("file: %d %v", st, filed)
	}
	id := filed["id"].(string)
	if st, got := c.do("GET", "/v1/devices/enrolments/"+id, "", nil); st != 200 || got["status"] != "pending" || got["cert"] != nil {
		t.Fatalf("device polls a pending enrolment: %d %v", st, got)
	}

	for _, tc := range []struct{ name, as, code string }{
		{"reject/anonymous-lists", "", "unauthenticated"},
		{"reject/feed-lists", "feed/440000", "forbidden_role"},
		{"reject/operator-of-another-province-lists", "operator/510000", "other_province"},
	} {
		if st, out := c.do("GET", "/v1/devices/enrolments", tc.as, nil); errCode(out) != tc.code {
			t.Errorf("%s: %d %v, want %s", tc.name, st, out, tc.code)
		}
		if st, out := c.do("POST", "/v1/devices/enrolments/"+id+"/approve", tc.as, nil); errCode(out) != tc.code {
			t.Errorf("%s approves: %d %v, want %s", tc.name, st, out, tc.code)
		}
	}
	st, list := c.do("GET", "/v1/devices/enrolments", "operator/440000", nil)
	if es, _ := list["enrolments"].([]any); st != 200 || len(es) != 1 || es[0].(map[string]any)["key_id"] != filed["key_id"] {
		t.Fatalf("operator lists: %d %v", st, list)
	}

	// Without an issuer the node says how to issue by hand, and nothing changes.
	if st, out := bare.do("POST", "/v1/devices/enrolments/"+id+"/approve", "operator/440000", nil); st != 503 || errCode(out) != "no_device_issuer" ||
		!strings.Contains(out["error"].(map[string]any)["message"].(string), "hcx ca issue --csr") {
		t.Fatalf("approve without an issuer: %d %v", st, out)
	}
	if _, got := c.do("GET", "/v1/devices/enrolments/"+id, "", nil); got["status"] != "pending" {
		t.Fatalf("a failed approval changed the enrolment: %v", got)
	}

	st, dec := c.do("POST", "/v1/devices/enrolments/"+id+"/approve", "operator/440000", nil)
	if st != 200 || dec["status"] != "issued" || dec["decided_by"] != "test:operator/440000" {
		t.Fatalf("approve: %d %v", st, dec)
	}
	if st, out := c.do("POST", "/v1/devices/enrolments/"+id+"/approve", "operator/440000", nil); st != 409 || errCode(out) != "enrolment_decided" {
		t.Errorf("approve twice: %d %v", st, out)
	}
	_, got := c.do("GET", "/v1/devices/enrolments/"+id, "", nil)
	blk, _ := pem.Decode([]byte(got["cert"].(string)))
	if got["status"] != "issued" || blk == nil {
		t.Fatalf("device fetches its certificate: %v", got)
	}
	ts, err := ca.TrustStore()
	if err != nil {
		t.Fatal(err)
	}
	e, err := ts.Lookup(certs.KID(blk.Bytes))
	if err != nil || e.Role != certs.RoleCheckpoint || e.Province != "440000" || !key.PublicKey.Equal(e.Cert.PublicKey) || got["kid"] != e.KID {
		t.Fatalf("issued certificate: %v %+v", err, e)
	}

	// A rejected one says why, and its device gets no certificate.
	_, csr2 := newDeviceCSR(t, "gate-8")
	_, f2 := c.do("POST", "/v1/devices/enrolments", "", map[string]string{"csr": csr2, "name": "gate-8", "role": "feed"})
	id2 := f2["id"].(string)
	if st, out := c.do("POST", "/v1/devices/enrolments/"+id2+"/reject", "operator/440000", map[string]string{"reason": "not one of ours"}); st != 200 || out["status"] != "rejected" {
		t.Fatalf("reject: %d %v", st, out)
	}
	if _, got := c.do("GET", "/v1/devices/enrolments/"+id2, "", nil); got["status"] != "rejected" || got["reason"] != "not one of ours" || got["cert"] != nil {
		t.Fatalf("rejected enrolment: %v", got)
	}
	if st, out := c.do("GET", "/v1/devices/enrolments/AAAAAAAAAAAAAAAAAAAAAA", "", nil); st != 404 || errCode(out) != "no_enrolment" {
		t.Errorf("unknown id: %d %v", st, out)
	}
}

func TestDeviceEnrolmentRefusesBadInputAndFloods(t *testing.T) {
	n := newTestNode(t, time.Now)
	srv := httptest.NewServer(api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{Authn: asPrincipal}))
	defer srv.Close()
	c := enrolmentClient{t, srv.URL}
	_, csr := newDeviceCSR(t, "d")
	tampered := strings.Replace(csr, csr[len(csr)-60:len(csr)-56], "AAAA", 1)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"reject/not-a-csr", map[string]string{"csr": "hello", "name": "d"}, 400, "invalid_csr"},
		{"reject/csr-signature-altered", map[string]string{"csr": tampered, "name": "d"}, 400, "invalid_csr"},
		{"reject/name-with-slash", map[string]string{"csr": csr, "name": "../x"}, 400, "invalid_name"},
		{"reject/role-hub", map[string]string{"csr": csr, "name": "d", "role": "hub"}, 400, "invalid_role"},
		{"reject/role-province", map[string]string{"csr": csr, "name": "d", "role": "province"}, 400, "invalid_role"},
		{"reject/unknown-member", map[string]string{"csr": csr, "name": "d", "province": "510000"}, 400, "bad_json"},
		{"reject/body-too-large", []byte(`{"csr":"` + strings.Repeat("A", 8<<10) + `","name":"d"}`), 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, out := c.do("POST", "/v1/devices/enrolments", "", tc.body); st != tc.status || errCode(out) != tc.code {
				t.Errorf("%d %v, want %d %s", st, out, tc.status, tc.code)
			}
		})
	}
	if list, _ := n.Enrolments(context.Background(), ""); len(list) != 0 {
		t.Fatalf("refused requests were filed: %d", len(list))
	}
	for i := 0; i < node.MaxPendingEnrolments; i++ {
		if st, out := c.do("POST", "/v1/devices/enrolments", "", map[string]string{"csr": csr, "name": "d"}); st != 202 {
			t.Fatalf("enrolment %d: %d %v", i, st, out)
		}
	}
	st, out := c.do("POST", "/v1/devices/enrolments", "", map[string]string{"csr": csr, "name": "d"})
	if st != 503 || errCode(out) != "enrolments_full" {
		t.Errorf("a flood past %d pending: %d %v, want 503 enrolments_full", node.MaxPendingEnrolments, st, out)
	}
}
