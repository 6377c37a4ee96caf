package consensus

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/consensus/linmodel"
	"github.com/hcxfed/hcx/exchange"
)

// The log model (submit, read, unknown outcomes) is linmodel.Model.

// keyedEnvelope is a risk-area designation whose start time encodes key, so
// every envelope is distinct, carries no batch sequence and passes the hub's
// content checks (a real division of the issuer's province, a known level).
// It used to be a policy publication with an empty rule file; once the hub
// checked content, every submit was refused, every operation became an
// unknown outcome and the history checked nothing.
func (p *pki) keyedEnvelope(t testing.TB, key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	from := int64(1_600_000_000) + int64(h.Sum32())
	env, err := exchange.SealRiskAreas(p.provs["110000"], &exchange.RiskAreas{Iss: "110000", At: time.Now().Unix(),
		Areas: []exchange.RiskArea{{Div: "110101", Level: exchange.RiskMedium, From: from}}})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestSubmissionsAndSyncedReadsAreLinearizableUnderPartitionsAndKills(t *testing.T) {
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("HCX_LIN_RUNS")); err == nil && v > 0 {
		runs = v
	}
	for run := 0; run < runs; run++ {
		seed := time.Now().UnixNano() + int64(run)
		t.Run(fmt.Sprintf("run%d", run), func(t *testing.T) { linearizabilityRun(t, seed) })
	}
}

func linearizabilityRun(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	p := newPKI(t, 3)
	c := startCluster(t, p, 3, false, nil)
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.Members[0].Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	keyOf := map[string]string{p.trust1: "trust"}
	var keyMu sync.Mutex

	var mu sync.Mutex // guards c.Members (the nemesis swaps restarted members in)
	member := func(i int) *Hub {
		mu.Lock()
		defer mu.Unlock()
		return c.Members[i%len(c.Members)]
	}
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var ops []porcupine.Operation
	var opsMu sync.Mutex
	record := func(client int, in linmodel.Input, out linmodel.Output, call, ret int64) {
		opsMu.Lock()
		ops = append(ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
		opsMu.Unlock()
	}
	// The history starts with the trust list in the log.
	record(99, linmodel.Input{Key: "trust"}, linmodel.Output{Index: 0}, now(), now())

	stop := make(chan struct{})
	var faults []string
	var nemesis sync.WaitGroup
	nemesis.Add(1)
	go func() {
		defer nemesis.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(200+rng.Intn(300)) * time.Millisecond):
			}
			i := rng.Intn(3)
			h := member(i)
			if rng.Intn(2) == 0 {
				faults = append(faults, "partition "+h.ID())
				h.partition(true)
				time.Sleep(time.Duration(200+rng.Intn(400)) * time.Millisecond)
				h.partition(false)
				continue
			}
			cfg := c.MemberConfig(i)
			cfg.RaftAddr = h.RaftAddr()
			faults = append(faults, "kill "+h.ID())
			h.Kill()
			time.Sleep(time.Duration(100+rng.Intn(300)) * time.Millisecond)
			nh, err := New(cfg)
			if err != nil {
				t.Errorf("restart %s: %v", cfg.ID, err)
				return
			}
			mu.Lock()
			c.Members[i] = nh
			mu.Unlock()
		}
	}()

	var clients sync.WaitGroup
	var acked atomic.Int64
	for cl := 0; cl < 3; cl++ {
		crng := rand.New(rand.NewSource(seed + int64(cl) + 1))
		clients.Add(1)
		go func() {
			defer clients.Done()
			until := time.Now().Add(2500 * time.Millisecond)
			for op := 0; time.Now().Before(until); op++ {
				time.Sleep(time.Duration(10+crng.Intn(40)) * time.Millisecond)
				h := member(crng.Intn(3))
				if crng.Intn(3) == 0 {
					call := now()
					rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					_, err := h.Sync(rctx)
					var es exchange.Entries
					if err == nil {
						es, err = h.Entries(rctx, 0, 1000, 0)
					}
					cancel()
					ret := now()
					if err != nil {
						continue // a failed read has no effect
					}
					out := linmodel.Output{}
					keyMu.Lock()
					for _, e := range es.Entries {
						out.Log = append(out.Log, keyOf[e])
					}
					keyMu.Unlock()
					record(cl, linmodel.Input{Read: true}, out, call, ret)
					continue
				}
				key := fmt.Sprintf("c%d-%d", cl, op)
				env := p.keyedEnvelope(t, key)
				keyMu.Lock()
				keyOf[env] = key
				keyMu.Unlock()
				call := now()
				sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				r, err := h.Submit(sctx, env)
				cancel()
				if err != nil {
					// Only unavailability may end a submit here: a refusal
					// would make the history vacuous (see keyedEnvelope).
					if c := hcx.ClassOf(err); c != hcx.EUnavailable && c != hcx.EInternal {
						t.Errorf("submit %s refused: %v", key, err)
					}
					// Unknown outcome: it may take effect at any later time.
					record(cl, linmodel.Input{Key: key}, linmodel.Output{Unknown: true}, call, 1<<62)
					continue
				}
				record(cl, linmodel.Input{Key: key}, linmodel.Output{Index: r.Index}, call, now())
				acked.Add(1)
			}
		}()
	}
	clients.Wait()
	if acked.Load() == 0 {
		t.Error("no submission was acknowledged: the history would check nothing")
	}
	close(stop)
	nemesis.Wait()
	for _, h := range c.Members {
		h.partition(false)
	}
	// A final synced read from every member closes the history.
	for i := range c.Members {
		h := member(i)
		call := now()
		if _, err := h.Sync(ctx); err != nil {
			t.Fatalf("final sync at %s: %v", h.ID(), err)
		}
		es, err := h.Entries(ctx, 0, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		out := linmodel.Output{}
		for _, e := range es.Entries {
			out.Log = append(out.Log, keyOf[e])
		}
		record(100+i, linmodel.Input{Read: true}, out, call, now())
	}
	res, info := porcupine.CheckOperationsVerbose(linmodel.Model.ToModel(), ops, 30*time.Second)
	if res != porcupine.Ok {
		path := fmt.Sprintf("%s/lin-%d.html", os.TempDir(), seed)
		if f, err := os.Create(path); err == nil {
			porcupine.Visualize(linmodel.Model.ToModel(), info, f)
			f.Close()
		}
		t.Fatalf("history of %d operations is %s (an Unknown counts as a failure); visualisation in %s", len(ops), res, path)
	}
	t.Logf("%d operations under faults %v: linearizable", len(ops), faults)
	if len(faults) == 0 {
		t.Fatal("the nemesis injected no fault")
	}
	converge(t, c.Members...)
}
