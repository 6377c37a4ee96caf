package node

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/exchange"
)

// Logged trail heads (docs/decisions.md, "Issue 13: the operator trail is
// append-only"). Every Config.AuditHeadEvery, if the trail grew since the
// last head it sealed, the node signs its trail's head as a log envelope
// (exchange.AuditHead) and stores it in one commit with the record of what
// it sealed; the publisher submits it like every outboxed envelope until
// the hub acknowledges it. So a restart neither loses a head nor seals the
// same one again, and the hub refuses a head that takes the trail back.

const (
	pHeadPub      = "headpub/"               // headpub/<unix nanos, 20 digits> -> pendingAuditHead
	kHeadSealed   = "meta/audit-head-sealed" // sealedHead: the last head signed for the log
	systemHeadPub = "audithead"
)

// DefaultAuditHeadEvery is how often a node logs its trail head when
// Config.AuditHeadEvery is 0.
const DefaultAuditHeadEvery = 10 * time.Minute

// pendingAuditHead is a signed trail head waiting for the hub.
type pendingAuditHead struct {
	JWS  string `json:"jws"`
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// sealedHead is the last trail head the node signed for the log, and when.
type sealedHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	At   int64  `json:"at"` // Unix seconds
}

func (p *pendingAuditHead) envelope() string { return p.JWS }
func (p *pendingAuditHead) resign(n *Node, at int64) (err error) {
	p.JWS, err = exchange.SealAuditHead(n.cfg.Signer, at, p.Seq, p.Hash)
	return err
}

// publishAuditHead seals the trail's head when AuditHeadEvery has passed
// since the last one sealed and the trail grew since, then submits the
// heads waiting for the hub.
func (n *Node) publishAuditHead(ctx context.Context) error {
	if n.cfg.AuditHeadEvery < 0 {
		return nil
	}
	if err := n.sealAuditHead(); err != nil {
		return err
	}
	return publishOutbox(ctx, n, pHeadPub, systemHeadPub, "trail head", func(p *pendingAuditHead) {
		n.metrics.auditHeadLogged.Store(p.Seq)
		n.log.Info("trail head logged", "seq", p.Seq)
	})
}

// sealAuditHead stores a signed head of the trail, with the record of it,
// if one is due.
func (n *Node) sealAuditHead() error {
	now := n.cfg.Now()
	if last := n.headSealedAt.Load(); last != 0 && now.Sub(time.Unix(last, 0)) < n.cfg.AuditHeadEvery {
		return nil
	}
	var (
		last  sealedHead
		found bool
		head  AuditHead
	)
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		if found, err = getJSON(txn, kHeadSealed, &last); err != nil {
			return err
		}
		next, h, err := loadAuditHead(txn)
		head = AuditHead{Seq: next - 1, Hash: hex.EncodeToString(h[:])}
		return err
	})
	if err != nil {
		return fmt.Errorf("read the trail head: %w", err)
	}
	if found {
		n.headSealedAt.Store(last.At)
		if now.Sub(time.Unix(last.At, 0)) < n.cfg.AuditHeadEvery {
			return nil
		}
	}
	if head.Seq == 0 || (found && head.Seq <= last.Seq) {
		return nil // nothing new to vouch for
	}
	at := now.Unix()
	jws, err := exchange.SealAuditHead(n.cfg.Signer, at, head.Seq, head.Hash)
	if err != nil {
		return fmt.Errorf("seal the trail head: %w", err)
	}
	w := &write{system: systemHeadPub}
	if err := w.setJSON(fmt.Sprintf("%s%020d", pHeadPub, now.UnixNano()), &pendingAuditHead{JWS: jws, Seq: head.Seq, Hash: head.Hash}); err != nil {
		return err
	}
	if err := w.setJSON(kHeadSealed, &sealedHead{Seq: head.Seq, Hash: head.Hash, At: at}); err != nil {
		return err
	}
	if err := n.write(w); err != nil {
		return fmt.Errorf("store the trail head: %w", err)
	}
	n.headSealedAt.Store(at)
	return nil
}

// loadHeadLogged sets the metric of the last logged trail head at open: the
// last head sealed, if none waits for the hub. A node that never sealed one
// seals its first AuditHeadEvery after it opened, like every later one.
func (n *Node) loadHeadLogged(txn *badger.Txn) error {
	var last sealedHead
	found, err := getJSON(txn, kHeadSealed, &last)
	if err != nil || !found {
		n.headSealedAt.Store(n.cfg.Now().Unix())
		return err
	}
	n.headSealedAt.Store(last.At)
	if countPrefix(txn, pHeadPub) == 0 {
		n.metrics.auditHeadLogged.Store(last.Seq)
	}
	return nil
}
