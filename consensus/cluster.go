package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// ClusterConfig describes an in-process cluster, for tests and `hcx dev`.
type ClusterConfig struct {
	N       int    // members: 1, 3 or 5
	Dir     string // each member gets Dir/hub-<i>
	RootDER []byte
	Signers []*certs.Signer // one hub signer per member (or one, shared)
	TLS     []*certs.TLSIdentity
	Logger  *slog.Logger
	Now     func() time.Time
	Handler func(*Hub) http.Handler // api.HubHandlerFunc(logger, opts); required unless NoAPI
	NoAPI   bool
	// TLS holds one identity per member, in order, each naming hub-<i>
	// (certs.IssueTLS); InsecurePlaintext runs the members without TLS
	// instead (Config.InsecurePlaintext), for tests only.
	InsecurePlaintext bool
	// APITLS, by member, serves each member's public API over TLS
	// (Config.APITLS); missing or nil entries serve plain HTTP.
	APITLS []*tls.Config
	// HTTPAddr and RaftAddr are the members' listen addresses, by member;
	// missing or empty ones take any free port on 127.0.0.1.
	HTTPAddr, RaftAddr []string
	// Tune, when set, adjusts each member's Config before it starts.
	Tune func(*Config)
}

// Cluster is a set of hub members running in this process.
type Cluster struct {
	cfg     ClusterConfig
	Members []*Hub
}

// MemberConfig returns the Config member i (0-based) runs with.
func (c *Cluster) MemberConfig(i int) Config { return c.memberConfig(i) }

func (c *Cluster) memberConfig(i int) Config {
	cc := c.cfg
	s := cc.Signers[0]
	if i < len(cc.Signers) {
		s = cc.Signers[i]
	}
	cfg := Config{ID: fmt.Sprintf("hub-%d", i+1), Dir: filepath.Join(cc.Dir, fmt.Sprintf("hub-%d", i+1)),
		RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RootDER: cc.RootDER, Signer: s,
		Logger: cc.Logger, Now: cc.Now, Handler: cc.Handler, NoAPI: cc.NoAPI, InsecurePlaintext: cc.InsecurePlaintext}
	if i < len(cc.HTTPAddr) && cc.HTTPAddr[i] != "" {
		cfg.HTTPAddr = cc.HTTPAddr[i]
	}
	if i < len(cc.RaftAddr) && cc.RaftAddr[i] != "" {
		cfg.RaftAddr = cc.RaftAddr[i]
	}
	if i < len(cc.TLS) {
		cfg.TLS = cc.TLS[i]
	}
	if i < len(cc.APITLS) {
		cfg.APITLS = cc.APITLS[i]
	}
	if cc.Tune != nil {
		cc.Tune(&cfg)
	}
	return cfg
}

// StartCluster boots member 1 as a new cluster, then joins the others
// through it, and returns once every member is a voter, knows the leader and
// has the configuration that lists all voters.
func StartCluster(ctx context.Context, cc ClusterConfig) (*Cluster, error) {
	if cc.N < 1 {
		return nil, errors.New("cluster: N must be at least 1")
	}
	if len(cc.Signers) == 0 {
		return nil, errors.New("cluster: no hub signers")
	}
	c := &Cluster{cfg: cc}
	for i := 0; i < cc.N; i++ {
		cfg := c.memberConfig(i)
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{c.Members[0].RaftAddr()}
		}
		// A member restarted from disk cannot win an election alone: only a
		// fresh first member is waited for before the others start.
		_, statErr := os.Stat(cfg.Dir)
		fresh := errors.Is(statErr, fs.ErrNotExist)
		h, err := New(cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start %s: %w", cfg.ID, err)
		}
		c.Members = append(c.Members, h)
		if i == 0 && fresh {
			if err := h.WaitLeader(ctx); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	for _, h := range c.Members {
		if err := h.WaitVoter(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", h.ID(), err)
		}
		if err := h.WaitLeader(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	// And every member has received the configuration with all voters.
	for _, h := range c.Members {
		for h.voters() < cc.N {
			select {
			case <-ctx.Done():
				c.Close()
				return nil, fmt.Errorf("%s sees %d voters of %d: %w", h.ID(), h.voters(), cc.N, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return c, nil
}

// URLs are the members' API base URLs.
func (c *Cluster) URLs() []string {
	out := make([]string, 0, len(c.Members))
	for _, h := range c.Members {
		if h != nil {
			out = append(out, h.URL())
		}
	}
	return out
}

// Leader returns the member that leads now, or nil.
func (c *Cluster) Leader() *Hub {
	for _, h := range c.Members {
		if h != nil && h.IsLeader() {
			return h
		}
	}
	return nil
}

// Close stops the whole cluster: every member is told it is stopping before
// any stops, so the others' complaints about a member that is gone are not
// logged as faults, and no leadership is handed over, as no member stays.
// The members stop together: one by one, each survivor would first hold an
// election among those left.
func (c *Cluster) Close() error {
	for _, h := range c.Members {
		if h != nil {
			h.stopping.Store(true)
		}
	}
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, h := range c.Members {
		if h != nil {
			wg.Go(func() { errs[i] = h.close(false) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}
