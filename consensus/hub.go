package consensus

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Config configures one hub member.
type Config struct {
	ID        string // member id, e.g. "hub-1"
	Dir       string // data dir (raft-boltdb + badger + snapshots)
	RaftAddr  string // raft bind address; "127.0.0.1:0" picks a port
	HTTPAddr  string // API listen address; "127.0.0.1:0" picks a port
	Bootstrap bool   // bootstrap a new cluster with this member
	// Join lists Raft addresses (host:port) of existing members. A member
	// with no state asks them, over the members' network, to add it.
	Join    []string
	RootDER []byte        // the national root certificate, DER
	Signer  *certs.Signer // this member's hub signing key (checkpoints)
	Logger  *slog.Logger
	Now     func() time.Time

	// Handler builds the public API for the member's HTTP server: pass
	// api.HubHandlerFunc(logger, opts). It is required unless NoAPI is set.
	Handler func(*Hub) http.Handler
	// NoAPI serves only the members' internal routes (package tests).
	NoAPI bool
	// TLS is this member's hub TLS identity: Raft traffic and the members'
	// internal routes (forwarded writes, membership) run in mutual TLS with
	// hub certificates, and a member may join, be promoted and announce
	// itself only under the member id its certificate names, which must be
	// ID. Required unless InsecurePlaintext is set.
	TLS *certs.TLSIdentity
	// InsecurePlaintext runs the members' network in plain TCP without
	// TLS: anyone who reaches the Raft address can then read the log and
	// change the membership. For tests and single-machine development
	// only; it is logged as a warning at start.
	InsecurePlaintext bool
	// APITLS, when set, serves the public API (HTTPAddr) over TLS with it
	// (certs.ServerTLS with a server certificate from the CA's TLS root),
	// and URL is then https. Nil serves plain HTTP: callers refuse that on
	// addresses other than loopback (cmd/hcx).
	APITLS *tls.Config
	// Witnesses are the submission prefixes of the witnesses this member
	// submits checkpoints to while it leads (PROTOCOL.md §5, such as
	// https://node-110000:8711/v1/witness), at most MaxWitnesses.
	Witnesses []string
	// WitnessTLS verifies the witnesses' https servers (nil: the system's
	// roots).
	WitnessTLS *tls.Config

	// Tuning; zero values take the defaults below.
	HeartbeatTimeout  time.Duration // default 500ms
	ElectionTimeout   time.Duration // default 500ms
	CheckpointEvery   time.Duration // default 1s
	CheckpointLeaves  uint64        // default 1000
	SnapshotThreshold uint64        // default 8192 log entries
	SnapshotInterval  time.Duration // default 30s
	TrailingLogs      uint64        // default 10240
	ApplyTimeout      time.Duration // default 10s
	HTTPReadTimeout   time.Duration // default DefaultHTTPReadTimeout
	HTTPWriteTimeout  time.Duration // default DefaultHTTPWriteTimeout

	// rpcsInFlight is the transport's MaxRPCsInFlight, 1 (no pipelining)
	// unless a benchmark sets 2 to compare with pipelined replication.
	rpcsInFlight int
}

// Time-outs and limits of a member's two HTTP servers (the public API and the
// members' internal routes). A peer that sends slowly, reads slowly or sits
// idle is cut off instead of holding a goroutine and a socket.
const (
	// serverReadHeaderTimeout bounds reading the request line and headers.
	serverReadHeaderTimeout = 10 * time.Second
	// DefaultHTTPReadTimeout bounds reading a whole request, body included:
	// the largest body is one envelope (512 KiB).
	DefaultHTTPReadTimeout = 30 * time.Second
	// DefaultHTTPWriteTimeout bounds handling and answering a request from
	// the end of its headers: more than ApplyTimeout, so a write that Raft
	// commits is answered. A long poll (GET /v1/entries?wait=) gets MaxWait
	// on top (see longPoll).
	DefaultHTTPWriteTimeout = 30 * time.Second
	// serverIdleTimeout is how long a kept-alive connection may wait for its
	// next request.
	serverIdleTimeout = 120 * time.Second
	// serverMaxHeaderBytes bounds the request line and headers.
	serverMaxHeaderBytes = 16 << 10
)

