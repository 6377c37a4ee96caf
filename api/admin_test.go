package api_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/api"
)

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The admin listener serves pprof; the node's and the hub's API listeners do
// not (404), so profiles never leak through the public API.
func TestAdminListenerServesPprofAndTheAPIDoesNot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewAdminServer()
	go admin.Serve(ln)
	t.Cleanup(func() { admin.Close() })
	base := "http://" + ln.Addr().String()
	if st, body := getStatus(t, base+"/debug/pprof/"); st != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("admin /debug/pprof/ = %d %.200s; want 200 with the profile index", st, body)
	}
	if st, body := getStatus(t, base+"/debug/pprof/goroutine?debug=1"); st != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("admin goroutine profile = %d %.200s; want 200", st, body)
	}
	// A profile longer than the bound is refused at once, naming the field;
	// a short one within it is served (pprof extends the write deadline).
	if st, body := getStatus(t, base+"/debug/pprof/profile?seconds=121"); st != http.StatusBadRequest || !strings.Contains(body, "seconds must be a number from 0 to 120") {
		t.Errorf("admin 121 s profile = %d %.200s; want 400 naming seconds", st, body)
	}
	if st, body := getStatus(t, base+"/debug/pprof/trace?seconds=0.2"); st != http.StatusOK || len(body) == 0 {
		t.Errorf("admin 0.2 s trace = %d (%d bytes); want 200 with a trace", st, len(body))
	}

	n := newTestNode(t, time.Now)
	nodeAddr := serve(t, api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{}), api.ServerTimeouts{})
	f := newHubFixture(t)
	for _, u := range []string{"http://" + nodeAddr, f.hub.URL()} {
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine", "/debug/pprof/cmdline"} {
			if st, _ := getStatus(t, u+p); st != http.StatusNotFound {
				t.Errorf("API %s%s = %d; want 404", u, p, st)
			}
		}
	}
}
