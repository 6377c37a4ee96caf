package node

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// maxEventsPerClass bounds a resident's history: of each class of event
// (positive PCR, positive antigen, negative PCR and negative antigen results;
// close-contact flags; declarations; vaccinations; stays; check-ins) a
// resident keeps the newest maxEventsPerClass. Every "latest" time the rules
// read stays exact; counts, negatives since an anchor included, are exact up
// to this bound and saturate at it (docs/decisions.md, "Ingest"). Orders are
// kept by id, at most maxOrders, the oldest lifted ones dropped first.
const (
	maxEventsPerClass = 32
	maxOrders         = 16
	// maxStays bounds stays apart: an itinerary has one per division
	// and day, and the rules look back 14 days, so 32 would lose a
	// traveller's risky stay ten days ago behind two cities a day.
	maxStays = 128
)

// TrajectoryRetention is how long stays (travel records) are kept: they are
// trajectory data, deleted after 60 days (DESIGN.md §7).
const TrajectoryRetention = 60 * 24 * time.Hour

// history is a resident's bounded event history, stored under hist/<sub> as
// one value (historycodec.go): what every decision reads, in one get. Every
// list is oldest first.
type history struct {
	Labs         []policy.LabResult
	Contacts     []policy.ContactFlag
	Declarations []policy.Declaration
	Vaccinations []policy.Vaccination
	Travel       []policy.TravelRecord
	Orders       []policy.Order
	CheckIns     []policy.CheckIn
	// Venues are venue exposures (exposures.go), one per exposure the
	// resident scanned into, at most maxVenueExposures.
	Venues []policy.VenueExposure
	// Recorded counts every event ever recorded, Dropped those the bound
	// has dropped since.
	Recorded, Dropped uint64
}

// labClass is a lab result's class for the bound.
func labClass(l *policy.LabResult) int {
	c := 0
	if l.Positive {
		c = 2
	}
	if l.Kind == "antigen" {
		c++
	}
	return c
}

// add records ev and drops what falls past the bound. An event older than the
// newest maxEventsPerClass of its class is counted and dropped at once. An
// order replaces the order with the same id (its confirmations and lifting
// arrive as new versions of it).
func (h *history) add(ev *Event) {
	h.Recorded++
	switch {
	case ev.Lab != nil:
		h.Labs = insertByTime(h.Labs, *ev.Lab, func(l *policy.LabResult) time.Time { return l.At })
		// Drop the oldest of each class over the bound.
		var over [4]int
		for j := range h.Labs {
			over[labClass(&h.Labs[j])]++
		}
		for c := range over {
			over[c] -= maxEventsPerClass
		}
		keep := h.Labs[:0]
		for _, l := range h.Labs {
			if c := labClass(&l); over[c] > 0 {
				over[c]--
				continue
			}
			keep = append(keep, l)
		}
		h.Dropped += uint64(len(h.Labs) - len(keep))
		h.Labs = keep
	case ev.Contact != nil:
		h.Contacts = bounded(h, insertByTime(h.Contacts, *ev.Contact, func(c *policy.ContactFlag) time.Time { return c.At }))
	case ev.Declaration != nil:
		h.Declarations = bounded(h, insertByTime(h.Declarations, *ev.Declaration, func(d *policy.Declaration) time.Time { return d.At }))
	case ev.Vaccination != nil:
		h.Vaccinations = bounded(h, insertByTime(h.Vaccinations, *ev.Vaccination, func(v *policy.Vaccination) time.Time { return v.At }))
	case ev.Travel != nil:
		h.Travel = boundedTo(h, insertByTime(h.Travel, *ev.Travel, func(t *policy.TravelRecord) time.Time { return t.At }), maxStays)
	case ev.CheckIn != nil:
		h.CheckIns = bounded(h, insertByTime(h.CheckIns, *ev.CheckIn, func(c *policy.CheckIn) time.Time { return c.At }))
	case ev.Order != nil:
		h.Recorded-- // a new version of an order is not a new event
		for i := range h.Orders {
			if h.Orders[i].ID == ev.Order.ID {
				h.Orders[i] = *ev.Order
				return
			}
		}
		h.Recorded++
		h.Orders = insertByTime(h.Orders, *ev.Order, func(o *policy.Order) time.Time { return o.At })
		for len(h.Orders) > maxOrders {
			drop := 0 // the oldest lifted order, else the oldest
			for i := range h.Orders {
				if h.Orders[i].Lifted {
					drop = i
					break
				}
			}
			h.Orders = slices.Delete(h.Orders, drop, drop+1)
			h.Dropped++
		}
	}
}

// bounded keeps the newest maxEventsPerClass of s, counting the rest as
// dropped.
func bounded[T any](h *history, s []T) []T { return boundedTo(h, s, maxEventsPerClass) }

