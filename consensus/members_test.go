package consensus

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// configOf is a member's Raft configuration as sorted "id@addr/suffrage".
func configOf(t testing.TB, h *Hub) []string {
	t.Helper()
	f := h.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatalf("%s: configuration: %v", h.ID(), err)
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		out = append(out, fmt.Sprintf("%s@%s/%s", s.ID, s.Address, s.Suffrage))
	}
	slices.Sort(out)
	return out
}

// hubTLS makes a hub TLS identity for member id under root.
func hubTLS(t testing.TB, root *certs.Signer, id string) *certs.TLSIdentity {
	t.Helper()
	now := time.Now()
	tid, err := certs.IssueTLS(root, id, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

// memberClient is an HTTP client to the members' internal routes that
// presents tlsCfg (nil: plain TCP).
func memberClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
}

// postMemberOp sends one membership operation to the internal route of the
// member listening on raftAddr, as a member process would.
func postMemberOp(client *http.Client, scheme, raftAddr, op string, m Member) (internalAnswer, error) {
	var a internalAnswer
	body, _ := json.Marshal(m)
	resp, err := client.Post(scheme+"://"+raftAddr+routeMember+"?op="+op, "application/json", bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, err
	}
	return a, nil
}

// electsAfterLeaderKill kills the leader (or, with none, the first member)
// and waits for the others to elect a new one.
func electsAfterLeaderKill(t *testing.T, c *Cluster) {
	t.Helper()
	victim := c.Leader()
	if victim == nil {
		victim = c.Members[0]
	}
	if err := victim.Kill(); err != nil {
		t.Logf("kill %s: %v", victim.ID(), err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, h := range c.Members {
			if h != victim && h.IsLeader() {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no new leader within 15s after %s was killed", victim.ID())
}

func TestAnonymousJoinOnThePublicAPIChangesNothingAndALeaderIsStillElected(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, nil)
	before := configOf(t, c.Members[0])
	// Rewrite both followers' addresses to a port nobody listens on, as the
	// attacker of issue 8 finding 3 did through a member's public API.
	for _, id := range []string{"hub-2", "hub-3"} {
		body, _ := json.Marshal(Member{ID: id, RaftAddr: "127.0.0.1:1", API: "http://127.0.0.1:1"})
		resp, err := http.Post(c.Members[0].URL()+"/internal/v1/join", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous join of %s on the public API answered %d, want 404 or 403", id, resp.StatusCode)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, h := range c.Members {
		if got := configOf(t, h); !slices.Equal(got, before) {
			t.Errorf("%s: configuration is %v after the anonymous join, was %v", h.ID(), got, before)
		}
	}
	electsAfterLeaderKill(t, c)
}

func TestMembershipRoutesRefuseClientsWithoutAHubCertificateOfTheRoot(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, true, nil)
	before := configOf(t, c.Members[0])
	foreignRoot, err := certs.NewRoot("another root", time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := certs.NewTrustStoreDER(p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*tls.Config{
		"no-client-certificate":        {MinVersion: tls.VersionTLS13, InsecureSkipVerify: true},
		"hub-certificate-foreign-root": certs.HubClientTLS(hubTLS(t, foreignRoot, "hub-2"), ts),
	}
	for name, cfg := range clients {
		t.Run(name, func(t *testing.T) {
			for _, op := range []string{"remove", "join", "promote", "member"} {
				m := Member{ID: "hub-2", RaftAddr: "127.0.0.1:1"}
				if a, err := postMemberOp(memberClient(cfg), "https", c.Leader().RaftAddr(), op, m); err == nil {
					t.Errorf("op %s: answered %+v, want the TLS handshake refused", op, a)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if got := configOf(t, c.Members[0]); !slices.Equal(got, before) {
		t.Fatalf("configuration is %v, was %v", got, before)
	}
}

func TestAMemberCertificateCannotJoinPromoteOrAnnounceAnotherMemberNorTakeItsAddress(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, true, nil)
	leader := c.Leader()
	vi, _ := aFollower(c)
	victim := c.Members[vi]
	before := configOf(t, leader)
	ts, err := certs.NewTrustStoreDER(p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	hub9 := memberClient(certs.HubClientTLS(hubTLS(t, p.root, "hub-9"), ts))
	ownCert := memberClient(certs.HubClientTLS(c.cfg.TLS[vi], ts))
	bogus := "127.0.0.1:1"
	cases := []struct {
		name   string
		client *http.Client
		op     string
		m      Member
		code   string
	}{
		{"hub-9-joins-as-the-victim", hub9, "join", Member{ID: victim.ID(), RaftAddr: bogus}, "member_identity"},
		{"hub-9-promotes-the-victim", hub9, "promote", Member{ID: victim.ID(), RaftAddr: bogus}, "member_identity"},
		{"hub-9-announces-the-victim", hub9, "member", Member{ID: victim.ID(), RaftAddr: bogus, API: "http://" + bogus}, "member_identity"},
		{"hub-9-joins-at-the-victims-address", hub9, "join", Member{ID: "hub-9", RaftAddr: victim.RaftAddr()}, "member_conflict"},
		{"hub-9-not-a-member-removes-the-victim", hub9, "remove", Member{ID: victim.ID()}, "not_a_member"},
		{"victim-rejoins-at-another-address", ownCert, "join", Member{ID: victim.ID(), RaftAddr: bogus}, "member_conflict"},
		{"victim-promotes-at-another-address", ownCert, "promote", Member{ID: victim.ID(), RaftAddr: bogus}, "member_conflict"},
		{"victim-announces-another-address", ownCert, "member", Member{ID: victim.ID(), RaftAddr: bogus, API: "http://" + bogus}, "member_conflict"},
		{"victim-joins-without-an-address", ownCert, "join", Member{ID: victim.ID()}, "invalid_raft_addr"},
		{"unknown-operation", ownCert, "rename", Member{ID: victim.ID(), RaftAddr: victim.RaftAddr()}, "invalid_op"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := postMemberOp(tc.client, "https", leader.RaftAddr(), tc.op, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if a.Err == nil || a.Err.Code != tc.code {
				t.Fatalf("answer %+v, want refused with code %s", a, tc.code)
			}
			if !strings.Contains(a.Err.Message, tc.m.ID) {
				t.Errorf("message %q does not name the member %s", a.Err.Message, tc.m.ID)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	for _, h := range c.Members {
		if got := configOf(t, h); !slices.Equal(got, before) {
			t.Errorf("%s: configuration is %v, was %v", h.ID(), got, before)
		}
		if ms, err := h.fsm.members(); err != nil || ms[victim.ID()].RaftAddr != victim.RaftAddr() {
			t.Errorf("%s: metadata of %s is %+v (%v)", h.ID(), victim.ID(), ms[victim.ID()], err)
		}
	}
	electsAfterLeaderKill(t, c)
}

func TestTheSameMemberRejoiningWithItsIDAndAddressIsAccepted(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, true, nil)
	leader := c.Leader()
	before := configOf(t, leader)
	ts, err := certs.NewTrustStoreDER(p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range c.Members {
		client := memberClient(certs.HubClientTLS(c.cfg.TLS[i], ts))
		me := Member{ID: h.ID(), RaftAddr: h.RaftAddr(), API: h.URL()}
		for _, op := range []string{"join", "promote", "member"} {
			a, err := postMemberOp(client, "https", leader.RaftAddr(), op, me)
			if err != nil || a.Err != nil {
				t.Fatalf("%s %s again: %+v, %v", h.ID(), op, a.Err, err)
			}
		}
	}
	if got := configOf(t, leader); !slices.Equal(got, before) {
		t.Fatalf("configuration is %v after the rejoins, was %v", got, before)
	}
}

func TestNewRefusesAMembersNetworkWithoutTLSUnlessInsecurePlaintextIsSet(t *testing.T) {
	p := newPKI(t, 1)
	for _, tc := range []struct {
		name string
		tune func(*Config)
		want string
	}{
		{"reject/no-tls", func(c *Config) {}, "InsecurePlaintext"},
		{"reject/tls-and-insecure", func(c *Config) { c.TLS, c.InsecurePlaintext = hubTLS(t, p.root, "hub-1"), true }, "drop InsecurePlaintext"},
		{"reject/certificate-of-another-member", func(c *Config) { c.TLS = hubTLS(t, p.root, "hub-2") }, `member "hub-2"`},
		{"reject/join-with-an-api-url", func(c *Config) { c.InsecurePlaintext, c.Join = true, []string{"http://127.0.0.1:7000"} }, "host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{ID: "hub-1", Dir: dir, RootDER: p.root.Cert.Raw, Signer: p.hubs[0], NoAPI: true}
			tc.tune(&cfg)
			h, err := New(cfg)
			if err == nil {
				h.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %s", err, tc.want)
			}
		})
	}
}

// A member holding a valid hub certificate that takes over another
// member's Raft address gets no Raft traffic: a dialled address must answer
// with the certificate of the member the configuration has there.
func TestAnotherMembersCertificateAtAConfiguredAddressGetsNoRaftTraffic(t *testing.T) {
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, true, nil)
	vi, _ := aFollower(c)
	addr := c.Members[vi].RaftAddr()
	if err := c.Members[vi].Kill(); err != nil {
		t.Fatal(err)
	}
	ts, err := certs.NewTrustStoreDER(p.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	hub9 := hubTLS(t, p.root, "hub-9")
	var rogue *streamLayer
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rogue, err = newStreamLayer(addr, certs.HubServerTLS(hub9, ts), certs.HubClientTLS(hub9, ts)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("take over %s: %v", addr, err)
		}
	}
	defer rogue.Close()
	got := make(chan int, 1)
	go func() {
		n := 0
		defer func() { got <- n }()
		for {
			conn, err := rogue.Accept()
			if err != nil {
				return
			}
			n++
			conn.Close()
		}
	}()
	// The leader heartbeats every member several times a second.
	time.Sleep(2 * time.Second)
	rogue.Close()
	if n := <-got; n > 0 {
		t.Fatalf("the member with hub-9's certificate at %s's address received %d Raft connections", c.Members[vi].ID(), n)
	}
}
