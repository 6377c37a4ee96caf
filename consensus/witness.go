package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/witness"
)

// Witnesses (PROTOCOL.md §4, §5; C2SP tlog-witness): the log calls its
// witnesses. While a member leads, after each checkpoint it commits, it
// submits the checkpoint to every witness at once, with a consistency proof
// from the size that witness last cosigned, signed with the member's
// request tokens so that a witness can name the member that showed it a
// checkpoint. The cosignatures that verify against the trust list go
// through Raft (cmdCosign), so every member serves the same note.

const (
	// witnessCallTimeout bounds one add-checkpoint call.
	witnessCallTimeout = 5 * time.Second
	// witnessMaxBackoff is the longest a failing witness is left alone.
	witnessMaxBackoff = 5 * time.Minute
	// MaxWitnesses bounds Config.Witnesses (a note carries at most 64
	// signature lines, the hub's among them).
	MaxWitnesses = 32
	// maxLinesPerWitness bounds the lines read from one witness's answer
	// (C2SP allows a line per key; a witness here has one key).
	maxLinesPerWitness = 4
)

// WitnessStats are what the member's witness rounds did (metrics).
type WitnessStats struct {
	Rounds        uint64          // rounds run while this member led
	Skipped       uint64          // checkpoints that found a round still running
	WitnessedSize uint64          // the newest checkpoint size that carries cosignatures (from the FSM)
	Witnesses     []WitnessStatus // by Config.Witnesses order
}

// WitnessStatus is one witness as this member sees it.
type WitnessStatus struct {
	URL       string `json:"url"`
	Name      string `json:"name,omitempty"` // its note key name, once it has cosigned
	Size      uint64 `json:"size"`           // the size it last cosigned, as far as this member knows
	Cosigned  uint64 `json:"cosigned"`       // checkpoints it cosigned for this member
	Failures  uint64 `json:"failures"`       // calls that failed or were refused
	Invalid   uint64 `json:"invalid"`        // cosignatures it returned that did not verify
	LastError string `json:"last_error,omitempty"`
}

// witnessPeer is one witness and what this member knows of it. Its fields
// are read and written by one round at a time (rounds do not overlap), and
// read for metrics under mu.
type witnessPeer struct {
	client *witness.Client

	mu      sync.Mutex
	st      WitnessStatus
	known   bool // st.Size was learnt from the witness
	fails   int  // consecutive failures
	retryAt time.Time
}

func (p *witnessPeer) status() WitnessStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// witnesses is the leader's side of the witness protocol.
type witnesses struct {
	peers   []*witnessPeer
	running atomic.Bool
	rounds  atomic.Uint64
	skipped atomic.Uint64
}

// newWitnesses makes the clients of the witnesses at urls (submission
// prefixes): requests carry the member's request tokens and time out.
func newWitnesses(urls []string, cfg Config) (*witnesses, error) {
	if len(urls) > MaxWitnesses {
		return nil, fmt.Errorf("hub config: %d witnesses, at most %d", len(urls), MaxWitnesses)
	}
	base := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: witnessCallTimeout, ResponseHeaderTimeout: witnessCallTimeout}
	if cfg.WitnessTLS != nil {
		base.TLSClientConfig = cfg.WitnessTLS.Clone()
	} else {
		base.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	hc := &http.Client{Timeout: witnessCallTimeout, Transport: &auth.SigningTransport{Base: base, Signer: cfg.Signer, Now: cfg.Now, MaxBody: witness.MaxRequestBody},
		// A witness answers; it does not redirect the log elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	w := &witnesses{}
	seen := map[string]bool{}
	for _, u := range urls {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("hub config: witness %q: want the submission prefix as a URL, such as https://node-110000:8711/v1/witness", u)
		}
		if seen[u] {
			return nil, fmt.Errorf("hub config: witness %s is listed twice", u)
		}
		seen[u] = true
		w.peers = append(w.peers, &witnessPeer{client: &witness.Client{URL: u, HTTP: hc}, st: WitnessStatus{URL: u}})
	}
	return w, nil
}

