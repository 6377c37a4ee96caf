package node

import (
	"encoding/binary"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// The province's check statistics (issue 12 item 5, docs/decisions.md
// "Issue 12: province statistics"): counts of verifications made at this
// node per UTC hour, by answered colour, issuer province, division, unit
// and refusal code, and of checks of this province's residents made in
// other provinces (from received receipts). No subject, name or document
// is ever part of a key or a value.
//
// Verify stays a read: it increments an in-memory counter (one mutex, a
// map bounded by maxStatCells), and the check writer (checkLoop) adds the
// counters into badger every StatsFlushInterval and at Close. A crash
// loses at most one interval of counts.
//
// Keys: sts/<unix hour, 8 bytes big endian><group>/<value>, value a
// big-endian uint64 count; each expires StatsRetention after its hour and
// PruneStats deletes the older ones by the node's clock.

// StatsRetention is how long hourly aggregates are kept.
const StatsRetention = 400 * 24 * time.Hour

// StatsFlushInterval is how often counters are added to the store.
const StatsFlushInterval = 5 * time.Second

const pStats = "sts/"

// Bounds of the in-memory counters.
const (
	// maxStatCells is the most distinct (hour, group, value) counters held
	// between flushes; beyond it, new units and divisions fold into
	// "other" and a new cell of another group is dropped and counted.
	maxStatCells = 16384
	// maxStatUnitsPerHour is the most distinct units counted in an hour;
	// the rest count as unit "other".
	maxStatUnitsPerHour = 1000
	statOther           = "other"
)

// Stat groups.
const (
	StatColour   = "colour"   // verifications made here, by answered colour
	StatIssuer   = "issuer"   // by the code's issuing province
	StatDivision = "division" // by the checking device's division ("none" when unnamed)
	StatUnit     = "unit"     // by the checking unit (device name, "operator")
	StatError    = "error"    // refusals, by error code
	StatAway     = "away"     // checks of this province's residents elsewhere, by checking province
	StatAwayCol  = "away_colour"
)

// StatGroups lists the groups a query may ask for.
var StatGroups = []string{StatColour, StatIssuer, StatDivision, StatUnit, StatError, StatAway, StatAwayCol}

type statCell struct {
	hour  int64
	group string
	value string
}

type statState struct {
	mu      sync.Mutex
	cells   map[statCell]uint64
	units   map[int64]int // distinct units counted per hour since the last flush
	dropped uint64
	saved   time.Time // node clock at the last flush that left nothing pending
}

// count adds one to (hour of at, group, value).
func (s *statState) count(at time.Time, group, value string) {
	h := at.Unix() / 3600
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cells == nil {
		s.cells = make(map[statCell]uint64)
		s.units = make(map[int64]int)
	}
	c := statCell{h, group, value}
	if _, ok := s.cells[c]; !ok {
		switch {
		case group == StatUnit && s.units[h] >= maxStatUnitsPerHour, (group == StatUnit || group == StatDivision) && len(s.cells) >= maxStatCells:
			c.value = statOther
		case len(s.cells) >= maxStatCells:
			s.dropped++
			return
		}
		if group == StatUnit && c.value != statOther {
			s.units[h]++
		}
	}
	s.cells[c]++
}

// take hands over the counters and starts afresh.
func (s *statState) take() map[statCell]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cells
	s.cells, s.units = nil, nil
	return c
}

// putBack returns counters a failed flush could not store.
func (s *statState) putBack(c map[statCell]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cells == nil {
		s.cells = make(map[statCell]uint64)
		s.units = make(map[int64]int)
	}
	for k, v := range c {
		s.cells[k] += v
	}
}

// statVerified counts a verification answered with col.
func (n *Node) statVerified(at time.Time, c Check, issuer hcx.ProvinceCode, col hcx.Colour) {
	n.stats.count(at, StatColour, string(col))
	n.stats.count(at, StatIssuer, string(issuer))
	div := string(c.Division)
	if div == "" {
		div = "none"
	}
	n.stats.count(at, StatDivision, div)
	n.stats.count(at, StatUnit, c.Unit)
}

// statRefused counts a refused code by its stable error code.
func (n *Node) statRefused(at time.Time, err error) {
	code := "internal"
	var he *hcx.Error
	if errors.As(err, &he) && he.Code != "" {
		code = he.Code
	}
	n.stats.count(at, StatError, code)
}

