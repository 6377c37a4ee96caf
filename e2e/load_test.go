package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/transparency-dev/merkle/proof"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/consensus/linmodel"
	"github.com/hcxfed/hcx/exchange"
)

// The steady load during every fault (issue 14 item 3): writers at two
// provinces post positive lab results through the feed route, each line
// turning a green resident red, and record every line the node
// acknowledged; verifiers at the other two provinces scan the codes of
// enrolled residents of the writing provinces; a hub client appends keyed
// envelopes to the hub log and reads the log back, and its history is
// checked with porcupine against linmodel.Model.

// Load rates (per writing province, per verifying province, hub).
const (
	writeEvery   = 100 * time.Millisecond // a feed request of writeLines lines
	writeLines   = 2
	verifyEvery  = 100 * time.Millisecond
	submitEvery  = 150 * time.Millisecond
	readEveryNth = 3                // every third acknowledged submit is followed by a read
	writeRetry   = 20 * time.Second // a feed request is retried (same record ids) this long, then its outcome is unknown
	opTimeout    = 3 * time.Second
)

// ack is a lab result a node acknowledged.
type ack struct {
	p   hcx.ProvinceCode
	sub hcx.Subject
	id  string
	at  time.Time
}

type load struct {
	f   *fed
	run int
	// errorf reports what a check finds (t.Errorf; the negative control
	// collects instead).
	errorf func(format string, args ...any)

	mu        sync.Mutex
	pool      map[hcx.ProvinceCode][]string // registered green residents not written to yet
	next      map[hcx.ProvinceCode]int      // next document number to register
	acked     []ack
	checked   int // acked[:checked] passed a loss check
	unknown   int // lines whose request was given up: may or may not have taken effect
	persons   []*person
	codes     map[*person]string
	red       map[*person]bool // an acknowledged positive result
	uncertain map[*person]bool // a positive result of unknown outcome
	verified  map[string]int   // verification outcomes: "ok" or the error
	views     int              // node views (bundle headers) checked against the hub
	noView    map[string]int   // node views not served, by why

	hubOps   []porcupine.Operation
	keyEnv   map[string]string // key → envelope
	submitIx map[int]uint64    // hubOps index of an acknowledged submit → global index answered
	cache    [3][]string       // each member's log as read by the load
	keys     atomic.Int64
	start    time.Time

	stop chan struct{}
	wg   sync.WaitGroup
	seq  atomic.Int64
}

func newLoad(f *fed) *load {
	l := &load{f: f, run: rand.Intn(1000), errorf: f.t.Errorf, pool: map[hcx.ProvinceCode][]string{}, next: map[hcx.ProvinceCode]int{},
		codes: map[*person]string{}, red: map[*person]bool{}, uncertain: map[*person]bool{}, verified: map[string]int{},
		noView: map[string]int{}, keyEnv: map[string]string{}, submitIx: map[int]uint64{}, start: time.Now()}
	for _, p := range writers {
		l.refill(p, 3000)
		for i := 0; i < 6; i++ {
			l.persons = append(l.persons, f.enrol(p, docNumber(p, l.run+500, i)))
		}
	}
	return l
}

// refill registers n more residents at p for the writers.
func (l *load) refill(p hcx.ProvinceCode, n int) {
	l.mu.Lock()
	first := l.next[p]
	l.next[p] += n
	l.mu.Unlock()
	docs := l.f.register(p, l.run, first, n)
	l.mu.Lock()
	l.pool[p] = append(l.pool[p], docs...)
	l.mu.Unlock()
}

// take hands out n green residents of p ("" when the pool is empty).
func (l *load) take(p hcx.ProvinceCode, n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = min(n, len(l.pool[p]))
	docs := l.pool[p][:n]
	l.pool[p] = l.pool[p][n:]
	return docs
}