// WitnessStats returns the counters of this member's witness rounds.
func (h *Hub) WitnessStats() WitnessStats {
	s := WitnessStats{}
	if v, err := h.fsm.get(keyWitnessed); err == nil && v != nil {
		s.WitnessedSize, _ = getBE8(v)
	}
	if h.wit == nil {
		return s
	}
	s.Rounds, s.Skipped = h.wit.rounds.Load(), h.wit.skipped.Load()
	for _, p := range h.wit.peers {
		s.Witnesses = append(s.Witnesses, p.status())
	}
	return s
}

// startCosignRound starts a round for the newest checkpoint unless one is
// running (then the checkpoint is skipped: the next round submits a newer
// one, with a proof that covers it). force runs it even if no witness is
// behind.
func (h *Hub) startCosignRound(force bool) {
	if h.wit == nil || !h.IsLeader() {
		return
	}
	if !force && !h.witnessBehind() {
		return
	}
	if !h.wit.running.CompareAndSwap(false, true) {
		h.wit.skipped.Add(1)
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.wit.running.Store(false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-h.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := h.cosignRound(ctx); err != nil {
			h.log.Warn("witness round", "err", err)
		}
	}()
}

// witnessBehind: some witness that is due has not cosigned the newest
// checkpoint (a witness that failed is tried again after its back-off,
// even while the log is idle).
func (h *Hub) witnessBehind() bool {
	st, _ := h.fsm.state()
	now := h.cfg.Now()
	for _, p := range h.wit.peers {
		p.mu.Lock()
		behind := (!p.known || p.st.Size < st.CheckpointSize) && !now.Before(p.retryAt)
		p.mu.Unlock()
		if behind {
			return true
		}
	}
	return false
}

// cosignRound submits the newest checkpoint to every witness that is due,
// at once, keeps the cosignatures that verify and commits them.
func (h *Hub) cosignRound(ctx context.Context) error {
	note, err := h.fsm.get(keyCP)
	if err != nil || note == nil {
		return err
	}
	cp, err := exchange.ParseCheckpoint(note)
	if err != nil {
		return fmt.Errorf("stored checkpoint: %w", err)
	}
	h.wit.rounds.Add(1)
	now := h.cfg.Now()
	ws := exchange.WitnessesOf(h.TrustStore(), now)
	lines := make([][]string, len(h.wit.peers))
	var wg sync.WaitGroup
	for i, p := range h.wit.peers {
		p.mu.Lock()
		due := !now.Before(p.retryAt) && (!p.known || p.st.Size != cp.Size)
		p.mu.Unlock()
		if !due {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lines[i] = h.submitToWitness(ctx, p, cp, note, ws, now)
		}()
	}
	wg.Wait()
	var all []string
	for _, ls := range lines {
		all = append(all, ls...)
	}
	if len(all) == 0 || ctx.Err() != nil {
		return nil
	}
	if _, err := h.applyCmd(encodeCosign(h.cfg.Now(), cp.Size, all)); err != nil {
		return fmt.Errorf("commit %d cosignatures for size %d: %w", len(all), cp.Size, err)
	}
	return nil
}

// submitToWitness runs add-checkpoint at one witness and returns the
// cosignature lines that verify against ws.
func (h *Hub) submitToWitness(ctx context.Context, p *witnessPeer, cp *exchange.Checkpoint, note []byte, ws []exchange.Witness, now time.Time) []string {
	p.mu.Lock()
	old := p.st.Size
	p.mu.Unlock()
	if old > cp.Size {
		// Known from an earlier 409: nothing to submit until the log
		// catches up (it was logged as a finding then).
		h.witnessFailed(p, now, fmt.Errorf("it cosigned size %d, above this member's newest checkpoint %d", old, cp.Size))
		return nil
	}
	var body []byte
	for attempt := 0; ; attempt++ {
		var pf [][]byte
		if old > 0 && old < cp.Size {
			var err error
			if pf, err = h.fsm.consistency(old, cp.Size); err != nil {
				h.witnessFailed(p, now, fmt.Errorf("consistency proof %d..%d: %w", old, cp.Size, err))
				return nil
			}
		}
		cctx, cancel := context.WithTimeout(ctx, witnessCallTimeout)
		b, err := p.client.AddCheckpoint(cctx, old, pf, note)
		cancel()
		var ce *witness.ConflictError
		if errors.As(err, &ce) {
			p.mu.Lock()
			p.st.Size, p.known = ce.Size, true
			p.mu.Unlock()
			switch {
			case ce.Size > cp.Size && h.raft.AppliedIndex() < h.raft.CommitIndex():
				// A new leader that has not applied the newest
				// checkpoint yet: ask again (and judge again) next round.
				p.mu.Lock()
				p.st.Size, p.known = 0, false
				p.mu.Unlock()
			case ce.Size > cp.Size:
				// The witness cosigned a larger tree than the log has
				// committed: another history was shown to it. An
				// operator must look (the witness's conflicts name who).
				h.log.Error("a witness has cosigned a larger tree than this member's newest checkpoint: it was shown another history", "witness", p.client.URL, "witness_size", ce.Size, "size", cp.Size)
			case ce.Size == old:
				// Same size, another root: the witness cosigned a
				// different tree of this size.
				h.log.Error("a witness has cosigned another root for this checkpoint's size: two histories", "witness", p.client.URL, "size", cp.Size)
			case attempt == 0:
				old = ce.Size
				continue
			}
			h.witnessFailed(p, now, err)
			return nil
		}
		if err != nil {
			h.witnessFailed(p, now, err)
			return nil
		}
		body = b
		break
	}
	var good []string
	invalid := uint64(0)
	name := ""
	lines := strings.SplitAfter(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) > maxLinesPerWitness {
		h.log.Warn("a witness returned more cosignature lines than a witness has keys; reading the first ones", "witness", p.client.URL, "lines", len(lines), "read", maxLinesPerWitness)
		lines = lines[:maxLinesPerWitness]
	}
	kept := map[string]bool{}
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\n")
		ok, n := verifyCosignature(note, l, ws, now)
		if ok && kept[n] {
			continue // one line per name is kept
		}
		if ok {
			kept[n] = true
			good, name = append(good, l), n
		} else {
			invalid++
			h.log.Warn("a witness returned a cosignature that does not verify against the trust list; dropped", "witness", p.client.URL, "line_name", n, "size", cp.Size)
		}
	}
	p.mu.Lock()
	p.st.Size, p.known, p.fails, p.retryAt = cp.Size, true, 0, time.Time{}
	p.st.Invalid += invalid
	if len(good) > 0 {
		p.st.Cosigned++
		p.st.Name, p.st.LastError = name, ""
	}
	p.mu.Unlock()
	return good
}