func (c *Config) defaults() error {
	if c.ID == "" {
		return errors.New("hub config: ID is empty")
	}
	if c.Dir == "" {
		return errors.New("hub config: Dir is empty")
	}
	if len(c.RootDER) == 0 {
		return errors.New("hub config: RootDER is empty")
	}
	if c.Signer == nil {
		return errors.New("hub config: Signer is nil: a hub member signs checkpoints")
	}
	if c.Handler == nil && !c.NoAPI {
		return errors.New("hub config: Handler is nil: pass api.HubHandlerFunc(logger, opts) so the member serves PROTOCOL.md §5")
	}
	switch {
	case c.TLS == nil && !c.InsecurePlaintext:
		return errors.New("hub config: TLS is nil: members talk in mutual TLS with hub certificates (certs.LoadTLSIdentity; 'hcx ca issue --tls'); set InsecurePlaintext only for tests and single-machine development")
	case c.TLS != nil && c.InsecurePlaintext:
		return errors.New("hub config: both TLS and InsecurePlaintext are set: drop InsecurePlaintext")
	case c.TLS != nil && c.TLS.Member != c.ID:
		return fmt.Errorf("hub config: the TLS certificate is member %q's, this member is %q: issue one for %s ('hcx ca issue --tls --member %s')", c.TLS.Member, c.ID, c.ID, c.ID)
	}
	for _, a := range c.Join {
		if _, _, err := net.SplitHostPort(a); err != nil || strings.Contains(a, "/") {
			return fmt.Errorf("hub config: Join %q: give existing members' Raft addresses as host:port, such as 127.0.0.1:8800", a)
		}
	}
	if c.RaftAddr == "" {
		c.RaftAddr = "127.0.0.1:0"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:0"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 500*time.Millisecond)
	def(&c.ElectionTimeout, 500*time.Millisecond)
	def(&c.CheckpointEvery, time.Second)
	def(&c.SnapshotInterval, 30*time.Second)
	def(&c.ApplyTimeout, 10*time.Second)
	def(&c.HTTPReadTimeout, DefaultHTTPReadTimeout)
	def(&c.HTTPWriteTimeout, DefaultHTTPWriteTimeout)
	if c.CheckpointLeaves == 0 {
		c.CheckpointLeaves = 1000
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	return nil
}

// Hub is one member of the national hub.
type Hub struct {
	cfg   Config
	log   *slog.Logger
	fsm   *fsm
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans *raft.NetworkTransport
	sl    *streamLayer
	snaps *raft.FileSnapshotStore
	httpL net.Listener
	srv   *http.Server // public API
	isrv  *http.Server // members' internal routes, on the Raft listener
	url   string
	ic    *http.Client // to other members' internal routes (mutual TLS)

	memberMu sync.Mutex // serialises membership changes at the leader

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
	voter     chan struct{} // closed once this member is a voter
	voterOnce sync.Once
	wit       *witnesses // nil without Config.Witnesses
	m         metrics    // the member's own registry (metrics.go)

	// stopping is set when Close begins: Raft's complaints from then on
	// are the stop's own doing (raftLog).
	stopping atomic.Bool
	obs      *raft.Observer
	confMu   sync.Mutex
	conf     map[raft.ServerID]raft.Server // the configuration last logged
}

// New opens the member's storage, binds its listeners (so URL is known),
// starts Raft and the HTTP server, and, when Join is set and the member has
// no state yet, joins the cluster as a non-voter and asks for promotion once
// it has caught up.
func New(cfg Config) (*Hub, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "consensus", "member", cfg.ID)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("hub data dir: %w", err)
	}
	h := &Hub{cfg: cfg, log: log, done: make(chan struct{}), voter: make(chan struct{})}
	h.newMetrics()
	if len(cfg.Witnesses) > 0 {
		w, err := newWitnesses(cfg.Witnesses, cfg)
		if err != nil {
			return nil, err
		}
		h.wit = w
	}
	ok := false
	defer func() {
		if !ok {
			h.closeStorage()
		}
	}()
	var err error
	if h.fsm, err = openFSM(filepath.Join(cfg.Dir, "fsm"), cfg.RootDER, log, cfg.CheckpointLeaves); err != nil {
		return nil, err
	}
	if h.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")}); err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	hlog := newHCLog(cfg.Logger.With("member", cfg.ID), &h.stopping)
	if h.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog); err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := h.catchUpFromSnapshot(); err != nil {
		return nil, err
	}
	var srvTLS, cliTLS *tls.Config
	if cfg.TLS != nil {
		// Peers are checked against the log's trust store, so a trust list
		// revoking a member's TLS certificate shuts it out (dropRevokedPeers
		// closes the connections it already has).
		srvTLS, cliTLS = certs.HubServerTLSFrom(cfg.TLS, h.fsm.trustStore), certs.HubClientTLSFrom(cfg.TLS, h.fsm.trustStore)
		srvTLS.Time, cliTLS.Time = cfg.Now, cfg.Now
	}
	if cfg.InsecurePlaintext {
		log.Warn("hub members talk in plain TCP without TLS: anyone who reaches the Raft address can read the log and change the membership; for tests and single-machine development only", "raft", cfg.RaftAddr)
	}
	sl, err := newStreamLayer(cfg.RaftAddr, srvTLS, cliTLS)
	if err != nil {
		return nil, fmt.Errorf("bind raft address %s: %w", cfg.RaftAddr, err)
	}
	h.sl = sl
	// MaxRPCsInFlight 1 turns off pipelined replication: with the default
	// (2: unbuffered pipeline channels) a follower's refusal stopped the
	// pipeline's decoder while a busy sender blocked on its next send
	// forever, so the follower never got another entry and Shutdown hung
	// (TestALeaderKeepsReplicatingToAFollowerThatRefusesAppends). Raft's
	// own notes find pipelining of little use next to batching.
	h.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: sl, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog, MaxRPCsInFlight: max(cfg.rpcsInFlight, 1),
	})
	if h.httpL, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("bind API address %s: %w", cfg.HTTPAddr, err)
	}
	h.url = "http://" + h.httpL.Addr().String()
	if cfg.APITLS != nil {
		h.url = "https://" + h.httpL.Addr().String()
	}
	h.ic = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return sl.DialContext(ctx, addr) },
	}}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.MaxAppendEntries = 128
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// The FSM is durable: never restore a snapshot over it at start (see
	// catchUpFromSnapshot for the one case where the FSM is behind).
	rc.NoSnapshotRestoreOnStart = true
	if h.raft, err = raft.NewRaft(rc, h.fsm, h.store, h.store, h.snaps, h.trans); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	var obs chan raft.Observation
	h.obs, obs = newLeaderObserver()
	h.raft.RegisterObserver(h.obs)
	existing, err := raft.HasExistingState(h.store, h.store, h.snaps)
	if err != nil {
		return nil, err
	}
	if cfg.Bootstrap && !existing {
		f := h.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: h.trans.LocalAddr()}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	imux := http.NewServeMux()
	h.internalRoutes(imux)
	h.isrv = h.newServer(imux)
	h.isrv.ConnContext = peerContext
	go h.isrv.Serve(sl.httpListener())
	mux := http.NewServeMux()
	if cfg.Handler != nil {
		mux.Handle("/", longPoll(cfg.Handler(h), cfg.HTTPWriteTimeout))
	}
	h.srv = h.newServer(mux)
	if cfg.APITLS != nil {
		h.srv.TLSConfig = cfg.APITLS.Clone()
		go h.srv.ServeTLS(h.httpL, "", "")
	} else {
		go h.srv.Serve(h.httpL)
	}
	ok = true

	h.refreshMembers()
	h.wg.Add(4)
	go h.watchLeader(obs)
	go h.announce()
	go h.checkpointer()
	go h.watchMembers()
	if cfg.TLS != nil {
		h.wg.Add(1)
		go h.dropRevokedPeers()
	}
	if len(cfg.Join) > 0 && !existing && !cfg.Bootstrap {
		h.wg.Add(1)
		go h.join()
	} else {
		h.markVoterIfSo()
	}
	log.Info("hub member started", "raft", string(h.trans.LocalAddr()), "api", h.url, "bootstrap", cfg.Bootstrap, "join", cfg.Join)
	return h, nil
}

