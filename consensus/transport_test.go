package consensus

import (
	"context"
	"testing"
	"time"
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