// labs posts a positive lab result for each document to province p's node
// as its feed, retrying the same record ids (a retried record counts once)
// until writeRetry; it answers whether every line was acknowledged.
func (l *load) labs(p hcx.ProvinceCode, docs []string) bool {
	at := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	var body bytes.Buffer
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = fmt.Sprintf("e2e-%d-%s-%d", l.run, p, l.seq.Add(1))
		fmt.Fprintf(&body, `{"id":"%s","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"positive","kind":"pcr"}`+"\n", ids[i], d, at)
	}
	for deadline := time.Now().Add(writeRetry); ; {
		st, b := l.f.signed(p, "/v1/feeds/labs", "application/x-ndjson", body.Bytes(), "feed-"+string(p))
		var res struct{ Accepted, Duplicates, Failed int }
		if st == http.StatusOK && json.Unmarshal(b, &res) == nil {
			if res.Failed > 0 || res.Accepted+res.Duplicates != len(docs) {
				l.f.t.Errorf("feed at %s refused lines of residents it registered: %s", p, b)
				return false
			}
			now := time.Now()
			l.mu.Lock()
			for i, d := range docs {
				l.acked = append(l.acked, ack{p: p, sub: l.f.subject(p, d), id: ids[i], at: now})
			}
			l.mu.Unlock()
			return true
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			l.unknown += len(docs)
			l.mu.Unlock()
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// redden writes a positive result for one enrolled person of each writing
// province (the colour change the verifiers must see).
func (l *load) redden() {
	for _, p := range writers {
		for _, r := range l.persons {
			l.mu.Lock()
			done := r.home != p || l.red[r] || l.uncertain[r]
			l.mu.Unlock()
			if done {
				continue
			}
			ok := l.labs(p, []string{r.doc})
			l.mu.Lock()
			if ok {
				l.red[r] = true
			} else {
				l.uncertain[r] = true
			}
			l.mu.Unlock()
			break
		}
	}
}

func (l *load) every(d time.Duration, f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

// begin starts the load; end stops it and waits for requests in flight.
func (l *load) begin() {
	l.stop = make(chan struct{})
	for _, p := range writers {
		p := p
		l.every(writeEvery, func() {
			if docs := l.take(p, writeLines); len(docs) > 0 {
				l.labs(p, docs)
			}
		})
	}
	for _, p := range verifiers {
		p := p
		l.every(verifyEvery, func() {
			l.mu.Lock()
			r := l.persons[rand.Intn(len(l.persons))]
			code := l.codes[r]
			l.mu.Unlock()
			outcome := "no code"
			if code != "" {
				if _, why := l.f.verify(p, code); why == "" {
					outcome = "ok"
				} else {
					outcome = errorCode(why)
				}
			}
			l.mu.Lock()
			l.verified[outcome]++
			l.mu.Unlock()
		})
	}
	l.refreshCodes()
	l.every(20*time.Second, l.refreshCodes)
	var n atomic.Int64
	l.every(submitEvery, func() { l.hubOp(int(n.Add(1))) })
}

// refreshCodes fetches every enrolled person's current code (codes live 60
// seconds); a home node that does not answer leaves the old one.
func (l *load) refreshCodes() {
	for _, r := range l.persons {
		if c := l.f.code(r); c != "" {
			l.mu.Lock()
			l.codes[r] = c
			l.mu.Unlock()
		}
	}
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) now() int64 { return int64(time.Since(l.start)) }

// hubOp appends a fresh keyed envelope through a random member and, every
// readEveryNth time it is acknowledged, reads that member's log up to the
// envelope's index: the prefix is the log as it stood when the envelope
// committed, so the read is linearizable whichever member served it.
// A submit that fails is of unknown outcome: porcupine may place it
// anywhere after its call, or nowhere, but never twice.
func (l *load) hubOp(n int) {
	m := rand.Intn(len(hubs))
	key := fmt.Sprintf("k%d", l.keys.Add(1))
	env, err := exchange.SealRiskAreas(l.f.signers["province-110000"], &exchange.RiskAreas{Iss: "110000", At: time.Now().Unix(),
		Areas: []exchange.RiskArea{{Div: "110101", Level: exchange.RiskMedium, From: 1_600_000_000 + l.keys.Load()}}})
	if err != nil {
		l.f.t.Errorf("seal %s: %v", key, err)
		return
	}
	hub := l.f.hub("province-110000").Member(m)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	call := l.now()
	r, err := hub.Submit(ctx, env)
	l.mu.Lock()
	l.keyEnv[key] = env
	if err != nil {
		l.hubOps = append(l.hubOps, porcupine.Operation{ClientId: n, Input: linmodel.Input{Key: key}, Output: linmodel.Output{Unknown: true}, Call: call, Return: 1 << 62})
		l.mu.Unlock()
		return
	}
	l.submitIx[len(l.hubOps)] = r.Index
	l.hubOps = append(l.hubOps, porcupine.Operation{ClientId: n, Input: linmodel.Input{Key: key}, Output: linmodel.Output{Index: r.Index}, Call: call, Return: l.now()})
	l.mu.Unlock()
	if n%readEveryNth != 0 {
		return
	}
	log, ok := l.readMember(ctx, m, r.Index+1)
	if !ok {
		return // a failed read has no effect
	}
	l.mu.Lock()
	l.hubOps = append(l.hubOps, porcupine.Operation{ClientId: n, Input: linmodel.Input{Read: true}, Output: linmodel.Output{Log: l.project(log)}, Call: call, Return: l.now()})
	l.mu.Unlock()
}

// readMember reads member m's log until it holds size entries (the load's
// copy grows by the pages read) and answers its first size entries.
func (l *load) readMember(ctx context.Context, m int, size uint64) ([]string, bool) {
	hub := l.f.hub("province-310000").Member(m)
	for {
		l.mu.Lock()
		have := uint64(len(l.cache[m]))
		l.mu.Unlock()
		if have >= size {
			l.mu.Lock()
			defer l.mu.Unlock()
			return append([]string(nil), l.cache[m][:size]...), true
		}
		es, err := hub.Entries(ctx, have, 1000, time.Second)
		if err != nil {
			return nil, false
		}
		l.mu.Lock()
		if uint64(len(l.cache[m])) == have && es.Start == have {
			l.cache[m] = append(l.cache[m], es.Entries...)
		}
		l.mu.Unlock()
	}
}

// project is the load's keys among log's entries, in order. l.mu held.
func (l *load) project(log []string) []string {
	keyOf := make(map[string]string, len(l.keyEnv))
	for k, e := range l.keyEnv {
		keyOf[e] = k
	}
	keys := []string{}
	for _, e := range log {
		if k, ok := keyOf[e]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// errorCode shortens an error answer "422 {"error":{"code":"x",…}}" to
// "422 x".
func errorCode(why string) string {
	st, body, _ := strings.Cut(why, " ")
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) == nil && e.Error.Code != "" {
		return st + " " + e.Error.Code
	}
	return st
}

// checkResult is what the checks after one fault found.
type checkResult struct {
	acked, lost, unknown int
	dupSeq, dupN         int
	hubOps, hubUnknown   int           // operations in the hub history; submits of unknown outcome
	converge             time.Duration // every province answers the same colour for every sampled person
	entries              uint64
}

// check runs every check after a fault has healed (the load stopped): no
// acknowledged write lost, no duplicate, the hub history linearizable,
// the same colour everywhere, consistent checkpoints. Failures are test
// errors naming the fault.
func (l *load) check(fault string, limit time.Duration) checkResult {
	var res checkResult
	// The same colour everywhere: each province's answer for every sampled
	// person equals the home node's, which equals what was acknowledged.
	start := time.Now()
	for {
		var diffs []string
		for _, r := range l.persons {
			code := l.f.code(r)
			own, why := l.f.ownColour(r.home, r.sub)
			if code == "" || why != "" {
				diffs = append(diffs, fmt.Sprintf("%s…: home %s does not answer (%s)", r.sub[:6], r.home, why))
				continue
			}
			l.mu.Lock()
			want, sure := hcx.Green, !l.uncertain[r]
			if l.red[r] {
				want = hcx.Red
			}
			l.mu.Unlock()
			if sure && own != want {
				diffs = append(diffs, fmt.Sprintf("%s… at home %s: %s, acknowledged %s", r.sub[:6], r.home, own, want))
			}
			for _, p := range provinces {
				if c, why := l.f.verify(p, code); c != own {
					diffs = append(diffs, fmt.Sprintf("%s… at %s: %s%s, home says %s", r.sub[:6], p, c, why, own))
				}
			}
		}
		if len(diffs) == 0 {
			res.converge = time.Since(start)
			break
		}
		if time.Since(start) > limit {
			l.errorf("%s: provinces still disagree %v after the heal: %v", fault, limit, diffs)
			res.converge = time.Since(start)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// 0 acknowledged writes lost: every acknowledged result is in the hub's
	// view of its subject (what any other province is answered), and a
	// sample is red at its own node.
	l.mu.Lock()
	todo := append([]ack(nil), l.acked[l.checked:]...)
	l.checked = len(l.acked)
	res.unknown = l.unknown
	l.mu.Unlock()
	res.acked = len(todo)
	hub := l.f.hub("province-510000")
	var lost []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, a := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, a ack) {
			defer func() { <-sem; wg.Done() }()
			why := ""
			for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				ans, err := hub.Subject(ctx, a.sub)
				cancel()
				why = fmt.Sprintf("hub: %v", err)
				if err == nil {
					why = "hub: no red attestation from " + string(a.p)
					for _, at := range ans.Attestations {
						if at.Iss == a.p && at.Colour == hcx.Red {
							why = ""
						}
					}
				}
				if why == "" && (i%50 == 0 || i >= len(todo)-5) {
					if c, w := l.f.ownColour(a.p, a.sub); c != hcx.Red {
						why = fmt.Sprintf("own node: %s %s", c, w)
					}
				}
				if why == "" || time.Now().After(deadline) {
					break
				}
			}
			if why != "" {
				mu.Lock()
				lost = append(lost, fmt.Sprintf("%s (acked %s): %s", a.id, a.at.Format("15:04:05.000"), why))
				mu.Unlock()
			}
		}(i, a)
	}
	wg.Wait()
	res.lost = len(lost)
	if len(lost) > 0 {
		sort.Strings(lost)
		l.errorf("%s: %d of %d acknowledged writes lost: %v", fault, len(lost), len(todo), lost[:min(len(lost), 10)])
	}
	// The whole log, from every member: equal prefixes, no duplicates.
	logs := make([][]string, len(hubs))
	for m, h := range hubs {
		size := l.f.c.hubGauges(h)["hcx_hub_tree_size"]
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		log, ok := l.readMember(ctx, m, uint64(size))
		cancel()
		if !ok {
			l.errorf("%s: %s does not serve its log up to its tree size %d", fault, h, size)
		}
		logs[m] = log
	}
	var final []string
	for _, lg := range logs {
		if len(lg) > len(final) {
			final = lg
		}
	}
	for m, lg := range logs {
		for i := range lg {
			if lg[i] != final[i] {
				l.errorf("%s: %s's log differs from the longest at index %d", fault, hubs[m], i)
				break
			}
		}
	}
	res.entries = uint64(len(final))
	res.dupSeq, res.dupN = l.duplicates(fault, final)
	l.consistent(fault)
	res.hubOps, res.hubUnknown = l.linearizable(fault, final)
	for _, p := range provinces {
		if g := l.f.nodeGauges(p); g == nil {
			l.errorf("%s: node %s serves no metrics", fault, p)
		} else if g["hcx_node_log_forks_total"] != 0 {
			l.errorf("%s: node %s saw %d forks of the hub log", fault, p, g["hcx_node_log_forks_total"])
		}
	}
	return res
}

// checkpoint is member m's newest checkpoint, verified against the hub
// keys of the trust list (nil if it does not answer one).
func (l *load) checkpoint(m int) *exchange.Checkpoint {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	note, err := l.f.hub("province-310000").Member(m).Checkpoint(ctx)
	if err != nil {
		return nil
	}
	cp, err := exchange.VerifyCheckpoint(l.f.ts, note)
	if err != nil {
		l.errorf("%s's checkpoint: %v", hubs[m], err)
		return nil
	}
	return cp
}

// consistent fetches every member's checkpoint and checks a consistency
// proof, served by the larger one, between each pair.
func (l *load) consistent(fault string) {
	cps := make([]*exchange.Checkpoint, len(hubs))
	for m := range hubs {
		cps[m] = l.checkpoint(m)
	}
	for a := range cps {
		for b := range cps {
			ca, cb := cps[a], cps[b]
			if ca == nil || cb == nil || a == b || ca.Size > cb.Size || (ca.Size == cb.Size && a > b) {
				continue
			}
			if ca.Size == cb.Size {
				if !bytes.Equal(ca.Root, cb.Root) {
					l.errorf("%s: %s and %s sign different roots at size %d", fault, hubs[a], hubs[b], ca.Size)
				}
				continue
			}
			if ca.Size == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			p, err := l.f.hub("province-310000").Member(b).ConsistencyProof(ctx, ca.Size, cb.Size)
			cancel()
			if err == nil {
				err = proof.VerifyConsistency(exchange.LogHasher{}, ca.Size, cb.Size, p, ca.Root, cb.Root)
			}
			if err != nil {
				l.errorf("%s: %s's checkpoint (%d) and %s's (%d) are not consistent: %v", fault, hubs[a], ca.Size, hubs[b], cb.Size, err)
			}
		}
	}
	// Each node's view (its tree, checked against the checkpoint it holds
	// when its bundle header is verified) and the largest member
	// checkpoint's tree are one a prefix of the other: a node follows the
	// log's entries, so it may be ahead of the newest checkpoint.
	var top *exchange.Checkpoint
	var topM int
	for m, cp := range cps {
		if cp != nil && (top == nil || cp.Size > top.Size) {
			top, topM = cp, m
		}
	}
	for _, p := range provinces {
		vb, why := l.f.nodeView(p)
		if vb == nil {
			l.mu.Lock()
			l.noView[why]++
			l.mu.Unlock()
			continue
		}
		size := vb.Header.Size
		if top == nil || size == 0 || top.Size == 0 {
			continue
		}
		var err error
		if size == top.Size {
			if !bytes.Equal(vb.Root, top.Root) {
				err = fmt.Errorf("another root at size %d", size)
			}
		} else {
			small, big, smallRoot, bigRoot := size, top.Size, vb.Root, top.Root
			if size > top.Size {
				small, big, smallRoot, bigRoot = top.Size, size, top.Root, vb.Root
			}
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			var pr [][]byte
			if pr, err = l.f.hub("province-310000").Member(topM).ConsistencyProof(ctx, small, big); err == nil {
				err = proof.VerifyConsistency(exchange.LogHasher{}, small, big, pr, smallRoot, bigRoot)
			}
			cancel()
		}
		if err != nil {
			l.errorf("%s: node %s's view of the log (size %d) and %s's checkpoint (%d) are not consistent: %v", fault, p, size, hubs[topM], top.Size, err)
		}
		l.mu.Lock()
		l.views++
		l.mu.Unlock()
	}
}

// duplicates opens every colour batch in log and counts repeated
// (issuer, seq) and attestations (issuer, subject, n) that repeat with
// other content.
func (l *load) duplicates(fault string, log []string) (dupSeq, dupN int) {
	seqs := map[string]bool{}
	atts := map[string]hcx.Attestation{}
	for i, e := range log {
		env, err := exchange.Open(l.f.ts, e)
		if err != nil {
			l.errorf("%s: log entry %d does not open: %v", fault, i, err)
			continue
		}
		if env.Typ != exchange.TypBatch {
			continue
		}
		b, err := exchange.DecodeBatch(env)
		if err != nil {
			l.errorf("%s: log entry %d: %v", fault, i, err)
			continue
		}
		k := fmt.Sprintf("%s/%d", b.Iss, b.Seq)
		if seqs[k] {
			dupSeq++
		}
		seqs[k] = true
		for _, a := range b.Atts {
			k := fmt.Sprintf("%s/%s/%d", b.Iss, a.Subject, a.N)
			if old, ok := atts[k]; ok && (old.Colour != a.Colour || old.Eff != a.Eff || old.Exp != a.Exp) {
				dupN++
			}
			atts[k] = a
		}
	}
	if dupSeq+dupN > 0 {
		l.errorf("%s: %d repeated batch sequence numbers, %d attestation numbers reused with other content", fault, dupSeq, dupN)
	}
	return dupSeq, dupN
}

// linearizable checks the hub history so far, with a final read of the
// whole log: each acknowledged submit's index is mapped from the log's
// global index to its place among the load's keys (the other entries are
// the nodes' batches, invisible to the model), after checking that the
// log holds that envelope there.
func (l *load) linearizable(fault string, final []string) (ops, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hist := append([]porcupine.Operation(nil), l.hubOps...)
	keyOf := map[string]string{}
	for k, e := range l.keyEnv {
		keyOf[e] = k
	}
	mine := make([]uint64, len(final)+1) // mine[g]: the load's keys before global index g
	for g, e := range final {
		mine[g+1] = mine[g]
		if _, ok := keyOf[e]; ok {
			mine[g+1]++
		}
	}
	for i, g := range l.submitIx {
		key := hist[i].Input.(linmodel.Input).Key
		if g >= uint64(len(final)) || keyOf[final[g]] != key {
			l.errorf("%s: the hub answered index %d for %s, the log does not hold it there", fault, g, key)
			hist[i].Output = linmodel.Output{Index: 1 << 40}
			continue
		}
		hist[i].Output = linmodel.Output{Index: mine[g]}
	}
	hist = append(hist, porcupine.Operation{ClientId: -1, Input: linmodel.Input{Read: true}, Output: linmodel.Output{Log: l.project(final)}, Call: l.now(), Return: l.now() + 1})
	res := porcupine.CheckOperationsTimeout(linmodel.Model.ToModel(), hist, time.Minute)
	if res != porcupine.Ok {
		l.errorf("%s: the hub history of %d operations is %s (an unknown outcome counts as a failure)", fault, len(hist), res)
	}
	for _, op := range hist {
		if op.Output.(linmodel.Output).Unknown {
			unknown++
		}
	}
	return len(hist), unknown
}
