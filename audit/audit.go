package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// Page is how many leaves the auditor asks a member for at a time.
const Page = 1000

// MaxFindings bounds the findings one run keeps; the count goes on.
const MaxFindings = 10000

// Config is one audit.
type Config struct {
	// Hub reads the log: its members are asked in turn, each on its own
	// (HubClient.Member), with the auditor's request tokens (SignWith).
	Hub *exchange.HubClient
	// Gossip are signed checkpoint notes seen by others, by source name.
	Gossip map[string][]byte
	Now    func() time.Time
	Logger *slog.Logger
	// Progress, if set, is called after every page.
	Progress func(done, total uint64)
	// Trails are the provinces whose operator trails are checked against
	// the heads they logged, after the log (CheckTrail).
	Trails map[hcx.ProvinceCode]TrailSource
}

// Report is what a run found.
type Report struct {
	Start       uint64    `json:"start"` // leaves verified before this run
	Size        uint64    `json:"size"`  // leaves verified after it
	Root        string    `json:"root"`
	Checkpoints int       `json:"checkpoints"` // signed checkpoints checked
	Findings    []Finding `json:"findings"`
	Dropped     int       `json:"dropped,omitempty"` // findings over MaxFindings, counted only
	Unreachable []string  `json:"unreachable,omitempty"`
	// Trails are the provinces whose operator trails were read and checked.
	Trails []hcx.ProvinceCode `json:"trails,omitempty"`
}

func (r *Report) add(fs ...Finding) {
	for _, f := range fs {
		if len(r.Findings) >= MaxFindings {
			r.Dropped++
			continue
		}
		r.Findings = append(r.Findings, f)
	}
}

// seen is a signed checkpoint and where it came from.
type seen struct {
	source string
	note   []byte
	cp     *exchange.Checkpoint
	member *exchange.HubClient // nil for gossip
	// witnessed: the member's newest witnessed checkpoint, which may lag
	// behind the checkpoints verified already.
	witnessed bool
}

// Run audits the log from where v stopped to the largest checkpoint a
// member shows, and commits v after every page.
func Run(ctx context.Context, cfg Config, v *Verifier) (*Report, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Start: v.Size()}
	members := cfg.Hub.Members()
	var cps []seen
	var live []int
	for i, m := range members {
		hub := cfg.Hub.Member(i)
		note, err := hub.Checkpoint(ctx)
		if err != nil {
			cfg.Logger.Warn("a hub member did not answer its checkpoint", "member", m, "err", err)
			rep.Unreachable = append(rep.Unreachable, m)
			continue
		}
		live = append(live, i)
		cp, err := exchange.ParseCheckpoint(note)
		if err != nil {
			rep.add(Finding{Kind: KindCheckpoint, Member: m, Detail: fmt.Sprintf("its checkpoint does not parse: %v", err), Notes: []string{string(note)}})
			continue
		}
		cps = append(cps, seen{source: m, note: note, cp: cp, member: hub})
	}
	// The newest checkpoint each member says witnesses cosigned: its
	// cosignatures are checked, and it must be of the same history.
	for _, i := range live {
		note, err := cfg.Hub.Member(i).WitnessedCheckpoint(ctx)
		if err != nil {
			continue // none yet, or a hub without witnesses
		}
		src := members[i] + " (witnessed)"
		cp, err := exchange.ParseCheckpoint(note)
		if err != nil {
			rep.add(Finding{Kind: KindCheckpoint, Member: src, Detail: fmt.Sprintf("its witnessed checkpoint does not parse: %v", err), Notes: []string{string(note)}})
			continue
		}
		cps = append(cps, seen{source: src, note: note, cp: cp, member: cfg.Hub.Member(i), witnessed: true})
	}
	for _, src := range sortedKeys(cfg.Gossip) {
		note := cfg.Gossip[src]
		cp, err := exchange.ParseCheckpoint(note)
		if err != nil {
			rep.add(Finding{Kind: KindCheckpoint, Member: src, Detail: fmt.Sprintf("the gossiped checkpoint does not parse: %v", err), Notes: []string{string(note)}})
			continue
		}
		cps = append(cps, seen{source: src, note: note, cp: cp})
	}
	if len(live) == 0 {
		return rep, errors.New("no hub member answered: check --hub and the auditor's certificate")
	}
	var target uint64
	for _, s := range cps {
		if s.member != nil && !s.witnessed {
			target = max(target, s.cp.Size)
		}
	}
	// Roots of the audited tree at the checkpoint sizes it passes.
	roots := map[uint64][]byte{v.Size(): v.Root()}
	want := map[uint64]bool{}
	for _, s := range cps {
		want[s.cp.Size] = true
	}
	// Each other live member's own tree, from the verified prefix.
	others := map[int]*compact.Range{}
	for _, i := range live[1:] {
		others[i] = v.Range()
	}
	otherRoots := map[int]map[uint64][]byte{}
	primary := cfg.Hub.Member(live[0])
	for v.Size() < target && ctx.Err() == nil {
		start := v.Size()
		page, err := primary.Entries(ctx, start, int(min(Page, target-start)), 0)
		if err == nil && (page.Start != start || len(page.Entries) == 0 || len(page.Entries) > Page) {
			err = fmt.Errorf("asked for entries from %d, got %d from %d", start, len(page.Entries), page.Start)
		}
		if err != nil {
			return rep, fmt.Errorf("reading the log at %s from %d: %w", members[live[0]], start, err)
		}
		for k, raw := range page.Entries {
			fs, err := v.Append(raw, page.Committed(k))
			if err != nil {
				return rep, err
			}
			rep.add(fs...)
			if want[v.Size()] {
				roots[v.Size()] = v.Root()
			}
		}
		for _, i := range live[1:] {
			fs, err := compareMember(ctx, cfg.Hub.Member(i), members[i], page, others[i], want, otherRoots, i)
			if err != nil {
				cfg.Logger.Warn("a hub member did not answer the page", "member", members[i], "start", start, "err", err)
				continue
			}
			rep.add(fs...)
		}
		if err := v.Commit(); err != nil {
			return rep, err
		}
		if cfg.Progress != nil {
			cfg.Progress(v.Size(), target)
		}
		cfg.Logger.Info("audited", "size", v.Size(), "of", target, "findings", len(rep.Findings))
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	// Each member's own tree against its own checkpoint.
	for _, s := range cps {
		if s.member == nil {
			continue
		}
		for i, m := range members {
			if m != s.source || s.witnessed || otherRoots[i] == nil {
				continue
			}
			if r, ok := otherRoots[i][s.cp.Size]; ok && !bytes.Equal(r, s.cp.Root) {
				rep.add(Finding{Kind: KindCheckpoint, Member: m, Size: s.cp.Size, Detail: fmt.Sprintf("its signed checkpoint has root %s, the leaves it served have root %s", b64(s.cp.Root), b64(r)), Notes: []string{string(s.note)}})
			}
		}
	}
	rep.add(checkCheckpoints(ctx, cfg, v, cps, roots, rep)...)
	provs := make([]hcx.ProvinceCode, 0, len(cfg.Trails))
	for p := range cfg.Trails {
		provs = append(provs, p)
	}
	sort.Slice(provs, func(i, j int) bool { return provs[i] < provs[j] })
	for _, p := range provs {
		fs, err := v.CheckTrail(ctx, p, cfg.Trails[p])
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			cfg.Logger.Warn("a province's trail could not be read", "province", p, "err", err)
			rep.Unreachable = append(rep.Unreachable, "trail "+string(p)+": "+err.Error())
			continue
		}
		rep.Trails = append(rep.Trails, p)
		rep.add(fs...)
	}
	rep.Size, rep.Root = v.Size(), b64(v.Root())
	return rep, v.Commit()
}

