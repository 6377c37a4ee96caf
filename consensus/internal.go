package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// Members talk to each other over internal HTTP routes served on the Raft
// listener (so in mutual TLS with hub certificates): forwarded writes,
// membership changes and the read index. They answer 200 with an
// internalAnswer that carries a typed error whole, so a forwarded write fails
// at the follower exactly as it would have at the leader. Nothing of this is
// on the public API: membership changes travel only on the members' network.
const (
	routeSubmit    = "/internal/v1/submit"
	routeMember    = "/internal/v1/member"
	routeReadIndex = "/internal/v1/readindex"
	hdrHop         = "Hcx-Forwarded-By"
)

type wireErr struct {
	Class   hcx.ErrorCode  `json:"class"`
	Code    string         `json:"code"`
	Field   string         `json:"field,omitempty"`
	Message string         `json:"message"`
	Detail  map[string]any `json:"detail,omitempty"`
}

type internalAnswer struct {
	Index    uint64   `json:"index"`
	LeafHash string   `json:"leaf_hash,omitempty"`
	Commit   uint64   `json:"commit,omitempty"`
	Err      *wireErr `json:"error,omitempty"`
}

func toWire(err error) *wireErr {
	if err == nil {
		return nil
	}
	err = classify(err)
	var he *hcx.Error
	if errors.As(err, &he) {
		return &wireErr{Class: he.Class, Code: he.Code, Field: he.Field, Message: he.Message, Detail: he.Detail}
	}
	if retryable(err) {
		return &wireErr{Class: hcx.EUnavailable, Code: "not_leader", Message: err.Error()}
	}
	return &wireErr{Class: hcx.EInternal, Code: "internal", Message: err.Error()}
}

func fromWire(w *wireErr) error {
	if w == nil {
		return nil
	}
	e := &hcx.Error{Class: w.Class, Code: w.Code, Field: w.Field, Message: w.Message, Detail: w.Detail}
	if w.Class == hcx.EUnavailable {
		e.Err = hcx.ErrNotLeader
	}
	if v, ok := w.Detail["expected"].(float64); ok {
		e.Detail["expected"] = uint64(v)
	}
	return e
}

func (h *Hub) internalRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+routeSubmit, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, exchange.MaxEnvelopeBytes+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := h.SubmitLocal(r.Context(), string(b))
		writeInternal(w, internalAnswer{Index: res.Index, LeafHash: res.LeafHash, Err: toWire(err)})
	})
	mux.HandleFunc("POST "+routeReadIndex, func(w http.ResponseWriter, r *http.Request) {
		if !h.IsLeader() {
			writeInternal(w, internalAnswer{Err: toWire(hcx.ErrNotLeader)})
			return
		}
		idx, err := h.readIndex()
		writeInternal(w, internalAnswer{Commit: idx, Err: toWire(err)})
	})
	mux.HandleFunc("POST "+routeMember, h.memberHandler)
}

// peerKey keys the member id of a request's verified hub certificate in its
// context.
type peerKey struct{}

// peerContext is the internal server's ConnContext: it records the member id
// that the connection's hub certificate names ("" without TLS).
func peerContext(ctx context.Context, c net.Conn) context.Context {
	if mc, ok := c.(*memberConn); ok {
		return context.WithValue(ctx, peerKey{}, mc.peer)
	}
	return ctx
}

func peerOf(ctx context.Context) string {
	p, _ := ctx.Value(peerKey{}).(string)
	return p
}

// memberHandler serves a membership operation (op = join, promote, member
// or remove) asked for by the member whose certificate authenticated the
// connection. Only the leader changes membership; another member answers
// not_leader with the leader's Raft address in detail "leader", and the
// caller asks the leader itself, so the leader always sees the caller's own
// certificate.
func (h *Hub) memberHandler(w http.ResponseWriter, r *http.Request) {
	var m Member
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil || m.ID == "" {
		http.Error(w, `membership request: want JSON {"id":..., "raft_addr":..., "api":...} with a non-empty id`, http.StatusBadRequest)
		return
	}
	commit, err := h.memberOpFrom(r.Context(), peerOf(r.Context()), r.URL.Query().Get("op"), m)
	writeInternal(w, internalAnswer{Commit: commit, Err: toWire(err)})
}