// newServer is the http.Server both of the member's APIs run in.
func (h *Hub) newServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(serverReadHeaderTimeout, h.cfg.HTTPReadTimeout),
		ReadTimeout:       h.cfg.HTTPReadTimeout,
		WriteTimeout:      h.cfg.HTTPWriteTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    serverMaxHeaderBytes,
	}
}

// longPoll gives a GET that asks to wait (GET /v1/entries?wait=) the longest
// wait Entries allows, MaxWait, on top of the server's write time-out, so the
// answer at the end of the wait is not cut off. Every other request keeps the
// server's deadline.
func longPoll(next http.Handler, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Has("wait") {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(MaxWait + write))
		}
		next.ServeHTTP(w, r)
	})
}

// catchUpFromSnapshot restores the newest local snapshot when the durable FSM
// is behind it (its last writes were lost, or it was deleted): Raft no longer
// has the log entries below the snapshot to replay.
func (h *Hub) catchUpFromSnapshot() error {
	list, err := h.snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	st, _ := h.fsm.state()
	if list[0].Index <= st.Applied {
		return nil
	}
	_, rc, err := h.snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	h.log.Warn("hub state is behind the newest snapshot; restoring it", "applied", st.Applied, "snapshot", list[0].Index)
	return h.fsm.Restore(rc)
}

