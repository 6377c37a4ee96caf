package consensus

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// tlsPing dials a member's Raft listener with id and completes a round trip
// (TLS 1.3 reports the server's refusal of a client certificate on the first
// read, not in the handshake).
func tlsPing(addr string, id *certs.TLSIdentity, ts *certs.TrustStore) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: certs.HubClientTLS(id, ts)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// An internal HTTP request: any answer proves the member accepted us.
	if _, err := io.WriteString(c, "POST /internal/v1/readindex HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

// TestAHubMemberWhoseTLSCertificateIsRevokedInTheLogIsCutOff: a trust list
// in the log that revokes a member's TLS certificate makes the other members
// refuse its new connections and close the ones it has, within seconds.
func TestAHubMemberWhoseTLSCertificateIsRevokedInTheLogIsCutOff(t *testing.T) {
	p := newPKI(t, 3)
	c, ctx, leader := startTrusted(t, p, true)
	victim, _ := aFollower(c)
	vid := c.MemberConfig(victim).TLS
	var keep int // a member that stays
	for i := range c.Members {
		if i != victim && c.Members[i] != leader {
			keep = i
		}
	}
	rootOnly, err := certs.NewTrustStoreDER(p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsPing(leader.RaftAddr(), vid, rootOnly); err != nil {
		t.Fatalf("before the revocation the member connects: %v", err)
	}
	tl := &exchange.TrustList{At: time.Now().Unix(), Ver: 2,
		Revoked: []exchange.Revocation{{KID: vid.KID, At: time.Now().Add(-time.Second).Unix()}}}
	for _, s := range append(append([]*certs.Signer{}, p.hubs...), p.provs["440000"], p.provs["510000"], p.provs["110000"]) {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	rev, err := exchange.SealTrustList(p.root, tl)
	if err != nil {
		t.Fatal(err)
	}
	res, err := leader.Submit(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	converge(t, leader, c.Members[keep])

	// New connections with the revoked certificate are refused.
	for _, m := range []*Hub{leader, c.Members[keep]} {
		if err := tlsPing(m.RaftAddr(), vid, rootOnly); err == nil {
			t.Errorf("%s accepted a connection with a revoked TLS certificate", m.ID())
		}
		if err := tlsPing(m.RaftAddr(), c.MemberConfig(keep).TLS, rootOnly); err != nil {
			t.Errorf("%s refused a member in good standing: %v", m.ID(), err)
		}
	}
	// Its open connections are closed too: what commits now never reaches it.
	time.Sleep(2 * time.Second)
	b := p.batch(t, "440000", 1, 1, 0, hcx.Red, 1)
	after, err := leader.Submit(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	converge(t, leader, c.Members[keep])
	time.Sleep(2 * time.Second)
	if got := c.Members[victim].State().Size; got > after.Index {
		t.Errorf("%s applied leaf %d, committed after its TLS certificate was revoked (at leaf %d)", c.Members[victim].ID(), after.Index, res.Index)
	}
}
