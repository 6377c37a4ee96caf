package consensus

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is the members' network: one TCP listener, in mutual TLS when
// the member has a hub TLS identity (certs.HubServerTLS / HubClientTLS
// verify the peer's chain to the SM2 root themselves). It carries two
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

	// Fault injection for tests: while cut, the member neither dials nor
	// accepts, and open connections are closed.
	cut   atomic.Bool
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

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
	s := &streamLayer{ln: ln, advertise: ln.Addr(), server: server, client: client,
		raftCh: make(chan net.Conn), httpCh: make(chan net.Conn), closed: make(chan struct{})}
	go s.acceptLoop()
	return s, nil
}

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
		if s.cut.Load() {
			c.Close()
			continue
		}
		go s.dispatch(c)
	}
}

// dispatch finishes the TLS handshake, peeks at the first byte and hands the
// connection to Raft or to the internal HTTP server.
func (s *streamLayer) dispatch(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	conn := c
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if s.server != nil {
		tc := tls.Server(c, s.server)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		conn = tc
	}
	br := bufio.NewReader(conn)
	first, err := br.Peek(1)
	if err != nil {
		conn.Close()
		return
	}
	c.SetDeadline(time.Time{})
	pc := s.track(&peekedConn{Conn: conn, r: br})
	ch := s.raftCh
	if first[0] >= 'A' && first[0] <= 'Z' {
		ch = s.httpCh
	}
	select {
	case ch <- pc:
	case <-s.closed:
		pc.Close()
	}
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// partition cuts (true) or heals (false) the member's network.
func (s *streamLayer) partition(on bool) {
	s.cut.Store(on)
	if !on {
		return
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

func (s *streamLayer) track(c net.Conn) net.Conn {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
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
		return s.track(c), nil
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return s.track(c), nil
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
