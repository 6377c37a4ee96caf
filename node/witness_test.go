package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/witness"
)

// witnessServer serves n's API with request tokens checked against the
// trust list n follows, as `hcx node` does.
func witnessServer(t testing.TB, n *node.Node) *httptest.Server {
	t.Helper()
	return serveNodeOn(t, n, nil)
}

// serveNodeOn is witnessServer on ln (nil: a new loopback port).
func serveNodeOn(t testing.TB, n *node.Node, ln net.Listener) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(api.NewNodeHandler(n, quietLogger(), api.NodeOptions{
		Authn: &auth.RequestTokens{Trust: n.TrustStore, Replay: auth.NewReplayCache(0)}}))
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// witnessClient submits checkpoints to the node at url as signer (nil:
// anonymous).
func witnessClient(url string, signer *certs.Signer) *witness.Client {
	hc := &http.Client{Timeout: 10 * time.Second}
	if signer != nil {
		hc.Transport = &auth.SigningTransport{Signer: signer}
	}
	return &witness.Client{URL: url + "/v1/witness", HTTP: hc}
}

// noteAt waits until member serves a checkpoint of size leaves exactly
// and returns its note.
func noteAt(t testing.TB, f *fed, member string, size uint64) []byte {
	t.Helper()
	cl := exchange.NewHubClient([]string{member}, &http.Client{Timeout: 10 * time.Second}).SignWith(f.provs["510000"], nil)
	var note []byte
	waitFor(t, "a checkpoint of the size wanted", func() bool {
		var err error
		if note, err = cl.Checkpoint(context.Background()); err != nil {
			return false
		}
		cp, err := exchange.ParseCheckpoint(note)
		return err == nil && cp.Size == size
	})
	return note
}

func statusOf(err error) int {
	var we *witness.Error
	var ce *witness.ConflictError
	switch {
	case errors.As(err, &we):
		return we.Status
	case errors.As(err, &ce):
		return http.StatusConflict
	case err == nil:
		return http.StatusOK
	}
	return 0
}

