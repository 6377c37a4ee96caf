package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Check receipts across provinces (issue 11 item 4; docs/decisions.md
// "Issue 11: check receipts across provinces"; docs/protocol.md §3, 1.4).
//
// Sender: Verify of another province's code queues a receipt (a push on a
// bounded channel, like a local check). receiptLoop, every
// Config.ReceiptInterval, moves what is queued into per-province holds,
// and for each province whose box key the log has shown seals the held
// receipts (at most exchange.MaxReceipts per envelope) into a receipts
// envelope addressed to it, stored in the receipts outbox (rcptpub/) in a
// synced write; the publisher submits each until the hub acknowledges it.
// Receipts for a province without a box key are held up to ReceiptHold,
// then dropped and counted.
//
// Receiver: the follower opens a receipts envelope addressed to this
// province with the box key its kid names (old keys are kept) and stores
// each receipt of a resident held here as a check (chk/, checks.go), keyed
// by the log index and the receipt's place in the envelope, so a replayed
// log writes the same keys again.
//
// Box keys: generated at the first start, the private scalar kept sealed
// with the node's field cipher (boxkey/<kid>), the public half published in
// a box-key envelope (boxpub/ until acknowledged). Other provinces' newest
// box keys, read from the log, are kept in boxpeer/<iss>.
const (
	pBoxKey  = "boxkey/"  // boxkey/<kid> -> ownBoxKey (private scalar sealed with n.fields)
	pBoxPub  = "boxpub/"  // boxpub/<unix nanos, 20 digits> -> pendingBoxKey
	pBoxPeer = "boxpeer/" // boxpeer/<iss> -> peerBoxKey: the newest box key of each other province
	pRcptPub = "rcptpub/" // rcptpub/<unix nanos, 20 digits> -> pendingReceipts
)

// Bounds of the receipts sender.
const (
	receiptQueueLen = 8192
	// maxHeldReceipts bounds the receipts held in memory between intervals
	// and for provinces without a box key.
	maxHeldReceipts = 100_000
	// ReceiptHold is how long receipts for a province without a box key
	// are held before they are dropped.
	ReceiptHold = time.Hour
	// maxReceiptOutbox bounds the receipts envelopes waiting for the hub;
	// beyond it receipts stay held (and age out).
	maxReceiptOutbox = 256
)

// ownBoxKey is one of this node's box keys at rest.
type ownBoxKey struct {
	At     int64  `json:"at"`
	Sealed []byte `json:"sealed"`
}

// pendingBoxKey is a box-key envelope not yet acknowledged by the hub.
type pendingBoxKey struct {
	JWS string `json:"jws"`
	Pub []byte `json:"pub"`
}

// peerBoxKey is another province's newest box key, from the log.
type peerBoxKey struct {
	KID string `json:"kid"`
	Pub []byte `json:"pub"`
	At  int64  `json:"at"`
}

// pendingReceipts is a receipts envelope not yet acknowledged by the hub,
// with what it seals so it can be sealed again if the hub refuses its time.
type pendingReceipts struct {
	To       hcx.ProvinceCode   `json:"to"`
	KID      string             `json:"kid"`
	Pub      []byte             `json:"pub"`
	JWS      string             `json:"jws"`
	Receipts []exchange.Receipt `json:"receipts"`
}

type queuedReceipt struct {
	to     hcx.ProvinceCode
	r      exchange.Receipt
	queued time.Time
}

// receiptState is the node's part for receipts (a field of Node).
type receiptState struct {
	ch chan queuedReceipt

	rotateMu sync.Mutex // one rotation at a time
	keysMu   sync.RWMutex
	keys     map[string]*certs.BoxKey // this node's box keys by kid, old ones too
	ats      map[string]int64         // each key's at
	cur      string                   // kid of the newest
	curAt    int64                    // its at: a new key's at is later

	held  map[hcx.ProvinceCode][]queuedReceipt // receiptLoop's alone
	nHeld int

	queued, sent, dropped, received, ignored, undecryptable atomic.Uint64
}

// ReceiptStats are the receipts counters (also in /metrics).
type ReceiptStats struct {
	Queued, Sent, Dropped, Received, Ignored, Undecryptable uint64
}

// ReceiptStats reads the receipts counters.
func (n *Node) ReceiptStats() ReceiptStats {
	r := &n.rcpt
	return ReceiptStats{r.queued.Load(), r.sent.Load(), r.dropped.Load(), r.received.Load(), r.ignored.Load(), r.undecryptable.Load()}
}

func boxKeyAAD(kid string) []byte { return []byte(pBoxKey + kid) }

// loadBoxKeys reads this node's box keys at New, generating and queueing
// the publication of the first one on a new store. The committer is not
// running yet: the first key is written with a synced badger update.
func (n *Node) loadBoxKeys() error {
	r := &n.rcpt
	r.ch = make(chan queuedReceipt, receiptQueueLen)
	r.held = make(map[hcx.ProvinceCode][]queuedReceipt)
	r.keys = make(map[string]*certs.BoxKey)
	r.ats = make(map[string]int64)
	var newest int64
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pBoxKey), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			kid := string(it.Item().Key()[len(pBoxKey):])
			var o ownBoxKey
			if err := it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, &o) }); err != nil {
				return err
			}
			raw, err := n.fields.Open(o.Sealed, boxKeyAAD(kid))
			if err != nil {
				return fmt.Errorf("box key %s: %w", kid, err)
			}
			k, err := certs.ParseBoxKey(raw)
			if err != nil {
				return err
			}
			r.keys[kid], r.ats[kid] = k, o.At
			if o.At > newest || (o.At == newest && kid > r.cur) {
				newest, r.cur, r.curAt = o.At, kid, o.At
			}
		}
		return nil
	})
	if err != nil || len(r.keys) > 0 {
		return err
	}
	k, at, sets, err := n.newBoxKey(0)
	if err != nil {
		return err
	}
	if err := n.db.Update(func(txn *badger.Txn) error {
		for _, s := range sets {
			if err := txn.Set(s.k, s.v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	r.keys[k.KID()], r.ats[k.KID()], r.cur, r.curAt = k, at, k.KID(), at
	n.log.Info("box key generated", "kid", k.KID())
	return nil
}

// newBoxKey makes a box key, with an at later than after, and the writes
// that keep it (sealed) and queue its publication.
func (n *Node) newBoxKey(after int64) (*certs.BoxKey, int64, []kv, error) {
	k, err := certs.GenerateBoxKey()
	if err != nil {
		return nil, 0, nil, err
	}
	at := max(n.cfg.Now().Unix(), after+1)
	jws, err := exchange.SealBoxKey(n.cfg.Signer, at, k.Public())
	if err != nil {
		return nil, 0, nil, err
	}
	own, err := jsonMarshal(ownBoxKey{At: at, Sealed: n.fields.Seal(k.Bytes(), boxKeyAAD(k.KID()))})
	if err != nil {
		return nil, 0, nil, err
	}
	pub, err := jsonMarshal(pendingBoxKey{JWS: jws, Pub: k.Public()})
	if err != nil {
		return nil, 0, nil, err
	}
	return k, at, []kv{{k: []byte(pBoxKey + k.KID()), v: own}, {k: []byte(fmt.Sprintf("%s%020d", pBoxPub, time.Now().UnixNano())), v: pub}}, nil
}

// RotateBoxKey makes a new box key, published like the first; the old keys
// stay to open receipts sealed to them. It returns the new key's kid.
func (n *Node) RotateBoxKey() (string, error) {
	n.rcpt.rotateMu.Lock()
	defer n.rcpt.rotateMu.Unlock()
	n.rcpt.keysMu.RLock()
	after := n.rcpt.curAt
	n.rcpt.keysMu.RUnlock()
	k, at, sets, err := n.newBoxKey(after)
	if err != nil {
		return "", err
	}
	w := &write{system: "boxkey"}
	for _, s := range sets {
		w.set(string(s.k), s.v)
	}
	if err := n.write(w); err != nil {
		return "", err
	}
	n.rcpt.keysMu.Lock()
	n.rcpt.keys[k.KID()], n.rcpt.ats[k.KID()], n.rcpt.cur, n.rcpt.curAt = k, at, k.KID(), at
	n.rcpt.keysMu.Unlock()
	n.pokePublisher()
	return k.KID(), nil
}

// Box-key lifetimes (docs/decisions.md, "check receipts across
// provinces": retention). Sealed receipts stay in the hub's log for good;
// destroying the private key they were sealed to is what deletes them.
const (
	// BoxKeyLifetime is how long a box key is the one senders seal to
	// before the node rotates it.
	BoxKeyLifetime = 7 * 24 * time.Hour
	// BoxKeyKeep is how long a superseded box key is kept: the 30 days a
	// check is shown, plus a day for receipts sealed to it late (held for
	// a province, or sealed before the sender read the new key).
	BoxKeyKeep = CheckRetention + 24*time.Hour
)

// MaintainBoxKeys rotates the box key once it is BoxKeyLifetime old and
// destroys each superseded key BoxKeyKeep after its successor's at, by the
// node's clock: receipts sealed to a destroyed key can no longer be opened
// by anyone, so a check's receipt in the log becomes unreadable at most
// BoxKeyLifetime + BoxKeyKeep after it was sealed. It reports how many
// keys it destroyed. receiptLoop calls it every ReceiptInterval.
func (n *Node) MaintainBoxKeys() (int, error) {
	now := n.cfg.Now().Unix()
	n.rcpt.keysMu.RLock()
	rotate := now-n.rcpt.curAt >= int64(BoxKeyLifetime/time.Second)
	n.rcpt.keysMu.RUnlock()
	if rotate {
		if _, err := n.RotateBoxKey(); err != nil {
			return 0, err
		}
	}
	n.rcpt.rotateMu.Lock()
	defer n.rcpt.rotateMu.Unlock()
	n.rcpt.keysMu.RLock()
	var doomed []string
	for kid, at := range n.rcpt.ats {
		if kid == n.rcpt.cur {
			continue
		}
		// The key's successor: the earliest key with a later at.
		next := int64(0)
		for _, b := range n.rcpt.ats {
			if b > at && (next == 0 || b < next) {
				next = b
			}
		}
		if next != 0 && now-next >= int64(BoxKeyKeep/time.Second) {
			doomed = append(doomed, kid)
		}
	}
	n.rcpt.keysMu.RUnlock()
	if len(doomed) == 0 {
		return 0, nil
	}
	w := &write{system: "boxkey"}
	for _, kid := range doomed {
		w.del([]byte(pBoxKey + kid))
	}
	if err := n.write(w); err != nil {
		return 0, err
	}
	n.rcpt.keysMu.Lock()
	for _, kid := range doomed {
		delete(n.rcpt.keys, kid)
		delete(n.rcpt.ats, kid)
	}
	n.rcpt.keysMu.Unlock()
	n.log.Info("superseded box keys destroyed: receipts sealed to them can no longer be opened", "keys", len(doomed))
	return len(doomed), nil
}

// BoxKID is the kid of this node's newest box key.
func (n *Node) BoxKID() string {
	n.rcpt.keysMu.RLock()
	defer n.rcpt.keysMu.RUnlock()
	return n.rcpt.cur
}

func (n *Node) boxKey(kid string) *certs.BoxKey {
	n.rcpt.keysMu.RLock()
	defer n.rcpt.keysMu.RUnlock()
	return n.rcpt.keys[kid]
}

// checkOf is the check the caller in ctx makes at at, seeing col; false for
// a caller whose verifications are not checks (a resident, a feed).
func checkOf(ctx context.Context, at time.Time, col hcx.Colour) (Check, bool) {
	if !auth.InContext(ctx) {
		return Check{}, false
	}
	p := auth.FromContext(ctx)
	c := Check{At: at.UTC(), Province: p.Province, Role: string(p.Role), Colour: col}
	switch p.Role {
	case auth.RoleCheckpoint:
		c.Unit = p.Name
	case auth.RoleOperator:
		c.Unit = "operator"
	default:
		return Check{}, false
	}
	return c, true
}

// queueReceipt queues, without waiting, a receipt for province to of a
// verification of sub's code by the caller in ctx; a full queue drops it
// and counts it.
func (n *Node) queueReceipt(ctx context.Context, to hcx.ProvinceCode, sub hcx.Subject, at time.Time, col hcx.Colour) {
	if n.closing.Load() {
		return
	}
	c, ok := checkOf(ctx, at, col)
	if !ok {
		return
	}
	if len(c.Unit) > exchange.MaxReceiptUnit {
		c.Unit = truncUTF8(c.Unit, exchange.MaxReceiptUnit)
	}
	q := queuedReceipt{to: to, queued: at, r: exchange.Receipt{Sub: sub, At: at.Unix(), Unit: c.Unit, Role: c.Role, Colour: col, Div: c.Division}}
	select {
	case n.rcpt.ch <- q:
		n.rcpt.queued.Add(1)
	default:
		n.rcpt.dropped.Add(1)
	}
}

func truncUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// receiptLoop seals what is queued every ReceiptInterval, and once more
// when ctx ends (what is held for provinces without a box key is lost
// then; see the decisions).
func (n *Node) receiptLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.ReceiptInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			n.SendReceipts()
			return
		case <-tick.C:
			n.SendReceipts()
			if _, err := n.MaintainBoxKeys(); err != nil && ctx.Err() == nil {
				n.log.Error("rotating or destroying box keys failed; will retry", "err", err)
			}
		}
	}
}

