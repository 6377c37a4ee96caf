package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// The hub's log holds every subject's colour history: only federation roles
// (province signers, hub members, the auditor) read it, only provinces (and
// the root publishing trust lists) write; the signed checkpoint and health
// checks stay public (issue 9).
func TestHubLogIsReadableOnlyByFederationRoles(t *testing.T) {
	f := newHubFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.rootClient.Submit(ctx, f.trust); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Submit(ctx, f.batch(t, 1, sub1, "red", 1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if note, err := f.client.Checkpoint(ctx); err == nil && bytes.Contains(note, []byte("\n2\n")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint of size 2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	call := func(method, path string, s *certs.Signer, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, f.hub.URL()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
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
		var e struct{ Error struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error.Code
	}
	reads := []string{"/v1/entries?start=0", "/v1/subjects/" + string(sub1), "/v1/proof/inclusion?index=1&size=2",
		"/v1/proof/consistency?from=1&to=2", "/v1/trust", "/v1/cluster"}
	for _, path := range reads {
		if got, code := call("GET", path, nil, nil); got != 401 || code != "unauthenticated" {
			t.Errorf("reject/anonymous-read GET %s: %d %s, want 401 unauthenticated", path, got, code)
		}
		if got, code := call("GET", path, f.feed, nil); got != 403 || code != "forbidden_role" {
			t.Errorf("reject/feed-reads-the-hub GET %s: %d %s, want 403 forbidden_role", path, got, code)
		}
		for _, s := range []*certs.Signer{f.prov, f.auditor} {
			if got, code := call("GET", path, s, nil); got != 200 {
				t.Errorf("%s reads GET %s: %d %s, want 200", s.Role, path, got, code)
			}
		}
	}
	for _, path := range []string{"/v1/checkpoint", "/healthz", "/readyz", "/metrics"} {
		if got, code := call("GET", path, nil, nil); got != 200 {
			t.Errorf("public GET %s: %d %s, want 200 for anyone", path, got, code)
		}
	}
	env := []byte(f.batch(t, 2, sub1, "green", 2))
	if got, code := call("POST", "/v1/entries", nil, env); got != 401 {
		t.Errorf("reject/anonymous-write: %d %s, want 401", got, code)
	}
	if got, code := call("POST", "/v1/entries", f.auditor, env); got != 403 || code != "forbidden_role" {
		t.Errorf("reject/auditor-writes: %d %s, want 403 forbidden_role (the auditor writes nothing)", got, code)
	}
	if got, code := call("POST", "/v1/entries", f.prov, env); got != 200 {
		t.Errorf("province writes: %d %s, want 200", got, code)
	}
}