// TrustStore is the trust store in force at this member: the root and the
// trust lists applied from the log. It is replaced when a snapshot is
// restored, so ask again rather than keep it.
func (h *Hub) TrustStore() *certs.TrustStore { return h.fsm.trustStore() }

// Now is this member's clock (Config.Now).
func (h *Hub) Now() time.Time { return h.cfg.Now() }

// URL is the member's API base URL, such as "http://127.0.0.1:8700".
func (h *Hub) URL() string { return h.url }

// ID is the member id.
func (h *Hub) ID() string { return h.cfg.ID }

// RaftAddr is the address Raft listens on.
func (h *Hub) RaftAddr() string { return string(h.trans.LocalAddr()) }

// IsLeader reports whether this member is the Raft leader now.
func (h *Hub) IsLeader() bool { return h.raft.State() == raft.Leader }

// WaitLeader blocks until a leader is known and this member's metadata is
// committed (so writes can be forwarded), or ctx ends.
func (h *Hub) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := h.raft.LeaderWithID(); id != "" {
			if api, _ := h.leaderAPI(); api != "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a hub leader: %w", ctx.Err())
		case <-h.done:
			return ErrClosed
		case <-t.C:
		}
	}
}

// WaitVoter blocks until this member is a voter of the cluster.
func (h *Hub) WaitVoter(ctx context.Context) error {
	select {
	case <-h.voter:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to become a voter: %w", ctx.Err())
	}
}

func (h *Hub) markVoterIfSo() {
	f := h.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(h.cfg.ID) && s.Suffrage == raft.Voter {
			h.voterOnce.Do(func() { close(h.voter) })
		}
	}
}

// leaderAPI returns the leader's API URL from the committed member metadata.
func (h *Hub) leaderAPI() (string, string) {
	_, id := h.raft.LeaderWithID()
	if id == "" {
		return "", ""
	}
	if string(id) == h.cfg.ID {
		return h.url, string(id)
	}
	ms, err := h.fsm.members()
	if err != nil {
		return "", string(id)
	}
	return ms[string(id)].API, string(id)
}

// announce commits this member's metadata (API URL, Raft address) once a
// leader exists, and again whenever it is missing or stale.
func (h *Hub) announce() {
	defer h.wg.Done()
	me := Member{ID: h.cfg.ID, RaftAddr: h.RaftAddr(), API: h.url}
	for {
		ms, err := h.fsm.members()
		if err == nil {
			if m, ok := ms[me.ID]; ok && m.API == me.API && m.RaftAddr == me.RaftAddr {
				h.markVoterIfSo()
				select {
				case <-h.done:
					return
				case <-time.After(time.Second):
				}
				continue
			}
		}
		wait := 50 * time.Millisecond
		if _, id := h.raft.LeaderWithID(); id != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := h.memberOp(ctx, "member", me)
			cancel()
			if err != nil {
				h.log.Debug("announce member metadata", "err", err)
				if !retryable(err) {
					wait = time.Second // refused: not (or no longer) in the configuration
				}
			}
		}
		select {
		case <-h.done:
			return
		case <-time.After(wait):
		}
	}
}

// Submit appends a signed envelope to the log and returns its leaf index. It
// verifies the envelope here, then proposes it if this member leads, or
// forwards it to the leader itself. Resubmitting the same bytes returns the
// same index, so the retries after a lost leadership never duplicate a leaf.
// Errors are *hcx.Error with codes such as sequence_conflict (with
// "expected"), too_large, bad_signature, unknown_issuer, key_revoked,
// wrong_issuer; hcx.ErrNotLeader (class unavailable) when no leader could be
// reached before ctx ended.
func (h *Hub) Submit(ctx context.Context, compact string) (exchange.SubmitResult, error) {
	return h.submit(ctx, compact, false)
}