// compareMember reads the same page from another member, names every index
// where it answers another leaf, and grows that member's own tree.
func compareMember(ctx context.Context, hub *exchange.HubClient, name string, page exchange.Entries, rng *compact.Range, want map[uint64]bool, roots map[int]map[uint64][]byte, i int) ([]Finding, error) {
	var out []Finding
	got := 0
	for got < len(page.Entries) {
		p, err := hub.Entries(ctx, page.Start+uint64(got), len(page.Entries)-got, 0)
		if err != nil {
			return out, err
		}
		if p.Start != page.Start+uint64(got) || len(p.Entries) == 0 || len(p.Entries) > len(page.Entries)-got {
			return out, fmt.Errorf("asked for entries from %d, got %d from %d", page.Start+uint64(got), len(p.Entries), p.Start)
		}
		for _, raw := range p.Entries {
			at := page.Start + uint64(got)
			if raw != page.Entries[got] {
				out = append(out, Finding{Kind: KindLeaf, Member: name, Index: idx(at), Detail: fmt.Sprintf("it answers leaf %s for index %d, the audited log has %s", b64(exchange.LogHasher{}.HashLeaf([]byte(raw))), at, b64(exchange.LogHasher{}.HashLeaf([]byte(page.Entries[got]))))})
			}
			if err := rng.Append(exchange.LogHasher{}.HashLeaf([]byte(raw)), nil); err != nil {
				return out, err
			}
			if want[rng.End()] {
				if roots[i] == nil {
					roots[i] = map[uint64][]byte{}
				}
				roots[i][rng.End()], _ = rng.GetRootHash(nil)
			}
			got++
		}
	}
	return out, nil
}