// witnessFailed counts a failure and backs the witness off: 1 s, 2 s, 4 s
// ... up to witnessMaxBackoff.
func (h *Hub) witnessFailed(p *witnessPeer, now time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fails++
	p.st.Failures++
	p.st.LastError = err.Error()
	d := witnessMaxBackoff
	if p.fails < 10 {
		d = min(time.Duration(1<<(p.fails-1))*time.Second, witnessMaxBackoff)
	}
	p.retryAt = now.Add(d)
	// A witness that has never cosigned and fails a first time or two is
	// most often one starting beside the hub: a province node that has not
	// yet followed the trust list naming this member answers 401
	// unknown_key until it has. That is not an operator's problem, so it is
	// INFO; a witness that keeps failing (about 7 s of back-off), or one
	// that cosigned before and stopped, is.
	level := slog.LevelWarn
	if p.st.Cosigned == 0 && p.fails < witnessQuietFailures {
		level = slog.LevelInfo
	}
	h.log.Log(context.Background(), level, "a witness did not cosign", "witness", p.client.URL, "err", err, "retry_in", d, "failures", p.fails)
}

// witnessQuietFailures is how many first failures of a witness that never
// cosigned are logged at INFO rather than WARN.
const witnessQuietFailures = 3

// verifyCosignature says whether line is a cosignature of the checkpoint
// note by a witness of ws, and the name the line carries.
func verifyCosignature(note []byte, line string, ws []exchange.Witness, now time.Time) (bool, string) {
	name := ""
	if rest, ok := strings.CutPrefix(line, "— "); ok {
		name, _, _ = strings.Cut(rest, " ")
	}
	withLine, err := exchange.AddCosignatures(note, line)
	if err != nil {
		return false, name
	}
	cp, err := exchange.ParseCheckpoint(withLine)
	if err != nil {
		return false, name
	}
	valid, bad := cp.VerifyCosignatures(ws, now)
	if !slices.Contains(valid, name) {
		return false, name
	}
	for _, b := range bad {
		if b.Name == name {
			return false, name
		}
	}
	return true, name
}