// SubmitLocal is Submit without forwarding: a member that is not the leader
// answers hcx.ErrNotLeader. Members use it for writes forwarded to them.
func (h *Hub) SubmitLocal(ctx context.Context, compact string) (exchange.SubmitResult, error) {
	return h.submit(ctx, compact, true)
}

func (h *Hub) submit(ctx context.Context, compact string, local bool) (exchange.SubmitResult, error) {
	if len(compact) > exchange.MaxEnvelopeBytes {
		err := hcx.Errorf(hcx.ETooLarge, "too_large", "envelope is %d bytes, at most %d", len(compact), exchange.MaxEnvelopeBytes)
		h.countRejected(err)
		return exchange.SubmitResult{}, err
	}
	compact = strings.TrimSpace(compact)
	if err := h.verify(compact); err != nil {
		// A follower may not know a signer a newer trust list added: let
		// the leader decide.
		if !(errors.Is(err, certs.ErrUnknownKey) && !h.IsLeader() && !local) {
			err = classify(err)
			h.countRejected(err)
			return exchange.SubmitResult{}, err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.ApplyTimeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return exchange.SubmitResult{}, &hcx.Error{Class: hcx.EUnavailable, Code: "not_leader", Message: "no hub leader accepted the write in time: " + ctx.Err().Error(), Err: hcx.ErrNotLeader}
			case <-h.done:
				return exchange.SubmitResult{}, classify(ErrClosed)
			case <-time.After(backoff(attempt)):
			}
		}
		if h.IsLeader() {
			// The proposer stamps its clock into the command: the FSM
			// records it as the leaf's commit time (see DESIGN.md).
			res, err := h.apply(ctx, encodeEnvelope(h.cfg.Now(), compact))
			if err == nil {
				return res, nil
			}
			if he := (*hcx.Error)(nil); !retryable(err) && errors.As(err, &he) {
				h.countRejected(err) // the FSM's verdict (sequence_conflict…), not a failure to ask it
			}
			if !retryable(err) {
				return exchange.SubmitResult{}, err
			}
			if local {
				return exchange.SubmitResult{}, classify(hcx.ErrNotLeader)
			}
			continue
		}
		if local {
			return exchange.SubmitResult{}, classify(hcx.ErrNotLeader)
		}
		addr, _ := h.raft.LeaderWithID()
		if addr == "" {
			continue
		}
		res, err := h.forward(ctx, string(addr), compact)
		if err == nil || !retryable(err) {
			return res, err
		}
	}
}

func backoff(attempt int) time.Duration {
	d := time.Duration(attempt) * 20 * time.Millisecond
	return min(d, 200*time.Millisecond)
}

// retryable: the write may be tried again (at whichever member leads next);
// resubmission is idempotent, so it is safe even if the first try committed.
func retryable(err error) bool {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrAbortedByRestore) || errors.Is(err, raft.ErrRaftShutdown) ||
		errors.Is(err, hcx.ErrNotLeader) || errors.Is(err, ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var he *hcx.Error
	if errors.As(err, &he) && he.Class == hcx.EUnavailable {
		return true
	}
	return false
}

// verify checks an envelope against the current trust state: signature, the
// signer's role and province, revocation at the signed time and at this
// member's clock, that the signed time is within exchange.MaxEnvelopeSkew
// of this member's clock (clock_skew), and the kind's own rules. An
// envelope already in the log passes the time checks: resubmitting it is
// idempotent, however old it is.
func (h *Hub) verify(compact string) error {
	ts := h.fsm.trustStore()
	now := h.cfg.Now()
	env, err := exchange.Open(ts, compact)
	if err == nil {
		err = checkSkew(env.At, now.Unix(), "submitted")
	}
	if err == nil {
		err = exchange.CheckSigner(ts, env.Signer, time.Unix(env.At, 0), now)
	}
	if err != nil {
		if errors.Is(err, certs.ErrRevoked) || isClockSkew(err) {
			if _, ok, _ := h.fsm.leafIndex(exchange.LogHasher{}.HashLeaf([]byte(compact))); ok {
				return nil
			}
		}
		return err
	}
	switch env.Typ {
	case exchange.TypBatch, exchange.TypPolicy, exchange.TypRiskAreas, exchange.TypVax, exchange.TypExposures, exchange.TypBoxKey, exchange.TypReceipts, exchange.TypAuditHead:
		// Content is checked here, before anything is logged for good.
		err = exchange.CheckContent(env)
	case exchange.TypTrust:
		var tl *exchange.TrustList
		if tl, err = exchange.DecodeTrustList(env); err == nil && tl.Ver <= ts.Version() {
			// Resubmitting the newest list is idempotent, handled by the FSM.
			if _, ok, _ := h.fsm.leafIndex(exchange.LogHasher{}.HashLeaf([]byte(compact))); ok {
				return nil
			}
			err = fmt.Errorf("%w: version %d, in force %d", certs.ErrStaleTrustList, tl.Ver, ts.Version())
		}
	}
	return err
}