// SendReceipts moves the queued receipts into the holds and seals what is
// held for each province with a box key into the receipts outbox. It
// returns how many receipts it sealed. receiptLoop calls it; tests may too,
// but never concurrently with a running loop.
func (n *Node) SendReceipts() int {
	r := &n.rcpt
	now := n.cfg.Now()
drain:
	for {
		select {
		case q := <-r.ch:
			if r.nHeld >= maxHeldReceipts {
				r.dropped.Add(1)
				continue
			}
			r.held[q.to] = append(r.held[q.to], q)
			r.nHeld++
		default:
			break drain
		}
	}
	if r.nHeld == 0 {
		return 0
	}
	outbox := n.receiptOutboxLen()
	sealed := 0
	for to, qs := range r.held {
		// Drop what has waited too long (for a box key, or for room in
		// the outbox).
		keep := qs[:0]
		for _, q := range qs {
			if now.Sub(q.queued) > ReceiptHold {
				r.dropped.Add(1)
				r.nHeld--
				continue
			}
			keep = append(keep, q)
		}
		qs = keep
		var peer peerBoxKey
		found := false
		if len(qs) > 0 && outbox < maxReceiptOutbox {
			var err error
			found, err = n.readJSON(pBoxPeer+string(to), &peer)
			if err != nil {
				n.log.Warn("read a province's box key", "to", to, "err", err)
			}
		}
		for found && len(qs) > 0 && outbox < maxReceiptOutbox {
			k := min(len(qs), exchange.MaxReceipts)
			rs := make([]exchange.Receipt, k)
			for i := range rs {
				rs[i] = qs[i].r
			}
			jws, err := exchange.SealReceipts(n.cfg.Signer, to, now.Unix(), peer.KID, peer.Pub, rs)
			for errors.Is(err, exchange.ErrReceiptsTooBig) && k > 1 {
				k /= 2
				rs = rs[:k]
				jws, err = exchange.SealReceipts(n.cfg.Signer, to, now.Unix(), peer.KID, peer.Pub, rs)
			}
			if err == nil {
				w := &write{system: "receipts"}
				if err = w.setJSON(fmt.Sprintf("%s%020d", pRcptPub, time.Now().UnixNano()), &pendingReceipts{To: to, KID: peer.KID, Pub: peer.Pub, JWS: jws, Receipts: rs}); err == nil {
					err = n.write(w)
				}
			}
			if err != nil {
				// Kept for the next interval (and dropped after ReceiptHold).
				n.log.Warn("seal receipts", "to", to, "receipts", k, "err", err)
				break
			}
			qs = qs[k:]
			r.nHeld -= k
			sealed += k
			outbox++
		}
		if len(qs) == 0 {
			delete(r.held, to)
		} else {
			r.held[to] = append([]queuedReceipt(nil), qs...)
		}
	}
	if sealed > 0 {
		n.pokePublisher()
	}
	return sealed
}

