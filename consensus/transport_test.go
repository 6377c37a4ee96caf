package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hcxfed/hcx"
)

// A member's stream layer forgets every connection once it is closed, on
// both the dialling and the accepting side.
func TestStreamLayerForgetsClosedConnections(t *testing.T) {
	a, err := newStreamLayer("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := newStreamLayer("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	go func() {
		for {
			c, err := a.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	const n = 200
	for i := 0; i < n; i++ {
		c, err := b.DialContext(context.Background(), a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{0x01}); err != nil { // a Raft RPC type byte
			t.Fatal(err)
		}
		var one [1]byte
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(one[:]) // returns once the accepting side closed it
		c.Close()
	}
	count := func(s *streamLayer) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count(a)+count(b) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got, gotB := count(a), count(b); got+gotB > 0 {
		t.Fatalf("after %d connections came and went the accepting layer tracks %d and the dialling one %d, want 0", n, got, gotB)
	}
}

// A follower that answers AppendEntries with Success=false (its log does
// not match) must get entries again: the leader backs up and resends. With
// hashicorp/raft's pipelined replication and the transport's default of 2
// RPCs in flight (unbuffered pipeline channels), the pipeline's decoder stops
// on a refusal while the sender, busy, may block on its next send forever:
// the follower then got heartbeats but never another entry, and Raft's
// Shutdown (so Hub.Close) hung.
func TestALeaderKeepsReplicatingToAFollowerThatRefusesAppends(t *testing.T) {
	p := newPKI(t, 1)
	h := startOne(t, p, t.TempDir(), fastTune)
	closed := make(chan struct{})
	defer func() {
		go func() { h.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(20 * time.Second):
			t.Error("Hub.Close did not return within 20s")
		}
	}()
	ctx := ctxT(t, 90*time.Second)
	if _, err := h.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	// The follower: a bare Raft transport answered by the test, which
	// refuses every fourth append that carries entries.
	ft, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	var (
		mu                 sync.Mutex
		last               uint64
		accepted, refusals int
	)
	go func() {
		for rpc := range ft.Consumer() {
			req, ok := rpc.Command.(*raft.AppendEntriesRequest)
			if !ok {
				rpc.Respond(nil, fmt.Errorf("test follower: only AppendEntries"))
				continue
			}
			mu.Lock()
			resp := &raft.AppendEntriesResponse{Term: req.Term, LastLog: last, Success: true}
			switch {
			case req.PrevLogEntry > last:
				resp.Success = false
			case len(req.Entries) > 0 && accepted%4 == 3 && refusals < 40:
				refusals++
				accepted++
				resp.Success = false // as if its log had diverged
			case len(req.Entries) > 0:
				accepted++
				last = max(last, req.Entries[len(req.Entries)-1].Index)
				resp.LastLog = last
			}
			mu.Unlock()
			rpc.Respond(resp, nil)
		}
	}()
	if err := h.raft.AddNonvoter("follower", ft.LocalAddr(), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	// Three provinces submit concurrently, so the leader always has new
	// entries to send.
	var wg sync.WaitGroup
	for _, prov := range []hcx.ProvinceCode{"110000", "440000", "510000"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= 60; seq++ {
				if _, err := h.Submit(ctx, p.batch(t, prov, seq, 1, int(seq), hcx.Red, 1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := h.raft.LastIndex()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		got, n := last, refusals
		mu.Unlock()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower is at index %d after refusing %d appends; the leader is at %d", got, n, want)
		}
	}
}

// A member accepts at most maxAccepted connections at once; a connection
// beyond is closed at accept, and a place frees when one closes.
func TestStreamLayerBoundsAcceptedConnections(t *testing.T) {
	a, err := newStreamLayer("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.mu.Lock()
	a.maxAccepted = 2
	a.mu.Unlock()
	accepted := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.accepted
	}
	waitAccepted := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); accepted() != n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections counted, want %d", accepted(), n)
			}
		}
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedByPeer reports whether the layer closed c (a read ends in EOF
	// rather than waiting).
	closedByPeer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	c1 := dial()
	dial() // these two send nothing: both wait in dispatch
	waitAccepted(2)
	if c3 := dial(); !closedByPeer(c3) {
		t.Fatal("a third connection was kept open with at most 2 allowed")
	}
	c1.Close()
	waitAccepted(1)
	if c4 := dial(); closedByPeer(c4) {
		t.Fatal("a connection was refused after a place freed")
	}
	waitAccepted(2)
}

// A member given its Raft address by name advertises the name, not the
// address it resolved to when it started: the other members dial the name
// and resolve it each time, so a member whose container comes back with
// another address (e2e TestComposeMemberMovesAddress) is still reached at
// the address the configuration holds for it.
func TestMembersAdvertiseTheirRaftHostName(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, true, func(cfg *Config) { cfg.RaftAddr = "localhost:0" })
	for _, h := range c.Members {
		host, port, err := net.SplitHostPort(h.RaftAddr())
		if err != nil || host != "localhost" || port == "0" {
			t.Fatalf("%s advertises %q, want localhost and the port it listens on", h.ID(), h.RaftAddr())
		}
	}
	if _, err := c.Members[0].Submit(ctxT(t, 10*time.Second), p.trust1); err != nil {
		t.Fatal(err)
	}
	converge(t, c.Members...)
}
