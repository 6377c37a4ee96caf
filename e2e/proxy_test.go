package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math/rand"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpProxy sits between the proxied province nodes and the hub members
// (the kernel here has no tc netem). It listens on the docker0 gateway at
// :7000, where the proxied nodes' extra_hosts send hub-1..3, peeks at each
// connection's TLS ClientHello for the server name, and forwards the bytes
// (TLS stays end to end) to that member's container address. While
// disturbed, every chunk in either direction waits a random delay drawn per
// connection, so chunks sent later on one connection overtake chunks sent
// earlier on another (reordering across connections; TCP keeps one
// connection's bytes in order, as the kernel would).
type tcpProxy struct {
	t        *testing.T
	ln       net.Listener
	maxDelay atomic.Int64 // nanoseconds; 0: forward at once
	chunks   atomic.Int64 // chunks forwarded while disturbed
	conns    atomic.Int64

	// resolve answers the address to forward a server name to (fresh:
	// after a failed dial); dockerTarget by default.
	resolve func(name string, fresh bool) (string, error)

	mu      sync.Mutex
	targets map[string]string // hub-N → container address
}

// startProxy listens on addr and forwards to what resolve answers for each
// connection's server name (nil: the hub member's container address).
func startProxy(t *testing.T, addr string, resolve func(name string, fresh bool) (string, error)) *tcpProxy {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the TCP proxy listens on %s: %v", addr, err)
	}
	p := &tcpProxy{t: t, ln: ln, targets: map[string]string{}, resolve: resolve}
	if p.resolve == nil {
		p.resolve = p.dockerTarget
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c) }()
		}
	}()
	return p
}

// disturb makes every chunk wait up to max (0: none).
func (p *tcpProxy) disturb(max time.Duration) { p.maxDelay.Store(int64(max)) }

// dockerTarget is the container address of hub member name, asked of
// docker (again after a failed dial: a restarted container may have moved).
func (p *tcpProxy) dockerTarget(name string, fresh bool) (string, error) {
	if !strings.HasPrefix(name, "hub-") || len(name) != 5 {
		return "", errors.New("not a hub member: " + name)
	}
	p.mu.Lock()
	addr, ok := p.targets[name]
	p.mu.Unlock()
	if ok && !fresh {
		return addr, nil
	}
	out, err := exec(10*time.Second, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container(name))
	ip := strings.TrimSpace(out)
	if err != nil || net.ParseIP(ip) == nil {
		return "", errors.New("no address for " + name)
	}
	addr = net.JoinHostPort(ip, "7000")
	p.mu.Lock()
	p.targets[name] = addr
	p.mu.Unlock()
	return addr, nil
}

// errPeeked ends the handshake the proxy only starts to read the hello.
var errPeeked = errors.New("peeked")

// peekConn reads from the client into buf and swallows what the TLS server
// peeking at the hello would write back.
type peekConn struct {
	net.Conn
	r io.Reader
}

func (c peekConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c peekConn) Write(b []byte) (int, error) { return len(b), nil }

func (p *tcpProxy) serve(client net.Conn) {
	defer client.Close()
	p.conns.Add(1)
	var hello bytes.Buffer
	var sni string
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_ = tls.Server(peekConn{client, io.TeeReader(client, &hello)}, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errPeeked
	}}).Handshake()
	_ = client.SetReadDeadline(time.Time{})
	var server net.Conn
	for _, fresh := range []bool{false, true} {
		addr, err := p.resolve(sni, fresh)
		if err != nil {
			return
		}
		if server, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			break
		}
	}
	if server == nil {
		return
	}
	defer server.Close()
	if _, err := server.Write(hello.Bytes()); err != nil {
		return
	}
	// One random delay bound per connection and direction: connections
	// disturbed together overtake each other.
	done := make(chan struct{}, 2)
	go func() { p.pipe(server, client); done <- struct{}{} }()
	go func() { p.pipe(client, server); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst chunk by chunk, each chunk held for a random part
// of this connection's delay while disturbed. A delayed chunk is written
// before the next is read, so one connection stays in order.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	scale := rng.Float64()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if max := time.Duration(p.maxDelay.Load()); max > 0 {
				time.Sleep(time.Duration(scale * rng.Float64() * float64(max)))
				p.chunks.Add(1)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