func (n *Node) readJSON(key string, v any) (bool, error) {
	var found bool
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		found, err = getJSON(txn, key, v)
		return err
	})
	return found, err
}

func (n *Node) receiptOutboxLen() int {
	c := 0
	_ = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pRcptPub)})
		defer it.Close()
		for it.Rewind(); it.Valid() && c < maxReceiptOutbox; it.Next() {
			c++
		}
		return nil
	})
	return c
}

// PendingReceipts is how many receipts envelopes (and box-key envelopes)
// wait for the hub.
func (n *Node) PendingReceipts() int {
	return n.receiptOutboxLen() + n.countPrefix(pBoxPub)
}

// publishPendingReceipts submits the stored box-key and receipts envelopes
// in order, each removed once the hub acknowledges it. One the hub refuses
// for its time (clock_skew, after a long outage) is sealed again with the
// clock as it is now.
func (n *Node) publishPendingReceipts(ctx context.Context) error {
	err := publishOutbox(ctx, n, pBoxPub, "receipts", "box key", func(*pendingBoxKey) { n.log.Info("box key published") })
	if err != nil {
		return err
	}
	return publishOutbox(ctx, n, pRcptPub, "receipts", "receipts", func(p *pendingReceipts) {
		n.rcpt.sent.Add(uint64(len(p.Receipts)))
		n.log.Info("receipts published", "to", p.To, "receipts", len(p.Receipts))
	})
}

