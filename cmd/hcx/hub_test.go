package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestHubRequiresMemberTLSUnlessTheInsecureFlagIsGiven(t *testing.T) {
	base := []string{"-root", "root.crt", "-cert", "hub-1.crt", "-key", "hub-1.key", "-dir", t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"reject/no-tls-identity", nil, "-tls-cert and -tls-key are required"},
		{"reject/tls-key-missing", []string{"-tls-cert", "hub-1-tls.crt"}, "-insecure-plaintext-members"},
		{"reject/tls-and-insecure", []string{"-tls-cert", "a", "-tls-key", "b", "-insecure-plaintext-members"}, "exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runHub(context.Background(), append(append([]string{}, base...), tc.args...), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// Two `hcx hub` members with certificates from `hcx ca`: the second joins
// through the first's Raft address over member TLS and becomes a voter.
func TestHubMembersFromTheCAJoinOverMemberTLS(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	mustCA := func(args ...string) {
		t.Helper()
		if out, err := runCAForTest(t, append(args, "--dir", ca)...); err != nil {
			t.Fatalf("hcx ca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	mustCA("init", "--name", "test root")
	for _, id := range []string{"hub-1", "hub-2"} {
		mustCA("issue", "--role", "hub", "--name", id)
		mustCA("issue", "--tls", "--name", id+"-tls", "--member", id, "--ip", "127.0.0.1")
	}
	issued := func(name string) string { return filepath.Join(ca, "issued", name) }
	args := func(id string, extra ...string) []string {
		return append([]string{"-id", id, "-dir", filepath.Join(dir, id), "-raft", "127.0.0.1:0", "-http", "127.0.0.1:0",
			"-root", filepath.Join(ca, "root.crt"), "-cert", issued(id + ".crt"), "-key", issued(id + ".key"),
			"-tls-cert", issued(id + "-tls.crt"), "-tls-key", issued(id + "-tls.key")}, extra...)
	}
	started := regexp.MustCompile(`hub member (\S+): API (\S+), Raft (\S+)`)
	var admin1 string // hub-1's admin listener (-admin)
	adminLine := regexp.MustCompile(`admin listener \(pprof\) on (\S+)`)
	run := func(a []string) (api, raft string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut syncBuffer
		done := make(chan error, 1)
		go func() { done <- runHub(ctx, a, &out, &errOut) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("hub %s: %v\n%s", a[1], err, errOut.String())
			}
		})
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m := started.FindStringSubmatch(out.String()); m != nil {
				if slices.Contains(a, "-admin") {
					a := adminLine.FindStringSubmatch(out.String())
					if a == nil {
						continue
					}
					admin1 = a[1]
				}
				return m[2], m[3]
			}
		}
		t.Fatalf("hub %s did not start:\n%s%s", a[1], out.String(), errOut.String())
		return "", ""
	}
	api1, raft1 := run(args("hub-1", "-bootstrap", "-admin", "127.0.0.1:0"))
	// -admin serves pprof on a listener of its own; the API does not.
	for url, want := range map[string]int{admin1 + "goroutine?debug=1": http.StatusOK, api1 + "/debug/pprof/goroutine?debug=1": http.StatusNotFound} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", url, resp.StatusCode, want)
		}
	}
	// -join takes Raft addresses; an API URL is refused with a clear error.
	var out, errOut bytes.Buffer
	if err := runHub(context.Background(), args("hub-2", "-join", api1), &out, &errOut); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("-join with an API URL: err = %v, want one asking for host:port", err)
	}
	run(args("hub-2", "-join", raft1))
	caDir, err := certs.OpenCA(ca)
	if err != nil {
		t.Fatal(err)
	}
	rootSigner := caDir.Root()
	var st consensus.ClusterStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// The cluster's status is for federation roles; before any trust
		// list only the national root is trusted.
		req, _ := http.NewRequest(http.MethodGet, api1+"/v1/cluster", nil)
		if err := auth.SignRequest(req, nil, rootSigner, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			st = consensus.ClusterStatus{}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			voters := 0
			for _, m := range st.Members {
				if m.Suffrage == "voter" {
					voters++
				}
			}
			if voters == 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status %+v (%v): want hub-1 and hub-2 as voters", st, err)
		}
	}
}