// memberOpFrom runs a membership operation asked for by member peer.
func (h *Hub) memberOpFrom(ctx context.Context, peer, op string, m Member) (uint64, error) {
	if err := h.checkCaller(peer, op, m); err != nil {
		return 0, err
	}
	if !h.IsLeader() {
		return 0, h.notLeader()
	}
	return h.memberOpLocal(ctx, peer, op, m)
}

// checkCaller checks a request's Raft address and binds the request to the
// caller's identity: a member may only join, be promoted and announce
// itself. Without TLS (Config.InsecurePlaintext) callers are not
// authenticated.
func (h *Hub) checkCaller(peer, op string, m Member) error {
	switch op {
	case "join", "promote", "member":
		if _, _, err := net.SplitHostPort(m.RaftAddr); err != nil {
			return hcx.Invalidf("raft_addr", "member %s: Raft address %q is not host:port", m.ID, m.RaftAddr)
		}
	}
	if h.sl.server == nil {
		return nil
	}
	switch op {
	case "join", "promote", "member":
		if peer != m.ID {
			return hcx.Errorf(hcx.EForbidden, "member_identity", "the caller's hub TLS certificate is member %s's, which may %s only itself, not %s", peer, op, m.ID)
		}
	}
	return nil
}

// notLeader is hcx.ErrNotLeader with the leader's Raft address, when known,
// in detail "leader".
func (h *Hub) notLeader() error {
	e := &hcx.Error{Class: hcx.EUnavailable, Code: "not_leader", Message: "this hub member does not lead; ask the leader", Err: hcx.ErrNotLeader}
	if addr, _ := h.raft.LeaderWithID(); addr != "" {
		e.Detail = map[string]any{"leader": string(addr)}
	}
	return e
}

func writeInternal(w http.ResponseWriter, a internalAnswer) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}