func (p *pendingBoxKey) envelope() string { return p.JWS }
func (p *pendingBoxKey) resign(n *Node, at int64) (err error) {
	p.JWS, err = exchange.SealBoxKey(n.cfg.Signer, at, p.Pub)
	return err
}

func (p *pendingReceipts) envelope() string { return p.JWS }
func (p *pendingReceipts) resign(n *Node, at int64) (err error) {
	p.JWS, err = exchange.SealReceipts(n.cfg.Signer, p.To, at, p.KID, p.Pub, p.Receipts)
	return err
}

// applyBoxKey keeps another province's box key from the log if it is newer
// than the one kept.
func (n *Node) applyBoxKey(w *followTxn, env *exchange.Envelope) error {
	k, err := exchange.DecodeBoxKey(env)
	if err != nil {
		return err
	}
	if k.Iss == n.cfg.Province {
		return nil
	}
	var cur peerBoxKey
	found, err := getJSON(w.txn, pBoxPeer+string(k.Iss), &cur)
	if err != nil {
		return stored(err)
	}
	if found && cur.At >= k.At {
		return nil
	}
	v, err := jsonMarshal(peerBoxKey{KID: k.KID, Pub: k.PubBytes(), At: k.At})
	if err != nil {
		return stored(err)
	}
	return stored(w.set([]byte(pBoxPeer+string(k.Iss)), v))
}