// encodeCosign is the command adding cosignatures to the checkpoint of
// size: the proposer's clock (8 bytes, Unix seconds: the FSM judges the
// lines at it), the size (8), then the lines, each ending in a newline.
func encodeCosign(now time.Time, size uint64, lines []string) []byte {
	out := make([]byte, 0, 17+64*len(lines))
	out = append(out, cmdCosign)
	out = append(out, be8(uint64(now.Unix()))...)
	out = append(out, be8(size)...)
	for _, l := range lines {
		out = append(out, strings.TrimSuffix(l, "\n")...)
		out = append(out, '\n')
	}
	return out
}

// applyCosign adds the cosignature lines that verify against the trust
// store of this point of the log, at the proposer's time, to the stored
// note of that size (and to the newest note if it is the newest), and
// records the newest size that carries cosignatures. Lines that do not
// verify are dropped; a command with none that does is refused. Every
// member decides the same way: the inputs are the command, the stored
// note and the trust store.
func (f *fsm) applyCosign(at *applyTxn, ts *certs.TrustStore, body []byte) applyResult {
	if len(body) < 16 {
		return applyResult{Err: errors.New("cosign command: too short")}
	}
	stamp, _ := getBE8(body[:8])
	size, _ := getBE8(body[8:16])
	text := strings.TrimSuffix(string(body[16:]), "\n")
	if text == "" {
		return applyResult{Err: errors.New("cosign command: no lines")}
	}
	lines := strings.Split(text, "\n")
	if len(lines) > MaxWitnesses*2 {
		return applyResult{Err: fmt.Errorf("cosign command: %d lines", len(lines))}
	}
	note, err := getVal(at.tx, keyCPAt(size))
	if err != nil {
		panic(fmt.Sprintf("hub fsm: read: %v", err))
	}
	if note == nil {
		return applyResult{Err: hcx.Errorf(hcx.ENotFound, "no_checkpoint", "no checkpoint at size %d to cosign", size)}
	}
	t := time.Unix(int64(stamp), 0)
	ws := exchange.WitnessesOf(ts, t)
	var good []string
	for _, l := range lines {
		if ok, name := verifyCosignature(note, l, ws, t); ok {
			good = append(good, l)
		} else {
			f.log.Warn("a cosignature does not verify against the trust list; not stored", "size", size, "line_name", name)
		}
	}
	if len(good) == 0 {
		return applyResult{Err: fmt.Errorf("none of the %d cosignatures for size %d verifies", len(lines), size)}
	}
	out, err := exchange.AddCosignatures(note, good...)
	if err != nil {
		return applyResult{Err: err}
	}
	at.set(keyCPAt(size), out)
	if size == f.pendingCP {
		at.set(keyCP, out)
	}
	v, err := getVal(at.tx, keyWitnessed)
	if err != nil {
		panic(fmt.Sprintf("hub fsm: read: %v", err))
	}
	if prev, _ := getBE8(v); v == nil || size > prev {
		at.set(keyWitnessed, be8(size))
	}
	return applyResult{Index: size}
}

// WitnessedCheckpoint returns the newest checkpoint note that carries at
// least one witness cosignature, with all of them; hcx.ErrNotFound (code
// no_checkpoint) when none does yet.
func (h *Hub) WitnessedCheckpoint(ctx context.Context) ([]byte, error) {
	notFound := &hcx.Error{Class: hcx.ENotFound, Code: "no_checkpoint", Message: "no checkpoint carries a witness cosignature yet", Err: hcx.ErrNotFound}
	v, err := h.fsm.get(keyWitnessed)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, notFound
	}
	size, err := getBE8(v)
	if err != nil {
		return nil, err
	}
	b, err := h.fsm.get(keyCPAt(size))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, notFound
	}
	return b, nil
}
