package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// Itineraries and the stay index (docs/decisions.md, "Issue 10: travel and
// risk areas").
//
// A telecom feed posts the divisions a resident's phone was seen in, by
// local day. Each (day, division) is one stay, a Travel event dated at the
// local midnight that starts the day, with the record id "day:<date>:<div>"
// (its record key adds the subject, stayRecordKey):
// a re-sent itinerary, or two itineraries that overlap, count each stay once.
//
// Every stay is also indexed by division, stay/<div>/<sub>/<unix>, expiring
// with the stay (TrajectoryRetention after it): when a province designates a
// risk area, the residents who stayed inside it are found by a prefix scan
// and decided again at once.
const pStay = "stay/"

// Bounds of one itinerary.
const (
	MaxItineraryDays = 60 // the retention of trajectory data: an older day is refused anyway
	MaxDivsPerDay    = 32
	// CityDays is how far back the code answer lists the cities visited.
	CityDays = 14
)

// Itinerary is what a telecom feed posts about one resident.
type Itinerary struct {
	Days []ItineraryDay `json:"days"`
}

// ItineraryDay is the divisions visited on one local date (YYYY-MM-DD).
type ItineraryDay struct {
	Date string             `json:"date"`
	Divs []hcx.DivisionCode `json:"divs"`
}

// ItineraryResult is the answer to an itinerary: how many stays it held,
// how many of them were new, and the resident's status after them.
type ItineraryResult struct {
	Stays  int     `json:"stays"`
	New    int     `json:"new"`
	Status *Status `json:"status"`
}

// stayID is a stay's record id, kept in the history: the date and the
// division, from which it is derived again.
func stayID(date string, div hcx.DivisionCode) string { return "day:" + date + ":" + string(div) }

// stayRecordKey is the key of a stay's record id (records.go). Record ids
// are per kind and node, not per resident: the subject is part of the key,
// or two residents in one division on one day would conflict. It is not
// part of the id, which every stay of the history carries.
func stayRecordKey(sub hcx.Subject, ev *Event) string { return recordKey(ev) + "/" + string(sub) }

func stayKey(div hcx.DivisionCode, sub hcx.Subject, at time.Time) string {
	return fmt.Sprintf("%s%s/%s/%d", pStay, div, sub, at.Unix())
}

// stays checks an itinerary at now and returns its stays, one event per
// distinct (date, division), naming the first wrong field.
func (it *Itinerary) stays(now time.Time, loc *time.Location) ([]Event, error) {
	if len(it.Days) == 0 || len(it.Days) > MaxItineraryDays {
		return nil, hcx.Invalidf("days", "an itinerary holds 1 to %d days, this one %d", MaxItineraryDays, len(it.Days))
	}
	local := now.In(loc)
	today := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	oldest := today.AddDate(0, 0, -(MaxItineraryDays - 1))
	seen := make(map[string]bool)
	var evs []Event
	for i, d := range it.Days {
		field := fmt.Sprintf("days[%d]", i)
		day, err := time.ParseInLocation(time.DateOnly, d.Date, loc)
		if err != nil || day.Format(time.DateOnly) != d.Date {
			return nil, hcx.Invalidf(field+".date", "date %q is not a date as YYYY-MM-DD", d.Date)
		}
		if day.After(today) {
			return nil, hcx.Invalidf(field+".date", "date %s is in the future (today is %s)", d.Date, today.Format(time.DateOnly))
		}
		if day.Before(oldest) {
			return nil, hcx.Invalidf(field+".date", "date %s is more than %d days ago: stays are kept %d days and an older one is not accepted", d.Date, MaxItineraryDays-1, MaxItineraryDays)
		}
		if len(d.Divs) == 0 || len(d.Divs) > MaxDivsPerDay {
			return nil, hcx.Invalidf(field+".divs", "a day lists 1 to %d divisions, this one %d", MaxDivsPerDay, len(d.Divs))
		}
		for j, div := range d.Divs {
			if err := div.Validate(); err != nil {
				return nil, hcx.Invalidf(fmt.Sprintf("%s.divs[%d]", field, j), "division %q is not a GB/T 2260 (2019) code", div)
			}
			id := stayID(d.Date, div)
			if seen[id] {
				continue
			}
			seen[id] = true
			evs = append(evs, Event{Travel: &policy.TravelRecord{Div: div, At: day.UTC(), ID: id}})
		}
	}
	return evs, nil
}

