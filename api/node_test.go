package api_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// newTestNode opens a real Guangdong node on badger in a temporary directory,
// with keys and certificates made here. Its hub is unreachable: the routes
// under test never need it.
func newTestNode(t testing.TB, now func() time.Time) *node.Node {
	t.Helper()
	root, prov := newRootAndGuangdong(t)
	n, err := node.New(node.Config{
		Province: "440000", Dir: t.TempDir(), Signer: prov, RootDER: root.Cert.Raw,
		SubjectKey: certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)},
		FieldKeys:  map[int][]byte{1: bytes.Repeat([]byte{9}, 16)}, FieldKeyVersion: 1,
		RulesPath: "../configs/rules/440000.yaml",
		Hub:       exchange.NewHubClient([]string{"http://127.0.0.1:1"}, nil),
		Now:       now,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// serve serves h on 127.0.0.1:0 with the given time-outs and returns the
// address.
func serve(t testing.TB, h http.Handler, to api.ServerTimeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(h, to)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A client that sends its headers and then trickles the body is cut off once
// the read time-out has passed, instead of holding the connection for as long
// as it keeps trickling (issue finding 8: over 45 s with ReadHeaderTimeout only).
func TestNodeServerCutsOffATricklingBody(t *testing.T) {
	n := newTestNode(t, time.Now)
	const readTimeout = time.Second
	addr := serve(t, api.NewNodeHandler(n, slog.New(slog.NewTextHandler(io.Discard, nil)), api.NodeOptions{}), api.ServerTimeouts{Read: readTimeout})
	assertTrickleCutOff(t, addr, "/v1/residents", readTimeout)
}

// assertTrickleCutOff posts to path at addr, announcing a 1000-byte body and
// then sending one byte every 250 ms, and fails unless the server answers or
// closes the connection within about readTimeout.
func assertTrickleCutOff(t *testing.T, addr, path string, readTimeout time.Duration, headers ...string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	extra := ""
	for _, h := range headers {
		extra += h + "\r\n"
	}
	if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: hcx\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"+extra+"\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan time.Duration, 1)
	go func() {
		// The server either answers or closes the connection; either ends
		// this read.
		_, _ = conn.Read(make([]byte, 512))
		closed <- time.Since(start)
	}()
	// Trickle for up to 8 s, far longer than the read time-out, with
	// generous slack for a loaded machine.
	giveUp := time.After(8 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-closed:
			if d > readTimeout+4*time.Second {
				t.Fatalf("connection cut off after %v; want about the read time-out of %v", d, readTimeout)
			}
			t.Logf("cut off after %v (read time-out %v)", d, readTimeout)
			return
		case <-giveUp:
			t.Fatalf("a body trickling for %v still held the connection; the read time-out is %v", time.Since(start), readTimeout)
		case <-tick.C:
			_, _ = conn.Write([]byte{' '})
		}
	}
}