// flushStats adds the counters into the store in one transaction.
func (n *Node) flushStats() {
	now := n.cfg.Now().UTC()
	cells := n.stats.take()
	if len(cells) == 0 {
		n.stats.markSaved(now)
		return
	}
	err := n.db.Update(func(txn *badger.Txn) error {
		for c, v := range cells {
			k := statKey(c)
			it, err := txn.Get(k)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				if err := it.Value(func(b []byte) error {
					if len(b) == 8 {
						v += binary.BigEndian.Uint64(b)
					}
					return nil
				}); err != nil {
					return err
				}
			}
			e := badger.NewEntry(k, binary.BigEndian.AppendUint64(nil, v))
			e.ExpiresAt = uint64(max(time.Unix(c.hour*3600, 0).Add(StatsRetention).Unix(), 1))
			if err := txn.SetEntry(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.log.Warn("store check statistics", "cells", len(cells), "err", err)
		n.stats.putBack(cells)
		return
	}
	n.stats.markSaved(now)
}

func (s *statState) markSaved(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved = at
}

// StatsSaved is the node-clock time (UTC) up to which counts are in the
// store: the last flush, StatsFlushInterval at most behind. Zero before
// the first flush since the node started.
func (n *Node) StatsSaved() time.Time {
	n.stats.mu.Lock()
	defer n.stats.mu.Unlock()
	return n.stats.saved
}

// Zone is the province's time zone (its rule set's), in which days count.
func (n *Node) Zone() *time.Location { return n.rules.Load().rs.Location() }

func statKey(c statCell) []byte {
	k := binary.BigEndian.AppendUint64([]byte(pStats), uint64(c.hour))
	return append(append(append(k, c.group...), '/'), c.value...)
}

func parseStatKey(k []byte) (statCell, bool) {
	if len(k) < len(pStats)+8 {
		return statCell{}, false
	}
	h := int64(binary.BigEndian.Uint64(k[len(pStats):]))
	g, v, ok := strings.Cut(string(k[len(pStats)+8:]), "/")
	return statCell{h, g, v}, ok
}

// StatRow is one bucket of a statistics query.
type StatRow struct {
	// Start is the bucket's start (UTC): an hour, or a day in the zone asked for.
	Start  time.Time         `json:"start"`
	Counts map[string]uint64 `json:"counts"`
}

// CheckStats sums group's stored counters over [from, to) into buckets of
// step (time.Hour, or 24 h starting at midnight in loc). Counters not yet
// flushed are not included.
func (n *Node) CheckStats(from, to time.Time, step time.Duration, loc *time.Location, group string) ([]StatRow, error) {
	rows := map[time.Time]map[string]uint64{}
	err := n.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(pStats)
		it := txn.NewIterator(opts)
		defer it.Close()
		start := binary.BigEndian.AppendUint64([]byte(pStats), uint64(from.Unix()/3600))
		end := to.Unix() / 3600
		for it.Seek(start); it.Valid(); it.Next() {
			c, ok := parseStatKey(it.Item().Key())
			if !ok {
				continue
			}
			if c.hour >= end {
				break
			}
			if c.group != group {
				continue
			}
			t := time.Unix(c.hour*3600, 0).In(loc)
			if step == time.Hour {
				t = t.UTC()
			} else {
				t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
			}
			if rows[t] == nil {
				rows[t] = map[string]uint64{}
			}
			if err := it.Item().Value(func(b []byte) error {
				if len(b) == 8 {
					rows[t][c.value] += binary.BigEndian.Uint64(b)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, stored(err)
	}
	out := make([]StatRow, 0, len(rows))
	for t, m := range rows {
		out = append(out, StatRow{Start: t, Counts: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// PruneStats deletes aggregates older than StatsRetention by the node's
// clock, at most pruneRound keys in memory at a time, and returns how many
// it deleted.
func (n *Node) PruneStats() (int, error) {
	cut := n.cfg.Now().Add(-StatsRetention).Unix() / 3600
	return n.pruneWhere(pStats, func(k []byte) (bool, bool) {
		c, ok := parseStatKey(k)
		old := ok && c.hour < cut
		return old, old
	})
}