// post calls an internal route of the member at a Raft address; the request
// is marked as forwarded, so the receiver does not forward it again.
func (h *Hub) post(ctx context.Context, raftAddr, route string, body []byte) (internalAnswer, error) {
	url := "http://" + raftAddr + route
	var a internalAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	req.Header.Set(hdrHop, h.cfg.ID)
	resp, err := h.ic.Do(req)
	if err != nil {
		return a, &hcx.Error{Class: hcx.EUnavailable, Code: "not_leader", Message: "forward to the leader: " + err.Error(), Err: hcx.ErrNotLeader}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return a, &hcx.Error{Class: hcx.EUnavailable, Code: "not_leader", Message: fmt.Sprintf("forward to %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(msg)), Err: hcx.ErrNotLeader}
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, &hcx.Error{Class: hcx.EUnavailable, Code: "not_leader", Message: "forward: bad answer: " + err.Error(), Err: hcx.ErrNotLeader}
	}
	return a, fromWire(a.Err)
}

// forward sends a write to the leader's internal route.
func (h *Hub) forward(ctx context.Context, leaderRaft, compact string) (exchange.SubmitResult, error) {
	a, err := h.post(ctx, leaderRaft, routeSubmit, []byte(compact))
	if err != nil {
		return exchange.SubmitResult{}, err
	}
	return exchange.SubmitResult{Index: a.Index, LeafHash: a.LeafHash}, nil
}

// memberOp runs a membership operation at the leader, wherever it is.
func (h *Hub) memberOp(ctx context.Context, op string, m Member) error {
	_, err := h.memberOpVia(ctx, nil, op, m)
	return err
}

// maxMemberHops bounds the members asked for one membership operation.
const maxMemberHops = 8

// memberOpVia runs a membership operation at the leader: here if this member
// leads, else at the leader it knows, else at the seeds (members' Raft
// addresses) in turn, following a not_leader answer to the leader it names.
func (h *Hub) memberOpVia(ctx context.Context, seeds []string, op string, m Member) (uint64, error) {
	if h.IsLeader() {
		return h.memberOpLocal(ctx, h.cfg.ID, op, m)
	}
	var try []string
	if addr, _ := h.raft.LeaderWithID(); addr != "" {
		try = append(try, string(addr))
	}
	try = append(try, seeds...)
	body, _ := json.Marshal(m)
	last := classify(hcx.ErrNotLeader)
	for hops := 0; len(try) > 0 && hops < maxMemberHops && ctx.Err() == nil; hops++ {
		addr := try[0]
		try = try[1:]
		if addr == h.RaftAddr() {
			continue
		}
		a, err := h.post(ctx, addr, routeMember+"?op="+op, body)
		if err == nil {
			return a.Commit, nil
		}
		last = err
		if !retryable(err) {
			return 0, err
		}
		var he *hcx.Error
		if errors.As(err, &he) {
			if l, _ := he.Detail["leader"].(string); l != "" && l != addr {
				try = append([]string{l}, try...)
			}
		}
	}
	return 0, last
}

// memberOpLocal runs a membership operation asked for by member peer on this
// member, which must lead. Operations are serialised, and each is made
// conditional on the configuration it was checked against.
func (h *Hub) memberOpLocal(ctx context.Context, peer, op string, m Member) (uint64, error) {
	h.memberMu.Lock()
	defer h.memberMu.Unlock()
	defer h.refreshMembers()
	if !h.IsLeader() {
		return 0, h.notLeader()
	}
	f := h.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, classify(err)
	}
	servers, prev := f.Configuration().Servers, f.Index()
	timeout := 10 * time.Second
	id, addr := raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr)
	switch op {
	case "member":
		cur, err := sameMember(servers, m)
		if err != nil {
			return 0, err
		}
		if cur == nil {
			return 0, notJoined(m, "announce its metadata")
		}
		_, err = h.applyCmd(encodeMember(m))
		return 0, err
	case "join":
		cur, err := sameMember(servers, m)
		if err != nil {
			return 0, err
		}
		if cur == nil {
			if err := h.raft.AddNonvoter(id, addr, prev, timeout).Error(); err != nil {
				return 0, fmt.Errorf("add non-voter %s: %w", m.ID, err)
			}
		}
		if _, err := h.applyCmd(encodeMember(m)); err != nil {
			return 0, err
		}
		return h.raft.LastIndex(), nil
	case "promote":
		cur, err := sameMember(servers, m)
		if err != nil {
			return 0, err
		}
		if cur == nil {
			return 0, notJoined(m, "be promoted")
		}
		if cur.Suffrage != raft.Voter {
			if err := h.raft.AddVoter(id, addr, prev, timeout).Error(); err != nil {
				return 0, fmt.Errorf("promote %s: %w", m.ID, err)
			}
		}
		return h.raft.LastIndex(), nil
	case "remove":
		if h.sl.server != nil && !slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == raft.ServerID(peer) }) {
			return 0, hcx.Errorf(hcx.EForbidden, "not_a_member", "%s is not in the hub configuration, so it may not remove %s; only members remove members", peer, m.ID)
		}
		if err := h.raft.RemoveServer(id, prev, timeout).Error(); err != nil {
			return 0, fmt.Errorf("remove %s: %w", m.ID, err)
		}
		_, err := h.applyCmd(encodeCmd(cmdForget, []byte(m.ID)))
		return h.raft.LastIndex(), err
	}
	return 0, hcx.Invalidf("op", "unknown membership operation %q for member %s: use join, promote, member or remove", op, m.ID)
}

