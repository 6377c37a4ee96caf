package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// Members talk to each other over internal HTTP routes served on the Raft
// listener (so in mutual TLS with hub certificates): forwarded writes,
// membership changes and the read index. They answer 200 with an
// internalAnswer that carries a typed error whole, so a forwarded write fails
// at the follower exactly as it would have at the leader. The public API
// listener has one internal route, join, through which a new member asks to
// be added as a non-voter; promotion to voter goes over mutual TLS only.
const (
	routeJoin      = "/internal/v1/join"
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
	mux.HandleFunc("POST "+routeMember, h.memberHandler(false))
}

// joinRoute serves the public join route: a request to be added as a
// non-voter, handed to the leader over the members' network.
func (h *Hub) joinRoute(mux *http.ServeMux) {
	mux.HandleFunc("POST "+routeJoin, h.memberHandler(true))
}

func (h *Hub) memberHandler(joinOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var m Member
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil || m.ID == "" {
			http.Error(w, "member JSON with an id, please", http.StatusBadRequest)
			return
		}
		op := r.URL.Query().Get("op")
		if joinOnly {
			op = "join"
		}
		var commit uint64
		var err error
		if h.IsLeader() || (!joinOnly && r.Header.Get(hdrHop) != "") {
			commit, err = h.memberOpLocal(r.Context(), op, m)
		} else {
			commit, err = h.memberOpAt(r.Context(), op, m)
		}
		writeInternal(w, internalAnswer{Commit: commit, Err: toWire(err)})
	}
}

func writeInternal(w http.ResponseWriter, a internalAnswer) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}

// post calls an internal route of the member at a Raft address; the request
// is marked as forwarded, so the receiver does not forward it again.
func (h *Hub) post(ctx context.Context, raftAddr, route string, body []byte) (internalAnswer, error) {
	return h.postWith(ctx, h.ic, "http://"+raftAddr+route, body, true)
}

func (h *Hub) postWith(ctx context.Context, client *http.Client, url string, body []byte, hop bool) (internalAnswer, error) {
	var a internalAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	if hop {
		req.Header.Set(hdrHop, h.cfg.ID)
	}
	resp, err := client.Do(req)
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
	_, err := h.memberOpAt(ctx, op, m)
	return err
}

func (h *Hub) memberOpAt(ctx context.Context, op string, m Member) (uint64, error) {
	if h.IsLeader() {
		return h.memberOpLocal(ctx, op, m)
	}
	addr, _ := h.raft.LeaderWithID()
	if addr == "" {
		return 0, classify(hcx.ErrNotLeader)
	}
	body, _ := json.Marshal(m)
	a, err := h.post(ctx, string(addr), routeMember+"?op="+op, body)
	return a.Commit, err
}

// memberOpLocal runs a membership operation on this member, which must lead.
func (h *Hub) memberOpLocal(ctx context.Context, op string, m Member) (uint64, error) {
	if !h.IsLeader() {
		return 0, classify(hcx.ErrNotLeader)
	}
	timeout := 10 * time.Second
	id, addr := raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr)
	switch op {
	case "member":
		_, err := h.applyCmd(encodeMember(m))
		return 0, err
	case "join":
		if err := h.raft.AddNonvoter(id, addr, 0, timeout).Error(); err != nil {
			return 0, fmt.Errorf("add non-voter %s: %w", m.ID, err)
		}
		if _, err := h.applyCmd(encodeMember(m)); err != nil {
			return 0, err
		}
		return h.raft.LastIndex(), nil
	case "promote":
		if err := h.raft.AddVoter(id, addr, 0, timeout).Error(); err != nil {
			return 0, fmt.Errorf("promote %s: %w", m.ID, err)
		}
		return h.raft.LastIndex(), nil
	case "remove":
		if err := h.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
			return 0, fmt.Errorf("remove %s: %w", m.ID, err)
		}
		_, err := h.applyCmd(encodeCmd(cmdForget, []byte(m.ID)))
		return h.raft.LastIndex(), err
	}
	return 0, hcx.Invalidf("op", "unknown membership operation %q", op)
}

func (h *Hub) applyCmd(data []byte) (applyResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ApplyTimeout)
	defer cancel()
	f := h.raft.Apply(data, h.cfg.ApplyTimeout)
	if err := h.await(ctx, f); err != nil {
		return applyResult{}, err
	}
	res, _ := f.Response().(applyResult)
	return res, res.Err
}

// join asks the cluster (through the Join URLs) to add this member as a
// non-voter, waits until it has applied everything committed at that time,
// then asks for promotion to voter.
func (h *Hub) join() {
	defer h.wg.Done()
	me := Member{ID: h.cfg.ID, RaftAddr: h.RaftAddr(), API: h.url}
	body, _ := json.Marshal(me)
	var commit uint64
	for attempt := 0; ; attempt++ {
		for _, u := range h.cfg.Join {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			a, err := h.postWith(ctx, h.hc, u+routeJoin, body, false)
			cancel()
			if err == nil {
				commit = a.Commit
				goto caughtUp
			}
			h.log.Info("join through "+u, "err", err)
		}
		select {
		case <-h.done:
			return
		case <-time.After(backoff(attempt + 1)):
		}
	}
caughtUp:
	for h.raft.AppliedIndex() < commit {
		select {
		case <-h.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := h.memberOpAt(ctx, "promote", me)
		cancel()
		if err == nil {
			h.voterOnce.Do(func() { close(h.voter) })
			h.log.Info("joined the hub cluster as a voter", "caught_up_to", commit)
			return
		}
		h.log.Info("promotion", "err", err)
		select {
		case <-h.done:
			return
		case <-time.After(backoff(attempt + 1)):
		}
	}
}

// RemoveMember removes a member from the cluster (at the leader, wherever it
// is) and drops its metadata.
func (h *Hub) RemoveMember(ctx context.Context, id string) error {
	return h.memberOp(ctx, "remove", Member{ID: id})
}
