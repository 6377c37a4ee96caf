package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/exchange"
)

// The outboxes: envelopes a node signed, stored in the same synced commit
// as what they announce (a risk area, an exposure, a box key, sealed
// receipts) and submitted to the hub in order until it acknowledges each.
// One loop serves every kind.

// outboxed is a stored envelope waiting for the hub: the exact JWS to
// submit, and its content signed again at a new time after the hub refused
// the first for its time (clock_skew, after a long outage).
type outboxed interface {
	envelope() string
	resign(n *Node, at int64) error
}

// publishOutbox submits the envelopes stored under prefix in order, each
// removed once the hub acknowledges it; sent is told of each. One refused
// for its time is signed again with the clock as it is now and stored in
// its place, and publishOutbox returns (the publisher retries). what names
// the kind in errors; system the writes in the audit's background list.
func publishOutbox[T any, P interface {
	*T
	outboxed
}](ctx context.Context, n *Node, prefix, system, what string, sent func(P)) error {
	for ctx.Err() == nil {
		var key []byte
		p := P(new(T))
		err := n.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
			defer it.Close()
			it.Rewind()
			if !it.Valid() {
				return nil
			}
			key = it.Item().KeyCopy(nil)
			return it.Item().Value(func(v []byte) error { return jsonUnmarshal(v, p) })
		})
		if err != nil {
			return fmt.Errorf("read the %s outbox: %w", what, err)
		}
		if key == nil {
			return nil
		}
		_, err = n.cfg.Hub.Submit(ctx, p.envelope())
		var apiErr *exchange.APIError
		if errors.As(err, &apiErr) && apiErr.Code == "clock_skew" {
			if serr := p.resign(n, n.cfg.Now().Unix()); serr != nil {
				return serr
			}
			w := &write{system: system}
			if serr := w.setJSON(string(key), p); serr != nil {
				return serr
			}
			if serr := n.write(w); serr != nil {
				return serr
			}
			return fmt.Errorf("%s envelope refused for its time (check this node's clock); signed again: %w", what, err)
		}
		if err != nil {
			return fmt.Errorf("publish %s: %w", what, err)
		}
		if err := n.write(&write{system: system, dels: [][]byte{key}}); err != nil {
			return err
		}
		sent(p)
	}
	return ctx.Err()
}

// countPrefix counts the keys under p (an outbox's length, for /metrics).
func (n *Node) countPrefix(p string) int {
	c := 0
	_ = n.db.View(func(txn *badger.Txn) error { c = countPrefix(txn, p); return nil })
	return c
}