// Every province node is a witness: hub members (and only they) submit the
// hub's checkpoints to POST /v1/witness/add-checkpoint; the node cosigns
// with its province key what a consistency proof leads to from what it
// cosigned before, refuses the rest with tlog-witness's statuses, and keeps
// its state across a restart.
func TestNodeWitnessCosignsOnlyOneHistoryForHubMembers(t *testing.T) {
	ctx := context.Background()
	f := newFed(t, 1)
	hub := startHub(t, f, 0, 1, f.batch(t, 1, 0, 5, hcx.Red))
	member := hub.URLs()[0]
	dir := t.TempDir()
	n, stop := runNode(t, f, dir, member)
	waitFor(t, "the node to apply the trust list and a batch", func() bool { return n.Applied() == 2 })
	srv := witnessServer(t, n)
	hubMember := witnessClient(srv.URL, f.hubs[0][0])
	note2 := noteAt(t, f, member, 2)

	// A good first checkpoint is cosigned by the node's province key.
	line, err := hubMember.AddCheckpoint(ctx, 0, nil, note2)
	if err != nil {
		t.Fatalf("add-checkpoint of the first checkpoint: %v", err)
	}
	cosigned, err := exchange.AddCosignatures(note2, string(line))
	if err != nil {
		t.Fatal(err)
	}
	cp2, err := exchange.ParseCheckpoint(cosigned)
	if err != nil {
		t.Fatal(err)
	}
	valid, bad := cp2.VerifyCosignatures(n.Witnesses(time.Now()), time.Now())
	if want := []string{exchange.WitnessName(f.provs["510000"].KID)}; !slices.Equal(valid, want) || len(bad) != 0 {
		t.Fatalf("cosignatures valid %v bad %v; want %v", valid, bad, want)
	}

	// The same checkpoint from old size 0 again: 409 with the witness's
	// size as text/x.tlog.size.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/witness/add-checkpoint", bytes.NewReader(witness.EncodeRequest(0, nil, note2)))
	resp, err := hubMember.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != witness.SizeContentType || string(body) != "2\n" {
		t.Errorf("stale old size: %d %q %q; want 409 %s \"2\\n\"", resp.StatusCode, resp.Header.Get("Content-Type"), body, witness.SizeContentType)
	}

	submit(t, f, member, f.batch(t, 2, 5, 5, hcx.Red))
	note3 := noteAt(t, f, member, 3)
	cp3, err := exchange.ParseCheckpoint(note3)
	if err != nil {
		t.Fatal(err)
	}
	p, err := exchange.NewHubClient([]string{member}, nil).SignWith(f.provs["510000"], nil).ConsistencyProof(ctx, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	badProof := make([][]byte, len(p))
	for i := range p {
		badProof[i] = bytes.Clone(p[i])
	}
	badProof[0][0] ^= 1
	stranger := newFed(t, 1).hubs[0][0] // a hub key of another federation
	unknownKey, err := exchange.SignCheckpoint(stranger, 3, cp3.Root, cp3.Time)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(note3, []byte(b64(cp3.Root)), []byte(b64(bytes.Repeat([]byte{1}, 32))), 1)
	otherRoot, err := exchange.SignCheckpoint(f.hubs[0][0], 2, bytes.Repeat([]byte{2}, 32), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		client *witness.Client
		old    uint64
		proof  [][]byte
		note   []byte
		status int
	}{
		{"reject/bad-consistency-proof", hubMember, 2, badProof, note3, http.StatusUnprocessableEntity},
		{"reject/checkpoint-signed-by-an-unknown-key", hubMember, 2, p, unknownKey, http.StatusForbidden},
		{"reject/checkpoint-body-altered-after-signing", hubMember, 2, p, tampered, http.StatusForbidden},
		{"reject/same-size-other-root-signed-by-the-hub", hubMember, 2, nil, otherRoot, http.StatusConflict},
		{"reject/old-larger-than-size", hubMember, 4, nil, note3, http.StatusBadRequest},
		{"reject/checkpoint-that-does-not-parse", hubMember, 2, p, []byte(exchange.CheckpointOrigin + "\nnot a size\n\n"), http.StatusBadRequest},
		{"reject/another-log", hubMember, 2, p, []byte("example.com/another-log\n3\n" + b64(cp3.Root) + "\n\n"), http.StatusNotFound},
		{"reject/anonymous-caller", witnessClient(srv.URL, nil), 2, p, note3, http.StatusUnauthorized},
		{"reject/province-signer-is-not-a-hub-member", witnessClient(srv.URL, f.provs["440000"]), 2, p, note3, http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.client.AddCheckpoint(ctx, c.old, c.proof, c.note)
			if got := statusOf(err); got != c.status {
				t.Errorf("status %d (%v), want %d", got, err, c.status)
			}
		})
	}
	// A body that is not an add-checkpoint request at all.
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/v1/witness/add-checkpoint", strings.NewReader("garbage"))
	if resp, err = hubMember.HTTP.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Error.Code != "malformed_request" {
		t.Errorf("garbage body: %d %s; want 400 malformed_request", resp.StatusCode, body)
	}

	// The split view is kept as evidence naming the hub member.
	conflicts := n.Witness().Conflicts()
	if len(conflicts) != 2 || !strings.Contains(conflicts[0].Caller, "hub-0-1") {
		t.Errorf("conflicts %+v; want the bad proof and the other root, by hub-0-1", conflicts)
	}
	// Refused requests changed nothing: the real proof still works.
	if _, err := hubMember.AddCheckpoint(ctx, 2, p, note3); err != nil {
		t.Fatalf("add-checkpoint 2 -> 3 with the hub's proof: %v", err)
	}
	m := metricsOf(n)
	for _, want := range []string{
		`hcx_node_witness_cosigned_total{province="510000"} 2`,
		`hcx_node_witness_refused_total{province="510000",reason="unsigned"} 2`,
		`hcx_node_witness_refused_total{province="510000",reason="malformed"} 3`,
		`hcx_node_witness_refused_total{province="510000",reason="stale"} 1`,
		`hcx_node_witness_conflicts_total{province="510000"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// After a restart the node still knows it cosigned size 3.
	stop()
	n, _ = runNode(t, f, dir, member)
	srv = witnessServer(t, n)
	waitFor(t, "the restarted node to have its trust list", func() bool { return n.Ready() == nil })
	_, err = witnessClient(srv.URL, f.hubs[0][0]).AddCheckpoint(ctx, 0, nil, note2)
	var ce *witness.ConflictError
	if !errors.As(err, &ce) || ce.Size != 3 {
		t.Fatalf("after a restart, old size 0: %v; want 409 naming size 3", err)
	}
	if _, err := witnessClient(srv.URL, f.hubs[0][0]).AddCheckpoint(ctx, 3, nil, note3); err != nil {
		t.Errorf("after a restart, the checkpoint cosigned before: %v", err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A k the node can never meet is refused at New, naming it.
func TestNodeRefusesCosignaturesItCannotCount(t *testing.T) {
	f := newFed(t)
	for _, c := range []struct {
		name string
		k    int
		kids []string
		want string
	}{
		{"reject/negative", -1, nil, "cosignatures -1: want 0 (none required) to 63"},
		{"reject/more-than-a-note-holds", 64, nil, "cosignatures 64"},
		{"reject/witness-named-twice", 1, []string{"a", "a"}, `"a" is empty or named twice`},
		{"reject/more-than-named", 2, []string{"a"}, "2 cosignatures can never be met by the 1 witnesses named"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := node.New(node.Config{Province: "510000", Dir: t.TempDir(), Signer: f.provs["510000"], RootDER: f.root.Cert.Raw,
				SubjectKey: certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)},
				FieldKeys:  map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1, RulesPath: "../configs/rules/510000.yaml",
				Hub: exchange.NewHubClient([]string{"http://127.0.0.1:1"}, nil), Cosignatures: c.k, Witnesses: c.kids})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v; want %q", err, c.want)
			}
		})
	}
}
