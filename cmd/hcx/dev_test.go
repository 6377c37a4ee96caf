package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// startTestFederation starts the federation `hcx dev` starts, through the same
// constructor, on ports :0 in a temporary directory. Logs show with -v.
func startTestFederation(t *testing.T, hubMembers int) *federation {
	t.Helper()
	return startTestFederationIn(t, t.TempDir(), hubMembers)
}

func startTestFederationIn(t *testing.T, dir string, hubMembers int, raftAddrs ...string) *federation {
	t.Helper()
	return startTestFederationWith(t, federationConfig{Dir: dir, HubMembers: hubMembers, HubRaft: raftAddrs})
}

// startTestFederationWith starts the dev provinces' federation described
// by cfg (Dir and HubMembers at least), logging only under go test -v
// unless cfg has a Logger.
func startTestFederationWith(t *testing.T, cfg federationConfig) *federation {
	t.Helper()
	var logOut io.Writer = io.Discard
	if testing.Verbose() {
		logOut = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Provinces = devProvinces
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// Receipts of checks across provinces travel within a second.
	cfg.ReceiptInterval = 200 * time.Millisecond
	f, err := startFederation(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if *openAPICheck {
		checkOpenAPI(t, f)
	}
	return f
}

// call sends a JSON request and decodes the JSON answer into out.
func call(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestEndToEndPositiveInGuangdongIsRedInSichuan(t *testing.T) {
	f := startTestFederation(t, 3) // as `hcx dev` starts it
	gd, sc := f.NodeURLs["440000"], f.NodeURLs["510000"]

	// An operator enrols the resident in person; the enrolment code starts
	// the resident's session.
	sub, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "440106199003070028", "name": "张三"})
	var res struct {
		Subject string `json:"subject"`
		Name    string `json:"name"`
		IDTail  string `json:"id_tail"`
	}
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(sub), nil, &res); st != http.StatusOK || res.Subject != string(sub) {
		t.Fatalf("the resident reads themselves: status %d", st)
	}
	if res.Name != "张*" || res.IDTail != "0028" {
		t.Errorf("registered resident shows %q / %q, want 张* / 0028", res.Name, res.IDTail)
	}

	// The code is fetched while the resident is green, so that red at
	// Sichuan can only come from Guangdong's attestation through the hub.
	var code struct {
		Code   string     `json:"code"`
		Colour hcx.Colour `json:"colour"`
	}
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+res.Subject+"/code", nil, &code); st != http.StatusOK || code.Colour != hcx.Green {
		t.Fatalf("code: status %d colour %q, want 200 green", st, code.Colour)
	}

	waitReady(t, sc)
	waitReady(t, gd) // the feed's certificate is known once the node has the trust list
	posted := time.Now()
	if st := callAs(t, f.client(), f.asFeed("440000"), "POST", gd+"/v1/residents/"+res.Subject+"/labs", map[string]string{"result": "positive"}, nil); st != http.StatusOK {
		t.Fatalf("lab result: status %d", st)
	}
	var v struct {
		Valid    bool         `json:"valid"`
		Colour   hcx.Colour   `json:"colour"`
		Issuer   string       `json:"issuer"`
		Name     string       `json:"name"`
		IDTail   string       `json:"id_tail"`
		Reasons  []hcx.Reason `json:"reasons"`
		LogIndex uint64       `json:"log_index"`
	}
	for {
		if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK {
			t.Fatalf("verify at Sichuan: status %d", st)
		}
		if v.Colour == hcx.Red {
			break
		}
		if time.Since(posted) > 2*time.Second {
			t.Fatalf("verify at Sichuan still answers %q 2 s after the positive result", v.Colour)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(posted)
	t.Logf("lab result POST at Guangdong to red at Sichuan: %v", took)
	if !v.Valid || v.Issuer != "440000" || v.Name != "张*" || v.IDTail != "0028" || v.LogIndex == 0 {
		t.Errorf("verification = %+v", v)
	}
	if len(v.Reasons) != 1 || v.Reasons[0] != hcx.ReasonLabPositive {
		t.Errorf("reasons = %v, want [lab.positive]", v.Reasons)
	}
}

func TestEndToEndBadCodesAreRejectedDistinctly(t *testing.T) {
	f := startTestFederation(t, 1)
	gd, sc := f.NodeURLs["440000"], f.NodeURLs["510000"]
	sub, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "51010719850612004X", "name": "李四"})
	var good struct {
		Code string `json:"code"`
	}
	callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(sub)+"/code", nil, &good)
	waitReady(t, sc)

	// A province signer certified by another root: its key is in no trust list.
	now := time.Now()
	otherRoot, err := certs.NewRoot("impostor root", now, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := certs.Issue(otherRoot, certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "impostor", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	claims := exchange.CodeClaims{Iss: "440000", Sub: sub, SKV: 1, Col: hcx.Green, Name: "李*", IDTail: "004X", IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()}
	unknown, err := exchange.IssueCode(impostor, &claims)
	if err != nil {
		t.Fatal(err)
	}
	// A real Guangdong code that expired a minute ago.
	old := claims
	old.IssuedAt, old.Expires = now.Add(-2*time.Minute).Unix(), now.Add(-time.Minute).Unix()
	expired, err := exchange.IssueCode(f.PKI.Provinces["440000"], &old)
	if err != nil {
		t.Fatal(err)
	}
	// A real Guangdong code claiming a ten-year life (a stolen key's favourite).
	long := claims
	long.Expires = now.AddDate(10, 0, 0).Unix()
	forever, err := exchange.IssueCode(f.PKI.Provinces["440000"], &long)
	if err != nil {
		t.Fatal(err)
	}
	// The good code with its payload changed from green to red... or any byte.
	parts := strings.Split(strings.TrimPrefix(good.Code, exchange.CodePrefix), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(`"col":"green"`), []byte(`"col":"yellow"`), 1)
	altered := exchange.CodePrefix + parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]

	// Sichuan's store also changes when its follower applies a leaf (the
	// provinces publish their policies as they start): measure once the log
	// has settled and Sichuan has applied all of it.
	waitSettled(t, f)
	before := f.Nodes["510000"].StoreVersion()
	for _, tc := range []struct {
		name, code, want string
	}{
		{"reject/unknown-signing-key", unknown, "unknown_issuer"},
		{"reject/expired", expired, "token_expired"},
		{"reject/ten-year-lifetime", forever, "token_lifetime"},
		{"reject/altered-payload", altered, "token_signature"},
		{"reject/malformed", "HCX1:this is not a token", "token_malformed"},
		{"reject/not-an-hcx-code", "https://example.com/qr", "token_malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": tc.code}, &e); st != http.StatusUnprocessableEntity {
				t.Errorf("status %d, want 422", st)
			}
			if e.Error.Code != tc.want || e.Error.Message == "" {
				t.Errorf("error = %+v, want code %s with a message", e.Error, tc.want)
			}
		})
	}
	if after := f.Nodes["510000"].StoreVersion(); after != before {
		t.Errorf("rejected codes wrote to Sichuan's store: version %d -> %d", before, after)
	}
	// The good code still verifies.
	var v struct {
		Valid bool `json:"valid"`
	}
	if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": good.Code}, &v); st != http.StatusOK || !v.Valid {
		t.Errorf("good code: status %d valid %v", st, v.Valid)
	}
}