// apply proposes a command on this member (the leader) and waits for the FSM.
func (h *Hub) apply(ctx context.Context, data []byte) (exchange.SubmitResult, error) {
	timeout := h.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return exchange.SubmitResult{}, ctx.Err()
	}
	start := time.Now()
	f := h.raft.Apply(data, timeout)
	if err := h.await(ctx, f); err != nil {
		return exchange.SubmitResult{}, err
	}
	h.observeCommit(start)
	res, ok := f.Response().(applyResult)
	if !ok {
		return exchange.SubmitResult{}, fmt.Errorf("hub fsm answered %T", f.Response())
	}
	if res.Err != nil {
		return exchange.SubmitResult{}, classify(res.Err)
	}
	return exchange.SubmitResult{Index: res.Index, LeafHash: base64.StdEncoding.EncodeToString(res.LeafHash)}, nil
}

// await waits for an applied future no longer than ctx and the member's own
// life: Apply's timeout bounds only the enqueue, and a future still queued in
// Raft's batch channel when the member shuts down is never answered. After a
// timeout the write may still commit; resubmitting the same bytes is
// idempotent.
func (h *Hub) await(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return &hcx.Error{Class: hcx.EUnavailable, Code: "not_leader", Message: "the hub did not confirm the write in time (" + ctx.Err().Error() + "); it may still commit: resubmit the same bytes", Err: hcx.ErrNotLeader}
	case <-h.done:
		return ErrClosed
	}
}

// Close leaves gracefully: a leader hands leadership to another voter first,
// then Raft, the listeners and the stores close.
func (h *Hub) Close() error { return h.close(true) }

// close stops the member, handing leadership over first if transfer is set
// and there is a voter to hand it to. A stop is clean: nothing it causes is
// logged as a warning (see raftLog).
func (h *Hub) close(transfer bool) error {
	var err error
	h.closeOnce.Do(func() {
		h.stopping.Store(true)
		if transfer && h.IsLeader() && h.voters() > 1 {
			// A failed transfer costs the others one election timeout
			// before they elect a leader among themselves: worth
			// saying, not a fault of this member's stop.
			if e := h.raft.LeadershipTransfer().Error(); e != nil {
				h.log.Info("leadership not handed over on close: the other members elect a leader after their election timeout", "err", e)
			}
		}
		h.raft.DeregisterObserver(h.obs)
		close(h.done)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h.srv.Shutdown(ctx)
		h.isrv.Shutdown(ctx)
		cancel()
		if e := h.raft.Shutdown().Error(); e != nil {
			err = e
		}
		h.trans.Close()
		h.wg.Wait()
		if e := h.closeStorage(); e != nil && err == nil {
			err = e
		}
		h.ic.CloseIdleConnections()
	})
	return err
}

// Kill stops the member abruptly, as a crash would, without leadership
// transfer (for fault tests). Storage is closed so the member can be
// reopened from disk.
func (h *Hub) Kill() error {
	var err error
	h.closeOnce.Do(func() {
		close(h.done)
		h.srv.Close()
		h.isrv.Close()
		h.trans.Close()
		err = h.raft.Shutdown().Error()
		h.wg.Wait()
		h.closeStorage()
		h.ic.CloseIdleConnections()
	})
	return err
}

func (h *Hub) closeStorage() error {
	var err error
	if h.fsm != nil {
		err = h.fsm.close()
	}
	if h.store != nil {
		if e := h.store.Close(); e != nil && err == nil {
			err = e
		}
	}
	if h.httpL != nil && h.srv == nil {
		h.httpL.Close()
	}
	return err
}

func (h *Hub) voters() int {
	f := h.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}