// boundedTo keeps the newest max of s, counting the rest as dropped.
func boundedTo[T any](h *history, s []T, max int) []T {
	if over := len(s) - max; over > 0 {
		h.Dropped += uint64(over)
		return s[over:]
	}
	return s
}

// expire drops stays older than TrajectoryRetention at now: trajectory data
// is not kept past it, whatever the bound. It reports whether it dropped any.
func (h *history) expire(now time.Time) bool {
	cut := now.Add(-TrajectoryRetention)
	i := 0
	for i < len(h.Travel) && h.Travel[i].At.Before(cut) {
		i++
	}
	h.Travel = h.Travel[i:]
	j := 0
	for j < len(h.Venues) && h.Venues[j].At.Before(cut) {
		j++
	}
	h.Venues = h.Venues[j:]
	return i > 0 || j > 0
}

// insertByTime inserts v into s, which is oldest first, after every element
// of the same time.
func insertByTime[T any](s []T, v T, at func(*T) time.Time) []T {
	t := at(&v)
	i := sort.Search(len(s), func(i int) bool { return at(&s[i]).After(t) })
	return slices.Insert(s, i, v)
}

func histKey(sub hcx.Subject) string { return pHistory + string(sub) }

// loadHistory reads a resident's history; an empty one if there is none.
func loadHistory(txn *badger.Txn, sub hcx.Subject) (*history, error) {
	h := &history{}
	item, err := txn.Get([]byte(histKey(sub)))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return h, nil
	}
	if err == nil {
		err = item.Value(h.UnmarshalBinary)
	}
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", sub, err)
	}
	return h, nil
}

// loadFacts reads the facts the rules decide a resident's colour from: one
// bounded value, whatever the length of the resident's past. It is for
// decisions that add no event (re-deciding a resident); Ingest reads the
// history itself, to add the event to it.
func loadFacts(txn *badger.Txn, sub hcx.Subject) (*policy.Facts, error) {
	h, err := loadHistory(txn, sub)
	if err != nil {
		return nil, err
	}
	return h.facts(), nil
}

// factsFrom is loadFacts through an iterator that may serve many residents
// (one iterator per chunk of a bulk re-decision: creating one costs more
// than reading a history).
func factsFrom(it *badger.Iterator, sub hcx.Subject) (*policy.Facts, error) {
	key := []byte(histKey(sub))
	it.Seek(key)
	if !it.Valid() || !bytes.Equal(it.Item().Key(), key) {
		return (&history{}).facts(), nil
	}
	h := &history{}
	if err := it.Item().Value(h.UnmarshalBinary); err != nil {
		return nil, fmt.Errorf("history of %s: %w", sub, err)
	}
	return h.facts(), nil
}

func (h *history) facts() *policy.Facts {
	return &policy.Facts{Labs: h.Labs, Contacts: h.Contacts, Declarations: h.Declarations, Vaccinations: h.Vaccinations,
		Travel: h.Travel, Orders: h.Orders, CheckIns: h.CheckIns, Venues: h.Venues}
}

// migrateEvents folds the per-event keys older versions wrote (ev/<sub>/...,
// one key per event, read in full by every decision) into bounded histories,
// a bounded number of keys per transaction, and deletes them. It is
// idempotent: a crash part-way leaves the keys not yet folded for the next
// start.
func migrateEvents(db *badger.DB) (int, error) {
	const perTxn = 2000
	moved := 0
	for {
		done := true
		err := db.Update(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pEvent), PrefetchValues: true, PrefetchSize: 100})
			defer it.Close()
			hists := map[hcx.Subject]*history{}
			var keys [][]byte
			for it.Rewind(); it.Valid(); it.Next() {
				if len(keys) == perTxn {
					done = false
					break
				}
				k := it.Item().KeyCopy(nil)
				rest := string(k[len(pEvent):])
				sub := hcx.Subject(rest[:max(strings.IndexByte(rest, '/'), 0)])
				var ev Event
				if err := it.Item().Value(func(b []byte) error { return jsonUnmarshal(b, &ev) }); err != nil {
					return fmt.Errorf("event %s: %w", k, err)
				}
				h := hists[sub]
				if h == nil {
					var err error
					if h, err = loadHistory(txn, sub); err != nil {
						return err
					}
					hists[sub] = h
				}
				if ev.kind() != "" {
					h.add(&ev)
				}
				keys = append(keys, k)
			}
			for sub, h := range hists {
				b, err := h.MarshalBinary()
				if err != nil {
					return err
				}
				if err := txn.Set([]byte(histKey(sub)), b); err != nil {
					return err
				}
			}
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			moved += len(keys)
			if done {
				return txn.Delete([]byte(kEventNext))
			}
			return nil
		})
		if err != nil || done {
			return moved, err
		}
	}
}