// waitReady waits until a node has its trust list from the hub.
func waitReady(t *testing.T, url string) {
	t.Helper()
	waitReadyWith(t, http.DefaultClient, url)
}

// waitReadyWith waits for the node at url to be ready, asking with hc.
func waitReadyWith(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 5 s", url)
}

func TestEndToEndRestartKeepsResidentsAndLog(t *testing.T) {
	dir := t.TempDir()
	// Raft keeps its members' addresses in its log: a restarted member
	// must come back at the same address, as it would in production.
	raft := freeAddrs(t, 3)
	f := startTestFederationIn(t, dir, 3, raft...)
	gd := f.NodeURLs["440000"]
	sub, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "110105197709230036", "name": "王五"})
	res := struct{ Subject string }{string(sub)}
	waitReady(t, gd) // the feed's certificate is known once the node has the trust list
	if st := callAs(t, f.client(), f.asFeed("440000"), "POST", gd+"/v1/residents/"+res.Subject+"/labs", map[string]string{"result": "positive"}, nil); st != http.StatusOK {
		t.Fatalf("lab result: status %d", st)
	}
	waitApplied(t, f, 6) // trust list, four policy publications, one batch
	// and each node's box key (receipts.go), published on its own time.
	waitSettled(t, f)
	size := f.Hub.Leader().State().Size
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	f = startTestFederationIn(t, dir, 3, raft...)
	gd, sc := f.NodeURLs["440000"], f.NodeURLs["510000"]
	waitSettled(t, f)
	var r struct {
		Status struct {
			Colour hcx.Colour `json:"colour"`
		} `json:"status"`
	}
	// The resident's session survives the node's restart.
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+res.Subject, nil, &r); st != http.StatusOK || r.Status.Colour != hcx.Red {
		t.Fatalf("after restart: status %d colour %q, want 200 red", st, r.Status.Colour)
	}
	var code struct {
		Code string `json:"code"`
	}
	callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+res.Subject+"/code", nil, &code)
	var v struct {
		Colour   hcx.Colour   `json:"colour"`
		Reasons  []hcx.Reason `json:"reasons"`
		LogIndex uint64       `json:"log_index"`
	}
	if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK || v.Colour != hcx.Red || len(v.Reasons) == 0 {
		t.Fatalf("verify after restart: status %d %+v, want red with reasons from the log", st, v)
	}
	// An unchanged CA publishes no new trust list, unchanged rules no new
	// policy publication and a node its box key once: the log did not grow
	// across the restart.
	if v.LogIndex != size {
		t.Errorf("log size after restart = %d, want %d as before it", v.LogIndex, size)
	}
}

// waitSettled waits until the hub's log has not grown for half a second and
// every node has applied all of it, so that nothing the follower does can
// change a node's store during what a test does next.
func waitSettled(t *testing.T, f *federation) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last uint64
	stable := time.Now()
	for time.Now().Before(deadline) {
		leader := f.Hub.Leader()
		if leader == nil { // between two leaders: no one to ask
			time.Sleep(20 * time.Millisecond)
			continue
		}
		size := leader.State().Size
		if size != last {
			last, stable = size, time.Now()
		}
		all := true
		for _, n := range f.Nodes {
			all = all && n.Applied() == size
		}
		if all && time.Since(stable) >= 500*time.Millisecond {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the hub log did not settle with every node applying it within 15 s (size %d)", last)
}

// waitApplied waits until every node's cache reflects at least size entries.
func waitApplied(t *testing.T, f *federation, size uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range f.Nodes {
		for n.Applied() < size {
			if time.Now().After(deadline) {
				t.Fatalf("node %s applied %d entries, want %d", n.Province(), n.Applied(), size)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// freeAddrs finds n free loopback addresses.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ln.Addr().String())
		defer ln.Close()
	}
	return out
}