// applyReceipts stores the receipts of a receipts envelope addressed to
// this province as checks of the residents it holds. An envelope that does
// not open is logged and counted, and the follower goes on.
func (n *Node) applyReceipts(w *followTxn, idx uint64, env *exchange.Envelope) error {
	r, err := exchange.DecodeReceipts(env)
	if err != nil {
		return err
	}
	if r.To != n.cfg.Province {
		return nil
	}
	k := n.boxKey(r.KID)
	if k == nil {
		n.rcpt.undecryptable.Add(1)
		n.log.Warn("receipts sealed to a box key this node does not have", "index", idx, "from", r.Iss, "kid", r.KID)
		return nil
	}
	rs, err := r.Open(k)
	if err != nil {
		n.rcpt.undecryptable.Add(1)
		n.log.Warn("receipts that do not open", "index", idx, "from", r.Iss, "err", err)
		return nil
	}
	cut := n.cfg.Now().Add(-CheckRetention)
	for i, rc := range rs {
		at := time.Unix(rc.At, 0).UTC()
		if at.Before(cut) {
			n.rcpt.ignored.Add(1)
			continue
		}
		if _, err := w.txn.Get([]byte(pResident + string(rc.Sub))); errors.Is(err, badger.ErrKeyNotFound) {
			n.rcpt.ignored.Add(1)
			continue
		} else if err != nil {
			return stored(err)
		}
		v, err := jsonMarshal(&Check{At: at, Province: r.Iss, Division: rc.Div, Unit: rc.Unit, Role: rc.Role, Colour: rc.Colour})
		if err != nil {
			return stored(err)
		}
		key := checkKey(rc.Sub, at, receiptSeq(idx, i))
		// A replayed entry rewrites the same key: it counts nothing new.
		_, err = w.txn.Get(key)
		again := err == nil
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return stored(err)
		}
		e := badger.NewEntry(key, v)
		e.ExpiresAt = uint64(max(at.Add(CheckRetention).Unix(), 1))
		if err := w.setEntry(e); err != nil {
			return stored(err)
		}
		n.rcpt.received.Add(1)
		if !again {
			// Counted once the transaction holding the key commits
			// (followTxn.counted): a failed, retried write counts once.
			w.count(at, StatAway, string(r.Iss))
			w.count(at, StatAwayCol, string(rc.Colour))
		}
	}
	return nil
}

