package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
)

// getReadyz fetches url+"/readyz" and returns the status and the error code
// and message of a 503 answer.
func getReadyz(t *testing.T, url string) (int, string, string) {
	t.Helper()
	st, b := getStatus(t, url+"/readyz")
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st != http.StatusOK {
		if err := json.Unmarshal([]byte(b), &e); err != nil {
			t.Fatalf("/readyz = %d %s: not the error JSON: %v", st, b, err)
		}
	}
	return st, e.Error.Code, e.Error.Message
}

// A node whose hub it cannot reach has no trust list: /readyz says so with
// its own code and tells the operator what to check.
func TestNodeReadyzSaysNoTrustList(t *testing.T) {
	n := newTestNode(t, time.Now)
	addr := serve(t, api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{}), api.ServerTimeouts{})
	st, code, msg := getReadyz(t, "http://"+addr)
	if st != http.StatusServiceUnavailable || code != "no_trust_list" || !strings.Contains(msg, "--hub") {
		t.Errorf("/readyz = %d %q %q; want 503 no_trust_list naming --hub", st, code, msg)
	}
}

// A hub member that was not bootstrapped and has no peers knows no leader:
// /readyz is 503 no_leader; a bootstrapped one-member hub is ready.
func TestHubReadyzSaysNoLeader(t *testing.T) {
	now := time.Now()
	root, _ := newRootAndGuangdong(t)
	hubSigner, err := certs.Issue(root, certs.IssueRequest{Role: certs.RoleHub, Name: "hub-2", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := consensus.New(consensus.Config{ID: "hub-2", Dir: t.TempDir(), RootDER: root.Cert.Raw, Signer: hubSigner,
		Logger: log, Handler: api.HubHandlerFunc(log, api.HubOptions{}), InsecurePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	st, code, msg := getReadyz(t, h.URL())
	if st != http.StatusServiceUnavailable || code != "no_leader" || !strings.Contains(msg, "majority") {
		t.Errorf("/readyz of a member with no leader = %d %q %q; want 503 no_leader", st, code, msg)
	}

	f := newHubFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		st, code, msg = getReadyz(t, f.hub.URL())
		if st == http.StatusOK {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("/readyz of a bootstrapped member = %d %q %q; want 200", st, code, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