// checkCheckpoints checks every checkpoint's signature, its root against
// the audited tree, that none is smaller than the last one verified, and
// that every two are consistent; the largest good one is kept.
func checkCheckpoints(ctx context.Context, cfg Config, v *Verifier, cps []seen, roots map[uint64][]byte, rep *Report) []Finding {
	var out []Finding
	var good []seen
	last := v.LastCheckpoint()
	for _, s := range cps {
		rep.Checkpoints++
		// A hub key revoked by now cannot sign a member's checkpoint now,
		// whatever time the note claims.
		// A gossiped note is judged at the time it claims.
		at := s.cp.Time
		if now := cfg.Now(); s.member != nil && now.After(at) || at.IsZero() {
			at = now
		}
		if err := s.cp.Verify(exchange.HubKeys(v.Trust(), at)...); err != nil {
			out = append(out, Finding{Kind: KindCheckpoint, Member: s.source, Size: s.cp.Size, Detail: fmt.Sprintf("not signed by a hub key in force: %v", err), Notes: []string{string(s.note)}})
			continue
		}
		out = append(out, checkCosignatures(v, s, cfg.Now())...)
		if last != nil && s.cp.Size < last.Size && !s.witnessed {
			out = append(out, Finding{Kind: KindCheckpoint, Member: s.source, Size: s.cp.Size, Detail: fmt.Sprintf("a signed checkpoint for %d leaves after one for %d was verified: the log cannot shrink", s.cp.Size, last.Size), Notes: []string{v.st.Last, string(s.note)}})
			continue
		}
		if r, ok := roots[s.cp.Size]; ok && !bytes.Equal(r, s.cp.Root) {
			out = append(out, Finding{Kind: KindCheckpoint, Member: s.source, Size: s.cp.Size, Detail: fmt.Sprintf("signed root %s, the log's leaves have root %s", b64(s.cp.Root), b64(r)), Notes: []string{string(s.note)}})
		}
		good = append(good, s)
	}
	if last != nil {
		good = append([]seen{{source: "the last verified checkpoint", note: []byte(v.st.Last), cp: last}}, good...)
	}
	sort.SliceStable(good, func(i, j int) bool { return good[i].cp.Size < good[j].cp.Size })
	for i := 0; i < len(good); i++ {
		for j := i + 1; j < len(good); j++ {
			a, b := good[i], good[j]
			if f, ok := consistent(ctx, cfg, v, a, b); !ok {
				out = append(out, f)
			}
		}
	}
	if len(good) > 0 && len(out) == 0 {
		top := good[len(good)-1]
		if top.cp.Size <= v.Size() {
			v.SetLastCheckpoint(top.note)
		}
	}
	return out
}

// checkCosignatures: every witness line on a checkpoint that names a
// witness of the trust list (a province or the auditor, not revoked) must
// verify; each one that does not is a finding naming the member that
// served the note and the witness.
func checkCosignatures(v *Verifier, s seen, now time.Time) []Finding {
	_, bad := s.cp.VerifyCosignatures(exchange.WitnessesOf(v.Trust(), now), now)
	var out []Finding
	for _, c := range bad {
		out = append(out, Finding{Kind: KindCosignature, Member: s.source, Size: s.cp.Size, Witness: c.Name,
			Detail: fmt.Sprintf("the cosignature of witness %s on the checkpoint of size %d does not verify (key id, signature, or dated more than 5 minutes ahead)", c.Name, s.cp.Size),
			Notes:  []string{string(s.note)}})
	}
	return out
}

// consistent says whether two signed checkpoints (a no larger than b) can
// both be true; if not, the finding carries both notes. Two of the same size
// must have the same root; otherwise a consistency proof, from b's member or
// any member, must hold. A proof that cannot be had is not a finding.
func consistent(ctx context.Context, cfg Config, v *Verifier, a, b seen) (Finding, bool) {
	split := func(detail string) (Finding, bool) {
		return Finding{Kind: KindSplitView, Member: a.source + " / " + b.source, Size: b.cp.Size, Detail: detail, Notes: []string{string(a.note), string(b.note)}}, false
	}
	if a.cp.Size == b.cp.Size {
		if !bytes.Equal(a.cp.Root, b.cp.Root) {
			return split(fmt.Sprintf("two signed checkpoints for %d leaves with roots %s and %s: the hub showed two histories", a.cp.Size, b64(a.cp.Root), b64(b.cp.Root)))
		}
		return Finding{}, true
	}
	if a.cp.Size == 0 {
		return Finding{}, true
	}
	hubs := []*exchange.HubClient{}
	if b.member != nil {
		hubs = append(hubs, b.member)
	}
	hubs = append(hubs, cfg.Hub)
	for _, h := range hubs {
		p, err := h.ConsistencyProof(ctx, a.cp.Size, b.cp.Size)
		if errors.Is(err, exchange.ErrMalformedProof) {
			return Finding{Kind: KindProof, Member: h.Members()[0], Size: b.cp.Size, Detail: err.Error()}, false
		}
		if err != nil {
			continue
		}
		if err := proof.VerifyConsistency(exchange.LogHasher{}, a.cp.Size, b.cp.Size, p, a.cp.Root, b.cp.Root); err != nil {
			return split(fmt.Sprintf("signed checkpoints for %d and %d leaves are not consistent (the proof from %s fails: %v): the hub showed two histories", a.cp.Size, b.cp.Size, h.Members()[0], err))
		}
		return Finding{}, true
	}
	cfg.Logger.Warn("no member served a consistency proof", "from", a.cp.Size, "to", b.cp.Size)
	return Finding{}, true
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