// receiptSeq is the last part of a received check's key: a function of
// where the receipt is in the log, so a re-applied entry rewrites the
// same key.
func receiptSeq(idx uint64, i int) uint32 {
	h := fnv.New32a()
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], idx)
	binary.BigEndian.PutUint32(b[8:], uint32(i))
	h.Write(b[:])
	return h.Sum32()
}

// setEntry is set for an entry with options (expiry).
func (w *followTxn) setEntry(e *badger.Entry) error {
	err := w.txn.SetEntry(e)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err := w.commit(); err != nil {
			return err
		}
		again := badger.NewEntry(e.Key, e.Value)
		again.ExpiresAt = e.ExpiresAt
		err = w.txn.SetEntry(again)
	}
	return err
}

// receiptMetrics registers the receipts counters (counts only).
func (n *Node) receiptMetrics(s metricSet) {
	r := &n.rcpt
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"hcx_node_receipts_queued_total", "Checks of other provinces' codes queued to be sent to their home province.", &r.queued},
		{"hcx_node_receipts_sent_total", "Receipts in receipts envelopes acknowledged by the hub.", &r.sent},
		{"hcx_node_receipts_dropped_total", "Receipts not sent: queue full, held past the hold without a box key, or too many held.", &r.dropped},
		{"hcx_node_receipts_received_total", "Receipts from other provinces stored as checks of this node's residents.", &r.received},
		{"hcx_node_receipts_ignored_total", "Receipts from other provinces for subjects not held here or older than the retention.", &r.ignored},
		{"hcx_node_receipts_undecryptable_total", "Receipts envelopes addressed to this province that did not open.", &r.undecryptable},
	} {
		s.counter(c.name, c.help, c.v.Load)
	}
	s.gauge("hcx_node_receipts_envelopes_pending", "Box-key and receipts envelopes not yet acknowledged by the hub.", func() float64 { return float64(n.PendingReceipts()) })
}