// IngestItinerary records an itinerary's stays about a resident of this
// province in one synced commit, with one audit entry, and decides the
// resident once. Stays recorded before (same record id) are not recorded
// again; an itinerary of only such stays writes nothing. A wrong field
// writes nothing.
func (n *Node) IngestItinerary(ctx context.Context, sub hcx.Subject, it *Itinerary) (*ItineraryResult, error) {
	entry, err := callerEntry(ctx, ActionTravelPost, sub)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	rules := n.rules.Load()
	evs, err := it.stays(now, rules.rs.Location())
	if err != nil {
		return nil, err
	}
	for i := range evs {
		if err := evs[i].validate(now); err != nil {
			return nil, err
		}
	}
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var rec residentRecord
	var st colourState
	var h *history
	var found bool
	fresh := evs[:0:0]
	err = n.db.View(func(txn *badger.Txn) error {
		if found, err = getJSON(txn, pResident+string(sub), &rec); err != nil || !found {
			return err
		}
		for i := range evs {
			dup, err := checkRecord(txn, stayRecordKey(sub, &evs[i]), sub, &evs[i])
			if err != nil {
				return err
			}
			if !dup {
				fresh = append(fresh, evs[i])
			}
		}
		h, err = loadHistoryAndState(txn, sub, &st)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notResidentHere(n.cfg.Province)
	}
	res := &ItineraryResult{Stays: len(evs), New: len(fresh)}
	if len(fresh) == 0 {
		n.metrics.duplicates.Add(uint64(len(evs)))
		r, err := n.Resident(ctx, sub)
		if err != nil {
			return nil, err
		}
		res.Status = &r.Status
		return res, nil
	}
	w := &write{}
	entry.Note = fmt.Sprintf("itinerary: %d stays, %d new", len(evs), len(fresh))
	w.record(entry)
	for i := range fresh {
		ev := &fresh[i]
		w.setTTL(stayRecordKey(sub, ev), recordValue(sub, ev), recordTTL(ev))
	}
	if err := n.recordEvents(w, sub, &rec, &st, h, fresh, rules, now); err != nil {
		return nil, err
	}
	if res.Status, err = n.withOthers(sub, n.status(&st, rec.Registered)); err != nil {
		return nil, err
	}
	return res, nil
}

// indexStay adds a stay to the stay index, to expire with the stay.
func indexStay(w *write, sub hcx.Subject, t *policy.TravelRecord) {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(t.At.Unix()))
	w.setExpires(stayKey(t.Div, sub, t.At), v[:], t.At.Add(TrajectoryRetention))
}

// stayPrefix is the prefix of the stay index under which every stay inside
// area lies: a province covers its two digits, a prefecture its four, a
// county its own code.
func stayPrefix(area hcx.DivisionCode) string {
	a := string(area)
	switch {
	case len(a) == 6 && strings.HasSuffix(a, "0000"):
		return pStay + a[:2]
	case len(a) == 6 && strings.HasSuffix(a, "00"):
		return pStay + a[:4]
	}
	return pStay + a + "/"
}

// staysIn returns up to limit residents with a stay inside area at or
// after from and within TrajectoryRetention of now, from the stay index,
// starting at the key start (nil: from the beginning), and the key where
// the next call starts (nil when the scan is complete). A resident is
// listed once per division they stayed in.
func (n *Node) staysIn(area hcx.DivisionCode, from, now time.Time, start []byte, limit int) ([]hcx.Subject, []byte, error) {
	lo := max(from.Unix(), now.Add(-TrajectoryRetention).Unix())
	var subs []hcx.Subject
	var next []byte
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(stayPrefix(area))})
		defer it.Close()
		var last hcx.Subject
		for it.Seek(append([]byte(stayPrefix(area)), start...)); it.Valid(); it.Next() {
			// stay/<div>/<sub>/<unix>
			key := it.Item().Key()
			parts := strings.Split(string(key[len(pStay):]), "/")
			if len(parts) != 3 {
				continue
			}
			at, err := strconv.ParseInt(parts[2], 10, 64)
			if err != nil || at < lo {
				continue
			}
			sub := hcx.Subject(parts[1])
			if sub == last {
				continue // the same resident's stays in one division are adjacent
			}
			if len(subs) == limit {
				next = it.Item().KeyCopy(nil)[len(stayPrefix(area)):]
				return nil
			}
			last = sub
			subs = append(subs, sub)
		}
		return nil
	})
	return subs, next, err
}

// City is a city-level division a resident stayed in: the prefecture, the
// municipality, or a county that no prefecture holds. Risk is the highest
// level of the risk areas in force during the resident's stays in it ("" for
// none): the star the itinerary card put beside such a city.
type City struct {
	Div  hcx.DivisionCode `json:"div"`
	Name string           `json:"name"`
	Risk string           `json:"risk,omitempty"`
}

// citiesSince lists the cities of the stays at or after since, at most one
// each, most recent first, each with the highest risk level of its stays
// among areas.
func citiesSince(stays []policy.TravelRecord, since time.Time, areas []policy.RiskArea) []City {
	out := []City{}
	for i := len(stays) - 1; i >= 0; i-- {
		if stays[i].At.Before(since) {
			continue
		}
		c := stays[i].Div.City()
		k := slices.IndexFunc(out, func(x City) bool { return x.Div == c })
		if k < 0 {
			out = append(out, City{Div: c, Name: c.Name()})
			k = len(out) - 1
		}
		if r := policy.RiskAt(areas, stays[i]); r == "high" || out[k].Risk == "" {
			out[k].Risk = r
		}
	}
	return out
}

// citiesVisited lists the cities a resident stayed in during the last
// CityDays local days, most recent first: the "two codes in one" beside the
// colour.
func (n *Node) citiesVisited(sub hcx.Subject) ([]City, error) {
	var h *history
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		h, err = loadHistory(txn, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	local := n.cfg.Now().In(n.rules.Load().rs.Location())
	since := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, local.Location()).AddDate(0, 0, -(CityDays - 1))
	f := h.facts()
	return citiesSince(h.Travel, since, n.riskAreasFor(f)), nil
}
