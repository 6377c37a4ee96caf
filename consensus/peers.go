package consensus

import (
	"crypto/tls"
	"net"
	"time"
)

// peerCheckEvery is how often a member re-checks its open member connections
// even when no trust list arrived: a revocation may take effect at a time
// after the list that carries it, and certificates expire.
const peerCheckEvery = 5 * time.Second

// dropRevokedPeers closes the member connections whose peer's TLS
// certificate the log's trust store now says is revoked (or expired), each
// time a trust list is applied and every peerCheckEvery. New connections are
// refused at the handshake (certs.HubServerTLSFrom); this ends the ones the
// member already had, so a revoked member is cut off within seconds rather
// than whenever its connections happen to break.
func (h *Hub) dropRevokedPeers() {
	defer h.wg.Done()
	t := time.NewTicker(peerCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-h.fsm.trustKick:
		case <-t.C:
		}
		ts, now := h.fsm.trustStore(), h.cfg.Now()
		for _, name := range h.sl.closePeers(func(der []byte) error { return ts.CheckHubPeerAt(der, now) }) {
			h.log.Warn("closed a member connection: the peer's TLS certificate is no longer good", "peer", name)
		}
	}
}

// closePeers closes the tracked connections whose TLS peer certificate bad
// refuses, and returns why for each. The checks run outside the layer's
// lock (dials and accepts take it), once per distinct certificate.
func (s *streamLayer) closePeers(bad func(der []byte) error) []string {
	s.mu.Lock()
	conns := make([]*memberConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	verdict := map[string]error{}
	var out []string
	for _, c := range conns {
		der := peerCertificate(c)
		if der == nil {
			continue
		}
		err, seen := verdict[string(der)]
		if !seen {
			err = bad(der)
			verdict[string(der)] = err
		}
		if err == nil {
			continue
		}
		c.Close() // leaves the layer's set
		out = append(out, err.Error())
	}
	return out
}

// peerCertificate is the leaf certificate a TLS connection's peer presented,
// or nil for a plain connection.
func peerCertificate(c net.Conn) []byte {
	for {
		switch x := c.(type) {
		case *memberConn:
			c = x.Conn
		case *tls.Conn:
			if st := x.ConnectionState(); len(st.PeerCertificates) > 0 {
				return st.PeerCertificates[0].Raw
			}
			return nil
		default:
			return nil
		}
	}
}
