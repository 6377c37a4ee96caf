package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
)

// newRootAndGuangdong makes a national root and a Guangdong (440000) signer
// under it, valid from an hour ago for a day.
func newRootAndGuangdong(t testing.TB) (root, prov *certs.Signer) {
	t.Helper()
	now := time.Now()
	root, err := certs.NewRoot("api test root", now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	prov, err = certs.Issue(root, certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "gd", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return root, prov
}

type hubFixture struct {
	hub    *consensus.Hub
	client *exchange.HubClient // signs as Guangdong's province signer
	// rootClient signs as the national root, which a hub trusts before any
	// trust list is in its log.
	rootClient *exchange.HubClient
	root, prov *certs.Signer
	auditor    *certs.Signer
	feed       *certs.Signer // a Guangdong lab feed: not a federation role at the hub
	trust      string
}

func newHubFixture(t *testing.T) *hubFixture { return newHubFixtureWith(t, nil) }

// newHubFixtureWith starts a one-member hub serving the public API; tune, if
// set, changes its configuration first.
func newHubFixtureWith(t *testing.T, tune func(*consensus.Config)) *hubFixture {
	t.Helper()
	now := time.Now()
	root, prov := newRootAndGuangdong(t)
	hubSigner, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleHub, Name: "hub-1", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleAuditor, Name: "auditor", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	feed, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleFeed, Province: "440000", Name: "lab-gz-1", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	trust, err := exchange.SealTrustList(root, &exchange.TrustList{At: now.Unix(), Ver: 1, Certs: []exchange.TrustedCert{exchange.TrustedCertOf(prov), exchange.TrustedCertOf(hubSigner), exchange.TrustedCertOf(auditor), exchange.TrustedCertOf(feed)}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := consensus.Config{ID: "hub-1", Dir: t.TempDir(), Bootstrap: true, RootDER: root.Cert.Raw, Signer: hubSigner,
		Logger: log, Handler: api.HubHandlerFunc(log, api.HubOptions{}), CheckpointEvery: 50 * time.Millisecond, InsecurePlaintext: true}
	if tune != nil {
		tune(&cfg)
	}
	h, err := consensus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return &hubFixture{hub: h, client: exchange.NewHubClient([]string{h.URL()}, nil).SignWith(prov, nil),
		rootClient: exchange.NewHubClient([]string{h.URL()}, nil).SignWith(root, nil), root: root, prov: prov, auditor: auditor, feed: feed, trust: trust}
}

func (f *hubFixture) batch(t *testing.T, seq uint64, sub hcx.Subject, col hcx.Colour, n uint64) string {
	t.Helper()
	return f.batchAt(t, seq, sub, col, n, time.Now())
}

func (f *hubFixture) batchAt(t *testing.T, seq uint64, sub hcx.Subject, col hcx.Colour, n uint64, at time.Time) string {
	t.Helper()
	now := at.Unix()
	s, err := exchange.SealBatch(f.prov, &exchange.Batch{Iss: "440000", Seq: seq, At: now, SKV: 1, Atts: []hcx.Attestation{{
		Subject: sub, Colour: col, Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: now - 5, Exp: now + 3600, PolicyV: "00112233445566778899aabbccddeeff", N: n}}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apiErr(t *testing.T, err error) *exchange.APIError {
	t.Helper()
	var ae *exchange.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an API error, got %v", err)
	}
	return ae
}

const sub1 = hcx.Subject("abcdefghijklmnopqrstuvwxyz")

func TestHubRoutesServeTheProtocol(t *testing.T) {
	f := newHubFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := f.rootClient.Trust(ctx); apiErr(t, err).Status != http.StatusNotFound {
		t.Fatalf("trust before any list: %v", err)
	}
	if _, err := f.client.Trust(ctx); apiErr(t, err).Code != "unknown_key" {
		t.Fatalf("a province signer before any trust list lists it: %v, want 401 unknown_key", err)
	}
	if _, err := f.rootClient.Submit(ctx, f.trust); err != nil {
		t.Fatal(err)
	}
	b1 := f.batch(t, 1, sub1, hcx.Red, 1)
	r1, err := f.client.Submit(ctx, b1)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := f.client.Submit(ctx, b1); err != nil || again != r1 {
		t.Fatalf("the same envelope again: %+v %v, want %+v", again, err, r1)
	}
	cases := []struct {
		name     string
		body     string
		status   int
		code     string
		expected uint64
	}{
		{"reject/same-sequence-other-bytes", f.batch(t, 1, sub1, hcx.Green, 2), 409, "sequence_conflict", 2},
		{"reject/sequence-gap", f.batch(t, 4, sub1, hcx.Green, 2), 409, "sequence_conflict", 2},
		{"reject/oversize", strings.Repeat("a", exchange.MaxEnvelopeBytes+1), 413, "too_large", 0},
		{"reject/not-a-jws", "hello", 400, "malformed", 0},
		{"reject/bad-signature", b1[:len(b1)-4] + "AAAA", 401, "bad_signature", 0},
		{"reject/at-ten-minutes-ago", f.batchAt(t, 2, sub1, hcx.Green, 2, time.Now().Add(-10*time.Minute)), 400, "clock_skew", 0},
		{"reject/at-ten-minutes-ahead", f.batchAt(t, 2, sub1, hcx.Green, 2, time.Now().Add(10*time.Minute)), 400, "clock_skew", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.Submit(ctx, tc.body)
			ae := apiErr(t, err)
			if ae.Status != tc.status || ae.Code != tc.code {
				t.Fatalf("got %d %s (%s), want %d %s", ae.Status, ae.Code, ae.Message, tc.status, tc.code)
			}
			if tc.expected != 0 && (ae.Expected == nil || *ae.Expected != tc.expected) {
				t.Fatalf("expected %v, want %d", ae.Expected, tc.expected)
			}
		})
	}
	// Long-poll: the wait returns as soon as leaf 2 commits.
	got := make(chan exchange.Entries, 1)
	go func() {
		es, _ := f.client.Entries(ctx, 2, 10, 5*time.Second)
		got <- es
	}()
	time.Sleep(50 * time.Millisecond)
	b2 := f.batch(t, 2, sub1, hcx.Yellow, 2)
	if _, err := f.client.Submit(ctx, b2); err != nil {
		t.Fatal(err)
	}
	select {
	case es := <-got:
		if es.Start != 2 || len(es.Entries) != 1 || es.Entries[0] != b2 || es.Size != 3 {
			t.Fatalf("long-poll: %+v", es)
		}
		if len(es.Times) != 1 || es.Times[0] < time.Now().Add(-time.Minute).Unix() || es.Times[0] > time.Now().Unix() {
			t.Fatalf("long-poll: commit times %v, want the one of leaf 2, just now", es.Times)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("long-poll did not return")
	}
	ans, err := f.client.Subject(ctx, sub1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Attestations) != 1 || ans.Attestations[0].Colour != hcx.Yellow || ans.Attestations[0].Index != 2 || ans.Applied != 3 {
		t.Fatalf("subject: %+v", ans)
	}
	if tr, err := f.client.Trust(ctx); err != nil || tr != f.trust {
		t.Fatalf("trust: %v", err)
	}
	// A checkpoint for size 3 arrives within the cadence.
	var note []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		note, err = f.client.Checkpoint(ctx)
		if err == nil {
			if cp, _ := exchange.ParseCheckpoint(note); cp != nil && cp.Size == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size 3: %v %s", err, note)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(string(note), exchange.CheckpointOrigin+"\n3\n") {
		t.Fatalf("checkpoint note: %q", note)
	}
	var incl struct {
		Index, Size uint64
		Hashes      []string
	}
	getJSON(t, f.prov, f.hub.URL()+"/v1/proof/inclusion?index=1&size=3", 200, &incl)
	if incl.Index != 1 || incl.Size != 3 || len(incl.Hashes) != 2 {
		t.Fatalf("inclusion proof: %+v", incl)
	}
	var cons struct {
		From, To uint64
		Hashes   []string
	}
	getJSON(t, f.prov, f.hub.URL()+"/v1/proof/consistency?from=1&to=3", 200, &cons)
	if cons.From != 1 || cons.To != 3 || len(cons.Hashes) == 0 {
		t.Fatalf("consistency proof: %+v", cons)
	}
	var cl consensus.ClusterStatus
	getJSON(t, f.prov, f.hub.URL()+"/v1/cluster", 200, &cl)
	if cl.Leader != "hub-1" || len(cl.Members) != 1 || cl.TreeSize != 3 || cl.CommitIndex == 0 || cl.AppliedIndex == 0 {
		t.Fatalf("cluster: %+v", cl)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	getJSON(t, f.prov, f.hub.URL()+"/v1/proof/inclusion?index=5&size=99", 404, &e)
	if e.Error.Code != "size_beyond_tree" {
		t.Fatalf("proof beyond the tree: %+v", e)
	}
	getJSON(t, f.prov, f.hub.URL()+"/v1/entries?start=x", 400, &e)
	getJSON(t, f.prov, f.hub.URL()+"/v1/subjects/NOT-A-SUBJECT", 400, &e)
	getJSON(t, f.prov, f.hub.URL()+"/v1/nothing", 404, &e)
	getJSON(t, f.prov, f.hub.URL()+"/readyz", 200, &map[string]string{})
	resp, err := http.Get(f.hub.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "hcx_hub_tree_size 3") || !strings.Contains(string(m), `hcx_hub_http_requests_total{code="409",route="submit"}`) {
		t.Fatalf("metrics:\n%s", m)
	}
}

// getJSON GETs url as s (a request token; anonymous if s is nil) and
// decodes the answer, which must have status.
func getJSON(t *testing.T, s *certs.Signer, url string, status int, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s != nil {
		if err := auth.SignRequest(req, nil, s, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// The hub's public server cuts off a trickling body too (issue finding 8).
func TestHubServerCutsOffATricklingBody(t *testing.T) {
	const readTimeout = time.Second
	f := newHubFixtureWith(t, func(c *consensus.Config) { c.HTTPReadTimeout = readTimeout })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.rootClient.Submit(ctx, f.trust); err != nil {
		t.Fatal(err)
	}
	// A signed writer's body is read to check its hash before the handler
	// runs: that read is cut off too. (Unsigned, it is refused at once.)
	req, _ := http.NewRequest(http.MethodPost, "http://hcx/v1/entries", nil)
	if err := auth.SignRequest(req, []byte("x"), f.prov, time.Now()); err != nil {
		t.Fatal(err)
	}
	assertTrickleCutOff(t, strings.TrimPrefix(f.hub.URL(), "http://"), "/v1/entries", readTimeout, "Authorization: "+req.Header.Get("Authorization"))
}

// A long poll may outlast the write time-out by its wait: the hub answers
// GET /v1/entries?wait= when the wait ends, not with a cut connection.
func TestHubLongPollOutlastsTheWriteTimeout(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	f := newHubFixtureWith(t, func(c *consensus.Config) { c.HTTPWriteTimeout = writeTimeout })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.rootClient.Submit(ctx, f.trust); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, f.hub.URL()+"/v1/entries?start=1&wait=2s", nil)
	if err := auth.SignRequest(req, nil, f.prov, time.Now()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("long poll past the write time-out: %v", err)
	}
	defer resp.Body.Close()
	var es exchange.Entries
	if err := json.NewDecoder(resp.Body).Decode(&es); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("long poll: status %d, %v", resp.StatusCode, err)
	}
	if d := time.Since(start); d < 2*time.Second || len(es.Entries) != 0 {
		t.Fatalf("long poll on an empty log answered after %v with %d entries; want the whole wait of 2s and none", d, len(es.Entries))
	}
}