// sameMember finds m in the configuration, at the same id and address. A
// configured member with m's id at another address, or another member at
// m's address, is a conflict: re-addressing a member is an operator's
// RemoveMember followed by a new join, never a side effect of a join.
func sameMember(servers []raft.Server, m Member) (*raft.Server, error) {
	var cur *raft.Server
	for i, s := range servers {
		sameID, sameAddr := s.ID == raft.ServerID(m.ID), s.Address == raft.ServerAddress(m.RaftAddr)
		switch {
		case sameID && sameAddr:
			cur = &servers[i]
		case sameID:
			return nil, hcx.Errorf(hcx.EConflict, "member_conflict", "member %s is in the hub configuration at %s, not %s; to move it, remove it first (RemoveMember) and let it join again", m.ID, s.Address, m.RaftAddr)
		case sameAddr:
			return nil, hcx.Errorf(hcx.EConflict, "member_conflict", "Raft address %s belongs to member %s; %s cannot use it", m.RaftAddr, s.ID, m.ID)
		}
	}
	return cur, nil
}

func notJoined(m Member, what string) error {
	return hcx.Errorf(hcx.EConflict, "not_joined", "member %s at %s is not in the hub configuration and cannot %s: join first", m.ID, m.RaftAddr, what)
}

func (h *Hub) applyCmd(data []byte) (applyResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ApplyTimeout)
	defer cancel()
	start := time.Now()
	f := h.raft.Apply(data, h.cfg.ApplyTimeout)
	if err := h.await(ctx, f); err != nil {
		return applyResult{}, err
	}
	h.observeCommit(start)
	res, _ := f.Response().(applyResult)
	return res, res.Err
}

// join asks the cluster, through the members at the Join addresses, to add
// this member as a non-voter, waits until it has applied everything
// committed at that time, then asks for promotion to voter. A refusal (an
// id or address conflict, a certificate for another member) is logged as an
// error and retried slowly: an operator may resolve it meanwhile.
func (h *Hub) join() {
	defer h.wg.Done()
	me := Member{ID: h.cfg.ID, RaftAddr: h.RaftAddr(), API: h.url}
	ask := func(op string) (uint64, bool) {
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			commit, err := h.memberOpVia(ctx, h.cfg.Join, op, me)
			cancel()
			if err == nil {
				return commit, true
			}
			wait := backoff(attempt + 1)
			if retryable(err) {
				h.log.Info("hub membership: "+op, "through", h.cfg.Join, "err", err)
			} else {
				h.log.Error("hub membership: "+op+" refused; retrying in 5s", "err", err)
				wait = 5 * time.Second
			}
			select {
			case <-h.done:
				return 0, false
			case <-time.After(wait):
			}
		}
	}
	commit, ok := ask("join")
	if !ok {
		return
	}
	for h.raft.AppliedIndex() < commit {
		select {
		case <-h.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, ok := ask("promote"); !ok {
		return
	}
	h.voterOnce.Do(func() { close(h.voter) })
	h.log.Info("joined the hub cluster as a voter", "caught_up_to", commit)
}

// membersEvery is how often a member re-reads the configuration's
// addresses for the stream layer's dial check.
const membersEvery = 250 * time.Millisecond

// watchMembers keeps the stream layer's address-to-member map current.
func (h *Hub) watchMembers() {
	defer h.wg.Done()
	t := time.NewTicker(membersEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
			h.refreshMembers()
		}
	}
}

func (h *Hub) refreshMembers() {
	f := h.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	m := map[string]string{}
	for _, s := range f.Configuration().Servers {
		m[string(s.Address)] = string(s.ID)
	}
	h.sl.setMembers(m)
	h.logConfigChange(f.Configuration().Servers)
}

// RemoveMember removes a member from the cluster (at the leader, wherever it
// is) and drops its metadata. It is an operator's action run by a member
// process: over TLS, the leader accepts it from any member in the
// configuration.
func (h *Hub) RemoveMember(ctx context.Context, id string) error {
	return h.memberOp(ctx, "remove", Member{ID: id})
}
