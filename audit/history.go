package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// MaxHistory bounds the distinct findings a History keeps; the oldest by
// last sighting go first, and are counted.
const MaxHistory = 1000

// maxDetail bounds a kept finding's detail: it is for people, and a
// finding's notes (the checkpoints that prove it) are left to the report.
const maxDetail = 1000

// kHistory holds the History of hcx audit --watch in the auditor's store.
const kHistory = "history"

// History is what hcx audit --watch has found over its passes: each
// distinct finding once, with when it was first and last seen and how
// often, and the last pass. Findings name hub members, indices, sizes,
// witnesses and provinces, never a person.
type History struct {
	// Findings are newest first: by last sighting, then first.
	Findings []Sighting `json:"findings"`
	// Dropped counts the distinct findings let go to stay within
	// MaxHistory.
	Dropped int  `json:"dropped,omitempty"`
	Last    Pass `json:"last_pass"`
	// Passes counts the passes recorded.
	Passes uint64 `json:"passes"`
}

// Sighting is one distinct finding: the Finding without its notes, and
// its sightings.
type Sighting struct {
	Finding
	First time.Time `json:"first_seen"`
	Seen  time.Time `json:"last_seen"`
	Times uint64    `json:"times"`
}

// Pass is one audit pass as a History keeps it.
type Pass struct {
	At       time.Time `json:"at"` // when it started; zero before the first
	Seconds  float64   `json:"seconds"`
	Start    uint64    `json:"start"` // leaves verified before it
	Size     uint64    `json:"size"`  // leaves verified after it
	Findings int       `json:"findings"`
	// Dropped are findings over MaxFindings in the pass, counted only.
	Dropped     int      `json:"dropped,omitempty"`
	Unreachable []string `json:"unreachable,omitempty"`
	Error       string   `json:"error,omitempty"` // why it could not finish
}

// identity is what tells findings apart: everything a Finding names but
// its wording and notes (a detail with hashes of another leaf at the same
// index is the same finding seen again).
func (f Finding) identity() string {
	var i string
	if f.Index != nil {
		i = fmt.Sprint(*f.Index)
	}
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%s\x00%s\x00%d", f.Kind, f.Member, i, f.Size, f.Witness, f.Province, f.Seq)
}

// Record adds a pass that started at start and took took (rep may be nil
// when it failed early, err nil when it finished). It reports whether a
// finding not kept before appeared, or one was let go.
func (h *History) Record(start time.Time, took time.Duration, rep *Report, err error) (changed bool) {
	h.Passes++
	h.Last = Pass{At: start, Seconds: took.Seconds()}
	if err != nil {
		h.Last.Error = err.Error()
	}
	if rep == nil {
		return false
	}
	h.Last.Start, h.Last.Size, h.Last.Findings, h.Last.Dropped = rep.Start, rep.Size, len(rep.Findings), rep.Dropped
	h.Last.Unreachable = rep.Unreachable
	at := map[string]int{}
	for i, s := range h.Findings {
		at[s.identity()] = i
	}
	for _, f := range rep.Findings {
		f.Notes = nil
		if len(f.Detail) > maxDetail {
			f.Detail = strings.ToValidUTF8(f.Detail[:maxDetail], "") + "…"
		}
		if i, ok := at[f.identity()]; ok {
			s := &h.Findings[i]
			s.Finding, s.Seen = f, start
			s.Times++
			continue
		}
		at[f.identity()] = len(h.Findings)
		h.Findings = append(h.Findings, Sighting{Finding: f, First: start, Seen: start, Times: 1})
		changed = true
	}
	sort.SliceStable(h.Findings, func(i, j int) bool {
		a, b := h.Findings[i], h.Findings[j]
		if !a.Seen.Equal(b.Seen) {
			return a.Seen.After(b.Seen)
		}
		return a.First.After(b.First)
	})
	if n := len(h.Findings) - MaxHistory; n > 0 {
		h.Findings = h.Findings[:MaxHistory]
		h.Dropped += n
	}
	return changed
}

// History reads the History kept in the auditor's store (empty if none).
func (v *Verifier) History() (*History, error) {
	h := &History{}
	err := v.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kHistory))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return json.Unmarshal(b, h) })
	})
	if err != nil {
		return nil, fmt.Errorf("the auditor's findings history: %w", err)
	}
	return h, nil
}

// SaveHistory keeps h in the auditor's store, beside what it verified.
func (v *Verifier) SaveHistory(h *History) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return v.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(kHistory), b) })
}
