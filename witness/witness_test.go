package witness

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/testonly"
)

type fixture struct {
	hub, province, witness *certs.Signer
	ts                     *certs.TrustStore
	dir                    string
	db                     *badger.DB
	w                      *Witness
	now                    time.Time
	tree, fork             *testonly.Tree
}

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	start := time.Unix(1763780000, 0).UTC()
	ca, err := certs.InitCA(t.TempDir(), "test national root", start)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string, role certs.Role, prov string) *certs.Signer {
		s, err := ca.Issue(certs.IssueRequest{Role: role, Province: hcx.ProvinceCode(prov), Name: name, NotBefore: start, NotAfter: start.Add(30 * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f := &fixture{hub: issue("hub-1", certs.RoleHub, ""), province: issue("province-440000", certs.RoleProvince, "440000"),
		witness: issue("province-510000", certs.RoleProvince, "510000"), now: start.Add(time.Hour), dir: t.TempDir()}
	if f.ts, err = certs.NewTrustStore(ca.Root().Cert); err != nil {
		t.Fatal(err)
	}
	tl, err := exchange.BuildTrustList(ca, start, 0)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := exchange.SealTrustList(ca.Root(), tl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exchange.ApplyTrustList(f.ts, sealed); err != nil {
		t.Fatal(err)
	}
	f.tree, f.fork = testonly.New(exchange.LogHasher{}), testonly.New(exchange.LogHasher{})
	for i := 0; i < 40; i++ {
		f.tree.AppendData([]byte(fmt.Sprintf("leaf %d", i)))
		other := fmt.Sprintf("leaf %d", i)
		if i >= 10 {
			other = fmt.Sprintf("forked leaf %d", i) // the fork shares the first 10 leaves
		}
		f.fork.AppendData([]byte(other))
	}
	f.open(t)
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	f.db = openDB(t, f.dir)
	t.Cleanup(func() { f.db.Close() })
	w, err := New(Config{Signer: f.witness, Store: NewBadgerStore(f.db, "witness/state"), Now: func() time.Time { return f.now },
		LogKeys: func(at time.Time) []*ecdsa.PublicKey { return exchange.HubKeys(f.ts, at) }})
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
}

// note is the hub's checkpoint of tree at size, signed by s.
func (f *fixture) note(t *testing.T, s *certs.Signer, tree *testonly.Tree, size uint64) []byte {
	t.Helper()
	n, err := exchange.SignCheckpoint(s, size, tree.HashAt(size), f.now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) proof(t *testing.T, tree *testonly.Tree, from, to uint64) [][]byte {
	t.Helper()
	if from == 0 {
		return nil
	}
	p, err := tree.ConsistencyProof(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// add submits the checkpoint of tree at size with a proof from old.
func (f *fixture) add(t *testing.T, tree *testonly.Tree, old, size uint64) ([]byte, error) {
	t.Helper()
	return f.w.Add("hub member hub-2", EncodeRequest(old, f.proof(t, tree, old, size), f.note(t, f.hub, tree, size)))
}

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// checkCosigned checks that line is a valid cosignature of the checkpoint.
func (f *fixture) checkCosigned(t *testing.T, note, line []byte) {
	t.Helper()
	cosigned, err := exchange.AddCosignatures(note, string(line))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := exchange.ParseCheckpoint(cosigned)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.RequireCosignatures(exchange.WitnessesOf(f.ts, f.now), 1, f.now); err != nil {
		t.Fatalf("the witness's line does not verify: %v", err)
	}
}

func TestWitnessCosignsOnlyAConsistentHistory(t *testing.T) {
	f := newFixture(t)
	line, err := f.add(t, f.tree, 0, 5)
	if err != nil {
		t.Fatalf("first checkpoint: %v", err)
	}
	f.checkCosigned(t, f.note(t, f.hub, f.tree, 5), line)
	if _, err := f.add(t, f.tree, 5, 20); err != nil {
		t.Fatalf("5 -> 20: %v", err)
	}
	// The same checkpoint again: cosigned again, nothing moves.
	if _, err := f.add(t, f.tree, 20, 20); err != nil {
		t.Fatalf("20 again: %v", err)
	}
	// A caller that does not know the witness's size learns it.
	_, err = f.add(t, f.tree, 5, 30)
	var e *Error
	if !errors.As(err, &e) || e.Status != 409 || e.Size != 20 {
		t.Fatalf("old 5 after 20: err = %v, want 409 with size 20", err)
	}
	// The fork shares leaves 0..9: at 20 its root differs.
	_, err = f.add(t, f.fork, 20, 20)
	if !errors.As(err, &e) || e.Status != 409 || e.Code != "root_mismatch" || e.Size != 20 {
		t.Fatalf("a same-size fork: err = %v, want 409 root_mismatch", err)
	}
	// A larger checkpoint of the fork, with the fork's own proof: 422.
	forked := f.note(t, f.hub, f.fork, 30)
	_, err = f.w.Add("hub member hub-3", EncodeRequest(20, f.proof(t, f.fork, 20, 30), forked))
	if status(err) != 422 {
		t.Fatalf("a forked history: err = %v, want 422", err)
	}
	cs := f.w.Conflicts()
	if len(cs) != 2 || cs[1].Caller != "hub member hub-3" || cs[1].StoredSize != 20 || cs[1].Size != 30 || cs[1].Note != string(forked) {
		t.Fatalf("conflicts = %+v, want the two refusals, the last by hub-3 at size 30", cs)
	}
	st := f.w.Stats()
	if st.Cosigned != 3 || st.Conflicts != 2 || st.Stale != 1 {
		t.Errorf("stats = %+v", st)
	}
	// Refusals changed nothing: the true history goes on from 20.
	if _, err := f.add(t, f.tree, 20, 40); err != nil {
		t.Fatalf("20 -> 40 after the refusals: %v", err)
	}
	// The state is on disk: a restarted witness knows size 40.
	f.db.Close()
	f.open(t)
	if _, err := f.add(t, f.tree, 20, 40); !errors.As(err, &e) || e.Size != 40 {
		t.Fatalf("after a restart: err = %v, want 409 with size 40", err)
	}
	if _, err := f.add(t, f.tree, 40, 40); err != nil {
		t.Fatalf("after a restart, 40 again: %v", err)
	}
}

func TestWitnessRefusesBadSubmissions(t *testing.T) {
	f := newFixture(t)
	if _, err := f.add(t, f.tree, 0, 10); err != nil {
		t.Fatal(err)
	}
	good := f.note(t, f.hub, f.tree, 20)
	p := f.proof(t, f.tree, 10, 20)
	byProvince := f.note(t, f.province, f.tree, 20)
	otherOrigin := bytes.Replace(good, []byte(exchange.CheckpointOrigin), []byte("example.com/log"), 1)
	cut := EncodeRequest(10, p, good)
	for _, c := range []struct {
		name   string
		body   []byte
		status int
	}{
		{"signed by a province, not the hub", EncodeRequest(10, p, byProvince), 403},
		{"another log", EncodeRequest(10, p, otherOrigin), 404},
		{"old larger than the checkpoint", EncodeRequest(30, p, good), 400},
		{"no old line", good, 400},
		{"old with a leading zero", append([]byte("old 010\n"), cut[len("old 10\n"):]...), 400},
		{"a proof line that is not a hash", bytes.Replace(cut, []byte("\n\n"), []byte("\nnot-base64\n\n"), 1), 400},
		{"a proof with old 0", EncodeRequest(0, p, good), 400},
		{"64 proof lines", EncodeRequest(10, hashes(64), good), 400},
		{"no empty line", []byte("old 10\n"), 400},
		{"a note that is no checkpoint", EncodeRequest(10, p, []byte(exchange.CheckpointOrigin+"\nten\n")), 400},
		{"a wrong proof", EncodeRequest(10, f.proof(t, f.tree, 11, 20), good), 422},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := f.w.Add("test", c.body); status(err) != c.status {
				t.Errorf("err = %v, want status %d", err, c.status)
			}
		})
	}
	if _, err := f.add(t, f.tree, 10, 20); err != nil {
		t.Fatalf("the refusals moved the witness: %v", err)
	}
}

// TestWitnessAdvancesAtomically is tlog-witness's race: two submissions
// from the same old size, to different sizes; one wins, the other gets 409,
// and the witness never rolls back.
func TestWitnessAdvancesAtomically(t *testing.T) {
	f := newFixture(t)
	if _, err := f.add(t, f.tree, 0, 10); err != nil {
		t.Fatal(err)
	}
	bodies := [][]byte{
		EncodeRequest(10, f.proof(t, f.tree, 10, 20), f.note(t, f.hub, f.tree, 20)),
		EncodeRequest(10, f.proof(t, f.tree, 10, 30), f.note(t, f.hub, f.tree, 30)),
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range bodies {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = f.w.Add("racer", bodies[i]) }()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || (status(errs[0]) != 409 && status(errs[1]) != 409) {
		t.Fatalf("errs = %v, %v; want one success and one 409", errs[0], errs[1])
	}
	size, _, err := f.w.cfg.Store.Latest()
	if err != nil || (size != 20 && size != 30) {
		t.Fatalf("stored size = %d (%v)", size, err)
	}
}

func TestWitnessOverHTTP(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/witness/add-checkpoint" {
			http.NotFound(rw, r)
			return
		}
		f.w.ServeAdd(rw, r, "hub member hub-1")
	}))
	defer srv.Close()
	c := &Client{URL: srv.URL + "/v1/witness", HTTP: &http.Client{Timeout: 5 * time.Second}}
	ctx := context.Background()
	note := f.note(t, f.hub, f.tree, 15)
	line, err := c.AddCheckpoint(ctx, 0, nil, note)
	if err != nil {
		t.Fatal(err)
	}
	f.checkCosigned(t, note, line)
	_, err = c.AddCheckpoint(ctx, 0, nil, f.note(t, f.hub, f.tree, 20))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Size != 15 {
		t.Fatalf("stale old size: err = %v, want ConflictError{15}", err)
	}
	// The fork shares the first 10 leaves only.
	_, err = c.AddCheckpoint(ctx, 15, f.proof(t, f.fork, 15, 20), f.note(t, f.hub, f.fork, 20))
	var e *Error
	if !errors.As(err, &e) || e.Status != 422 || e.Code != "inconsistent" {
		t.Fatalf("fork: err = %v, want a 422 inconsistent", err)
	}
	// A body over the bound is refused before it is read.
	resp, err := http.Post(srv.URL+"/v1/witness/add-checkpoint", "text/plain", strings.NewReader(strings.Repeat("x", MaxRequestBody+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", resp.StatusCode)
	}
}

func hashes(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte(i + 1)}, 32)
	}
	return out
}
