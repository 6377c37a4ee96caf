package node

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/binary"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// BenchmarkRedecide measures the bulk re-decision after a rule change end to
// end: read every resident's facts, decide under the new rules, write the
// state and the due index, enqueue the attestations that change. The store
// holds HCX_BENCH_RESIDENTS residents (default 1,000,000), each with a few
// events, written directly with a badger WriteBatch and decided under the old
// rules. The rule change shortens the isolation after a positive result from
// 14 to 10 days, which releases a tenth of the residents.
//
// "read-decide" is the baseline in the same run: the same reads and
// decisions, in parallel, writing nothing. cpu-µs/resident is the process's
// CPU time per resident (badger's own goroutines included), which a loaded
// machine does not inflate the way it does the wall clock. Run it once:
//
//	HCX_BENCH_RESIDENTS=1000000 go test ./node -run '^$' -bench Redecide -benchtime 1x -timeout 30m
func BenchmarkRedecide(b *testing.B) {
	residents := 1_000_000
	if s := os.Getenv("HCX_BENCH_RESIDENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("HCX_BENCH_RESIDENTS=%q: want a positive number of residents", s)
		}
		residents = v
	}
	now := time.Date(2026, 3, 20, 1, 0, 0, 0, time.UTC)
	n, rules, good := openNodeWithOwnRules(b, func() time.Time { return now })
	defer n.Close()
	setup := time.Now()
	subs := fillResidents(b, n, residents, now)
	b.Logf("store of %d residents written in %s", residents, time.Since(setup).Round(time.Millisecond))
	shorter := bytes.Replace(good, []byte("days: 14"), []byte("days: 10"), 1)

	b.Run("read-decide", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			start, cpu := time.Now(), cpuTime()
			readAndDecide(b, n, subs, now)
			el := time.Since(start)
			b.ReportMetric(el.Seconds(), "s/run")
			b.ReportMetric(float64(len(subs))/el.Seconds(), "residents/s")
			b.ReportMetric((cpuTime()-cpu).Seconds()*1e6/float64(len(subs)), "cpu-µs/resident")
		}
	})
	b.Run("end-to-end", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			src := shorter
			if i%2 == 1 {
				src = good
			}
			if err := os.WriteFile(rules, src, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := n.ReloadRules(); err != nil {
				b.Fatal(err)
			}
			cpu := cpuTime()
			p, err := n.Redecide(context.Background())
			used := cpuTime() - cpu
			if err != nil {
				b.Fatal(err)
			}
			if p.Done != uint64(len(subs)) || p.Incomplete {
				b.Fatalf("re-decided %d of %d residents (incomplete %v)", p.Done, len(subs), p.Incomplete)
			}
			if p.Attested < uint64(len(subs)/20) {
				b.Fatalf("only %d attestations for %d residents: the rule change released nobody?", p.Attested, len(subs))
			}
			b.ReportMetric(p.Elapsed.Seconds(), "s/run")
			b.ReportMetric(float64(p.Done)/p.Elapsed.Seconds(), "residents/s")
			b.ReportMetric(float64(p.Attested), "attestations/run")
			b.ReportMetric(used.Seconds()*1e6/float64(p.Done), "cpu-µs/resident")
		}
	})
}

// benchSubject is a synthetic subject: the base32 of a counter.
func benchSubject(i int) hcx.Subject {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(i))
	copy(raw[8:], "hcx-bench")
	return hcx.Subject(bytes.ToLower([]byte(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:]))))
}

// fillResidents writes residents with events and their state under the
// rules in force. A tenth had a positive result 12 days ago and five
// negatives since (red under 14 days, released under 10), a tenth a positive
// result yesterday (red under both), a fifth a close contact 5 days ago, the
// rest two negative results.
func fillResidents(b testing.TB, n *Node, count int, now time.Time) []hcx.Subject {
	b.Helper()
	rules := n.rules.Load()
	wb := n.db.NewWriteBatch()
	defer wb.Cancel()
	set := func(key string, v any) {
		val, err := jsonMarshal(v)
		if err != nil {
			b.Fatal(err)
		}
		if err := wb.Set([]byte(key), val); err != nil {
			b.Fatal(err)
		}
	}
	sealed := n.fields.Seal([]byte("张三"), []byte("bench"))
	subs := make([]hcx.Subject, count)
	for i := range count {
		sub := benchSubject(i)
		subs[i] = sub
		registered := now.AddDate(0, -1, 0)
		set(pResident+string(sub), &residentRecord{Sub: sub, DocType: hcx.DocCNID, SKV: 1, Doc: sealed, Name: sealed, Registered: registered})
		var evs []Event
		lab := func(daysAgo float64, positive bool) {
			evs = append(evs, Event{Lab: &policy.LabResult{At: now.Add(-time.Duration(daysAgo * float64(24*time.Hour))), Positive: positive, Kind: "pcr"}})
		}
		switch i % 10 {
		case 0:
			lab(12, true)
			for d := 11; d >= 7; d-- {
				lab(float64(d), false)
			}
		case 1:
			lab(1, true)
		case 2, 3:
			evs = append(evs, Event{Contact: &policy.ContactFlag{Issuer: n.cfg.Province, At: now.Add(-5 * 24 * time.Hour)}})
		default:
			lab(20, false)
			lab(3, false)
		}
		h := &history{}
		for j := range evs {
			h.add(&evs[j])
		}
		hb, err := h.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		if err := wb.Set([]byte(histKey(sub)), hb); err != nil {
			b.Fatal(err)
		}
		facts := h.facts()
		facts.Current, facts.CurrentSince = hcx.Green, registered
		d, err := rules.rs.Decide(facts, now)
		if err != nil {
			b.Fatal(err)
		}
		if d.Colour != hcx.Green {
			since := d.Since
			set(pState+string(sub), &colourState{Colour: d.Colour, Since: since, Reasons: d.Reasons, Rule: d.Rule, N: 1, Policy: rules.version, Exp: now.Add(n.cfg.AttestationTTL).Unix()})
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := n.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(kDecidedPolicy), []byte(rules.version))
	}); err != nil {
		b.Fatal(err)
	}
	return subs
}

// readAndDecide is the baseline: every resident's facts read and decided,
// in parallel, nothing written.
func readAndDecide(b *testing.B, n *Node, subs []hcx.Subject, now time.Time) {
	rules := n.rules.Load()
	var wg sync.WaitGroup
	workers := n.cfg.RedecideWorkers
	per := (len(subs) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		part := subs[min(w*per, len(subs)):min((w+1)*per, len(subs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(part) > 0 {
				chunk := part[:min(n.cfg.RedecideChunk, len(part))]
				part = part[len(chunk):]
				err := n.db.View(func(txn *badger.Txn) error {
					it := txn.NewIterator(badger.IteratorOptions{})
					defer it.Close()
					for _, sub := range chunk {
						var rec residentRecord
						if _, err := getJSON(txn, pResident+string(sub), &rec); err != nil {
							return err
						}
						var st colourState
						if _, err := getJSON(txn, pState+string(sub), &st); err != nil {
							return err
						}
						f, err := factsFrom(it, sub)
						if err != nil {
							return err
						}
						if _, err := rules.rs.Decide(f, now); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
