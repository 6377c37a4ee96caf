package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// provinceNode is a Node that answers only Province: the scope check needs
// nothing else.
type provinceNode struct {
	Node
	p hcx.ProvinceCode
}

func (n provinceNode) Province() hcx.ProvinceCode { return n.p }

// A feed certificate of Guangdong cannot post at Sichuan's node: the route
// grants feeds ScopeProvince (as the integrator's table will for the feed
// routes), and the caller's province comes from its certificate, through a
// real request token.
func TestFeedOfOneProvinceCannotPostForAnother(t *testing.T) {
	now := time.Now()
	root, err := certs.NewRoot("scope test root", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := certs.NewTrustStore(root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	feed := func(prov hcx.ProvinceCode) *certs.Signer {
		s, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleFeed, Province: prov, Name: "lab-" + string(prov), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Add(s.Cert.Raw); err != nil {
			t.Fatal(err)
		}
		return s
	}
	gd, sc := feed("440000"), feed("510000")
	h := &nodeHandler{n: provinceNode{p: "510000"}}
	served := 0
	g := &gate{
		authn:   &auth.RequestTokens{Trust: func() *certs.TrustStore { return ts }, Replay: auth.NewReplayCache(0)},
		inScope: h.inScope,
		onError: func(w http.ResponseWriter, _ *http.Request, err error) { WriteError(w, nil, err) },
	}
	r := mux.NewRouter()
	g.mount(r, []Rule{{Method: http.MethodPost, Path: "/v1/residents/{sub}/labs", Priority: PriorityBulk,
		Allow: []Grant{{Role: auth.RoleFeed, Scope: ScopeProvince}}, Audited: true,
		Handler: func(w http.ResponseWriter, r *http.Request) {
			served++
			p := auth.FromContext(r.Context())
			WriteJSON(w, http.StatusOK, map[string]any{"actor": p.Actor, "province": p.Province})
		}}})
	srv := httptest.NewServer(r)
	defer srv.Close()
	post := func(s *certs.Signer) (int, string) {
		body := []byte(`{"positive":true}`)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/residents/abcdefghijklmnopqrstuvwxyz/labs", bytes.NewReader(body))
		if s != nil {
			if err := auth.SignRequest(req, body, s, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Error struct{ Code string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Error.Code
	}
	if st, code := post(gd); st != http.StatusForbidden || code != "other_province" {
		t.Errorf("reject/guangdong-feed-posts-at-sichuan: %d %s, want 403 other_province", st, code)
	}
	if st, code := post(nil); st != http.StatusUnauthorized {
		t.Errorf("reject/anonymous-feed: %d %s, want 401", st, code)
	}
	if served != 0 {
		t.Fatalf("the handler ran for %d refused requests", served)
	}
	if st, code := post(sc); st != http.StatusOK || served != 1 {
		t.Errorf("sichuan's own feed: %d %s, want 200", st, code)
	}
}
