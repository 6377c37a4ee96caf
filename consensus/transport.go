package consensus

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hcxfed/hcx/certs"
)

// streamLayer is the members' network: one TCP listener, in mutual TLS when
// the member has a hub TLS identity (certs.HubServerTLS / HubClientTLS
// verify the peer's chain to the SM2 root themselves; a dialled address that
// the configuration gives to a member must answer with that member's
// certificate). It carries two
// protocols, told apart by the first byte a client sends: Raft's RPCs (a
// type byte below 0x10) and the members' internal HTTP routes (a method
// name, upper-case ASCII). So forwarded writes and membership changes are as
// authenticated as Raft itself.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config // nil: plain TCP
	client    *tls.Config

	raftCh    chan net.Conn
	httpCh    chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	// conns holds the open connections, dialled and accepted, so that a
	// partition can cut them; a connection leaves it when it is closed.
	// Accepted ones are at most maxAccepted: beyond that the listener
	// closes new connections at once.
	mu          sync.Mutex
	conns       map[*memberConn]struct{}
	accepted    int
	maxAccepted int

	// members maps the Raft addresses in the configuration to their member
	// ids (setMembers). Dialling such an address in TLS, the peer's
	// certificate must name that member.
	members atomic.Pointer[map[string]string]

	// Fault injection for tests: while cut, the member neither dials nor
	// accepts, and open connections are closed.
	cut atomic.Bool
}

// maxAcceptedConns bounds the connections a member accepts at once (in TLS
// handshake or open). Members hold a few each (Raft's pool of 3 per peer,
// the internal HTTP client's idle connections); a thousand leaves room for
// a 5-member cluster many times over.
const maxAcceptedConns = 1024

var _ raft.StreamLayer = (*streamLayer)(nil)

var (
	errPartitioned = errors.New("member network: partitioned (test fault)")
	errLayerClosed = errors.New("member network: closed")
)

func newStreamLayer(bind string, server, client *tls.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &streamLayer{ln: ln, advertise: advertised(bind, ln.Addr()), server: server, client: client,
		raftCh: make(chan net.Conn), httpCh: make(chan net.Conn), closed: make(chan struct{}),
		conns: map[*memberConn]struct{}{}, maxAccepted: maxAcceptedConns}
	go s.acceptLoop()
	return s, nil
}

// advertised is the address the other members are told to dial: bind as
// given when its host is a name (the port filled in when it was 0), so that
// they resolve the name at every dial and still reach a member that came
// back with another address (a container restarted or recreated); the
// bound address when bind names an IP address.
func advertised(bind string, bound net.Addr) net.Addr {
	host, port, err := net.SplitHostPort(bind)
	if err != nil || host == "" || net.ParseIP(host) != nil {
		return bound
	}
	if port == "0" {
		if tcp, ok := bound.(*net.TCPAddr); ok {
			port = fmt.Sprint(tcp.Port)
		}
	}
	return nameAddr(net.JoinHostPort(host, port))
}

// nameAddr is a TCP address by host name.
type nameAddr string

func (a nameAddr) Network() string { return "tcp" }
func (a nameAddr) String() string  { return string(a) }

func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.Close()
			return
		}
		if s.cut.Load() || !s.admit() {
			c.Close()
			continue
		}
		go s.dispatch(c)
	}
}

// admit counts an accepted connection against maxAccepted.
func (s *streamLayer) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accepted >= s.maxAccepted {
		return false
	}
	s.accepted++
	return true
}

// dispatch finishes the TLS handshake, peeks at the first byte and hands the
// connection to Raft or to the internal HTTP server.
func (s *streamLayer) dispatch(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	mc := &memberConn{Conn: c, s: s, inbound: true}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if s.server != nil {
		tc := tls.Server(c, s.server)
		if err := tc.Handshake(); err != nil {
			mc.Close()
			return
		}
		mc.Conn, mc.peer = tc, certs.TLSPeerMember(tc.ConnectionState())
	}
	mc.r = bufio.NewReader(mc.Conn)
	first, err := mc.r.Peek(1)
	if err != nil {
		mc.Close()
		return
	}
	c.SetDeadline(time.Time{})
	s.track(mc)
	ch := s.raftCh
	if first[0] >= 'A' && first[0] <= 'Z' {
		ch = s.httpCh
	}
	select {
	case ch <- mc:
	case <-s.closed:
		mc.Close()
	}
}

// memberConn is a connection of the members' network. It leaves the
// layer's set when closed; an accepted one also frees its place under
// maxAccepted, and carries the first byte peeked at and the member id of
// the peer's verified hub certificate ("" without TLS).
type memberConn struct {
	net.Conn
	s       *streamLayer
	r       *bufio.Reader // nil: read the connection directly
	peer    string
	inbound bool
	once    sync.Once
}

func (c *memberConn) Read(b []byte) (int, error) {
	if c.r != nil {
		return c.r.Read(b)
	}
	return c.Conn.Read(b)
}

func (c *memberConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		if c.inbound {
			c.s.accepted--
		}
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// partition cuts (true) or heals (false) the member's network.
func (s *streamLayer) partition(on bool) {
	s.cut.Store(on)
	if !on {
		return
	}
	s.mu.Lock()
	open := make([]*memberConn, 0, len(s.conns))
	for c := range s.conns {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

func (s *streamLayer) track(c *memberConn) *memberConn {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

// Accept hands Raft its connections.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftCh:
		return c, nil
	case <-s.closed:
		return nil, errLayerClosed
	}
}

// Close stops the listener; Raft calls it when its transport closes.
func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.ln.Close()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.DialContext(ctx, string(addr))
}

// DialContext dials another member, in TLS when configured.
func (s *streamLayer) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	if s.cut.Load() {
		return nil, errPartitioned
	}
	d := &net.Dialer{}
	if s.client != nil {
		td := &tls.Dialer{NetDialer: d, Config: s.client}
		c, err := td.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		peer := certs.TLSPeerMember(c.(*tls.Conn).ConnectionState())
		if want := s.memberAt(addr); want != "" && peer != want {
			c.Close()
			return nil, fmt.Errorf("member network: %s answered with member %s's certificate, but the configuration has member %s there", addr, peer, want)
		}
		return s.track(&memberConn{Conn: c, s: s, peer: peer}), nil
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return s.track(&memberConn{Conn: c, s: s}), nil
}

// setMembers replaces the address-to-member-id map dials are checked
// against.
func (s *streamLayer) setMembers(m map[string]string) { s.members.Store(&m) }

func (s *streamLayer) memberAt(addr string) string {
	if m := s.members.Load(); m != nil {
		return (*m)[addr]
	}
	return ""
}

// httpListener is the internal HTTP server's view of the layer.
func (s *streamLayer) httpListener() net.Listener {
	return &httpListener{s: s, done: make(chan struct{})}
}

type httpListener struct {
	s    *streamLayer
	done chan struct{}
	once sync.Once
}

func (l *httpListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.s.httpCh:
		return c, nil
	case <-l.s.closed:
		return nil, errLayerClosed
	case <-l.done:
		return nil, errLayerClosed
	}
}

func (l *httpListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *httpListener) Addr() net.Addr { return l.s.advertise }
