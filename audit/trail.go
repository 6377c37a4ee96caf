package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// Operator trails (docs/decisions.md, "Issue 13: the operator trail is
// append-only"). While it verifies the log, the auditor keeps every trail
// head a province logged (exchange.AuditHead) that it has not yet checked
// against the province's trail; a head that goes back is a finding at
// once (trail_forked). CheckTrail then reads the province's trail from its
// node (GET /v1/audit), verifies the chain (node.VerifyAuditRecords) from
// the last head it checked, and finds every logged head the trail
// contradicts (trail_rewritten) or does not reach (trail_truncated).

// Trail finding kinds.
const (
	KindTrailForked    = "trail_forked"    // a logged head with a lower trail seq than an earlier one, or the same seq with another hash
	KindTrailRewritten = "trail_rewritten" // the trail's hash at a logged head's seq is not the head's
	KindTrailTruncated = "trail_truncated" // the trail ends before a logged head's seq
	KindTrailBroken    = "trail_broken"    // the entries served do not chain, or do not end at the head the node signs
)

// MaxTrailHeads bounds the logged heads kept per province until its trail
// is checked (about 2 years of heads every 10 minutes). Past it, later
// heads are checked only as the newest.
const MaxTrailHeads = 100000

// maxTrailPageBytes bounds one page of a trail as read (node.MaxAuditPage
// entries of at most a few KiB).
const maxTrailPageBytes = 16 << 20

// pTrail keys the heads kept: trail/<province>/<seq 8 bytes> -> hash (64
// hex) || leaf index (8 bytes).
const pTrail = "trail/"

// trailHead is a logged head: its trail seq and hash, and the leaf.
type trailHead struct {
	Seq   uint64 `json:"seq"`
	Hash  string `json:"hash"`
	Index uint64 `json:"index"`
}

// trailState is what the auditor keeps of a province's trail.
type trailState struct {
	// Last is the newest head logged, nil before the first.
	Last *trailHead `json:"last,omitempty"`
	// Checked is the newest logged head the trail was found to reach, nil
	// before the first check: the next check starts there.
	Checked *trailHead `json:"checked,omitempty"`
	// Kept counts the heads stored under pTrail; Unkept those past
	// MaxTrailHeads.
	Kept   int `json:"kept"`
	Unkept int `json:"unkept,omitempty"`
}

func trailKey(prov string, seq uint64) []byte {
	k := []byte(pTrail + prov + "/")
	return binary.BigEndian.AppendUint64(k, seq)
}

// appendHead takes a trail head verified in leaf i: a head that goes back
// is a finding; a new one is kept until the trail is checked.
func (v *Verifier) appendHead(i uint64, h *exchange.AuditHead) []Finding {
	prov := string(h.Iss)
	ts := v.st.Trails[prov]
	if ts == nil {
		ts = &trailState{}
		v.st.Trails[prov] = ts
	}
	if l := ts.Last; l != nil {
		bad := func(format string, a ...any) []Finding {
			return []Finding{{Kind: KindTrailForked, Index: idx(i), Province: prov, Seq: h.Seq, Detail: fmt.Sprintf(format, a...)}}
		}
		switch {
		case h.Seq < l.Seq:
			return bad("province %s logged trail seq %d after seq %d (leaf %d): a trail only grows", prov, h.Seq, l.Seq, l.Index)
		case h.Seq == l.Seq && h.Hash != l.Hash:
			return bad("province %s logged trail seq %d with hash %s, and with %s at leaf %d: two histories", prov, h.Seq, h.Hash, l.Hash, l.Index)
		case h.Seq == l.Seq:
			return nil // the same head again
		}
	}
	ts.Last = &trailHead{Seq: h.Seq, Hash: h.Hash, Index: i}
	if ts.Kept >= MaxTrailHeads {
		ts.Unkept++
		return nil
	}
	v.heads[string(trailKey(prov, h.Seq))] = append([]byte(h.Hash), binary.BigEndian.AppendUint64(nil, i)...)
	ts.Kept++
	return nil
}

// keptHeads are the heads kept for prov above seq after, in seq order, and
// the newest one if it was not kept.
func (v *Verifier) keptHeads(prov string, after uint64) ([]trailHead, error) {
	var out []trailHead
	prefix := []byte(pTrail + prov + "/")
	err := v.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Seek(trailKey(prov, after+1)); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				return fmt.Errorf("stored head key %q", k)
			}
			h := trailHead{Seq: binary.BigEndian.Uint64(k[len(prefix):])}
			err := it.Item().Value(func(b []byte) error {
				if len(b) != 64+8 {
					return fmt.Errorf("stored head %s/%d is %d bytes, want 72", prov, h.Seq, len(b))
				}
				h.Hash, h.Index = string(b[:64]), binary.BigEndian.Uint64(b[64:])
				return nil
			})
			if err != nil {
				return err
			}
			out = append(out, h)
		}
		return nil
	})
	if ts := v.st.Trails[prov]; err == nil && ts != nil && ts.Last != nil && ts.Last.Seq > after &&
		(len(out) == 0 || out[len(out)-1].Seq != ts.Last.Seq) {
		out = append(out, *ts.Last)
	}
	return out, err
}

// TrailSource reads one province's trail: the node's GET /v1/audit.
type TrailSource interface {
	AuditPage(ctx context.Context, after uint64) (*node.AuditPage, error)
}

// TrailClient reads a node's trail over HTTP with the auditor's request
// tokens (HTTP signs them, such as a HubClient's after SignWith).
type TrailClient struct {
	Base string // the node's base URL
	HTTP *http.Client
}

// AuditPage reads the page of the trail after seq after, strictly: an
// entry with a member the auditor does not know could not be hashed as
// the node hashed it.
func (c *TrailClient) AuditPage(ctx context.Context, after uint64) (*node.AuditPage, error) {
	u := strings.TrimRight(c.Base, "/") + "/v1/audit?" + url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(node.MaxAuditPage)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTrailPageBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTrailPageBytes {
		return nil, fmt.Errorf("GET %s: the page is over %d bytes", u, maxTrailPageBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(b[:min(len(b), 512)]))
	}
	var page node.AuditPage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&page); err != nil {
		return nil, fmt.Errorf("GET %s: the page does not read as a trail page: %w", u, err)
	}
	if len(page.Entries) > node.MaxAuditPage {
		return nil, fmt.Errorf("GET %s: %d entries, asked for at most %d", u, len(page.Entries), node.MaxAuditPage)
	}
	return &page, nil
}

// CheckTrail reads province prov's trail from src, from the last head it
// checked, and returns what contradicts the heads prov logged. With no
// finding, the newest head the trail reaches becomes where the next check
// starts and the heads below it are forgotten (kept by the next Commit).
// An error is a trail that could not be read, not a finding.
func (v *Verifier) CheckTrail(ctx context.Context, prov hcx.ProvinceCode, src TrailSource) ([]Finding, error) {
	p := string(prov)
	ts := v.st.Trails[p]
	if ts == nil {
		ts = &trailState{}
	}
	after, prev := uint64(0), exchange.TrailZeroHash
	if ts.Checked != nil {
		after, prev = ts.Checked.Seq, ts.Checked.Hash
	}
	heads, err := v.keptHeads(p, after)
	if err != nil {
		return nil, err
	}
	finding := func(kind string, seq uint64, format string, a ...any) Finding {
		return Finding{Kind: kind, Province: p, Seq: seq, Detail: fmt.Sprintf(format, a...)}
	}
	newest := func() uint64 {
		if ts.Last != nil {
			return ts.Last.Seq
		}
		return 0
	}
	var out []Finding
	var reached *trailHead
	first := true
	var page *node.AuditPage
	for {
		if page, err = src.AuditPage(ctx, after); err != nil {
			return nil, fmt.Errorf("read the trail of %s after %d: %w", p, after, err)
		}
		if first {
			first = false
			if page.Head.Seq < after {
				return append(out, finding(KindTrailTruncated, newest(), "province %s's trail ends at seq %d, before the head it logged at seq %d (checked earlier), and the newest it logged at seq %d", p, page.Head.Seq, after, newest())), nil
			}
			if ts.Checked != nil && len(page.Entries) > 0 && page.Entries[0].Prev != prev {
				return append(out, finding(KindTrailRewritten, after, "province %s's trail no longer passes through the head it logged at seq %d (leaf %d, hash %s): entry %d follows %s; an entry at or before seq %d was rewritten", p, after, ts.Checked.Index, prev, page.Entries[0].Seq, page.Entries[0].Prev, after)), nil
			}
			if ts.Checked != nil && len(page.Entries) == 0 && page.Head.Seq == after && page.Head.Hash != prev {
				return append(out, finding(KindTrailRewritten, after, "province %s's trail ends at seq %d with hash %s, the head it logged at that seq (leaf %d) has %s", p, after, page.Head.Hash, ts.Checked.Index, prev)), nil
			}
		}
		last, err := node.VerifyAuditRecords(prev, after, page.Entries)
		if err != nil {
			return append(out, finding(KindTrailBroken, after, "province %s's trail after seq %d: %v", p, after, err)), nil
		}
		for _, e := range page.Entries {
			for len(heads) > 0 && heads[0].Seq <= e.Seq {
				h := heads[0]
				heads = heads[1:]
				if h.Seq == e.Seq && h.Hash != e.Hash {
					out = append(out, finding(KindTrailRewritten, h.Seq, "province %s's trail entry %d hashes to %s, the head it logged at seq %d (leaf %d) has %s: the trail was rewritten at or before entry %d", p, e.Seq, e.Hash, h.Seq, h.Index, h.Hash, h.Seq))
				} else if h.Seq == e.Seq {
					reached = &h
				}
			}
		}
		if len(page.Entries) > 0 {
			after = page.Entries[len(page.Entries)-1].Seq
		}
		prev = last
		if !page.More {
			break
		}
		if len(page.Entries) == 0 {
			return append(out, finding(KindTrailBroken, after, "province %s's node says more entries follow seq %d but served none", p, after)), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if page.Head.Seq != after || page.Head.Hash != prev {
		out = append(out, finding(KindTrailBroken, after, "province %s's trail entries end at seq %d with hash %s, its head says seq %d with %s", p, after, prev, page.Head.Seq, page.Head.Hash))
	} else if f := v.checkSignedHead(p, page); f != "" {
		out = append(out, finding(KindTrailBroken, after, "province %s's signed head: %s", p, f))
	}
	if len(heads) > 0 {
		out = append(out, finding(KindTrailTruncated, newest(), "province %s's trail ends at seq %d; it logged heads up to seq %d (the first beyond the end at seq %d, leaf %d)", p, after, newest(), heads[0].Seq, heads[0].Index))
	}
	if len(out) == 0 && reached != nil {
		ts.Checked = reached
		if v.st.Trails[p] == nil {
			v.st.Trails[p] = ts
		}
		v.forget[p] = reached.Seq
	}
	return out, nil
}

// checkSignedHead checks the head the node signed with the page: the log's
// envelope, by the province, naming the head the page ends at. It returns
// what is wrong, "" if nothing.
func (v *Verifier) checkSignedHead(prov string, page *node.AuditPage) string {
	env, err := exchange.Open(v.trust, page.SignedHead)
	if err != nil {
		return err.Error()
	}
	h, err := exchange.DecodeAuditHead(env)
	if err != nil {
		return err.Error()
	}
	if string(h.Iss) != prov || h.Seq != page.Head.Seq || h.Hash != page.Head.Hash {
		return fmt.Sprintf("it names %s at seq %d with %s, the page ends at seq %d with %s", h.Iss, h.Seq, h.Hash, page.Head.Seq, page.Head.Hash)
	}
	return ""
}

// commitTrails writes the heads taken since the last Commit and deletes
// those up to each checked trail's checked head.
func (v *Verifier) commitTrails() error {
	wb := v.db.NewWriteBatch()
	defer wb.Cancel()
	for k, val := range v.heads {
		if err := wb.Set([]byte(k), val); err != nil {
			return err
		}
	}
	provs := make([]string, 0, len(v.forget))
	for p := range v.forget {
		provs = append(provs, p)
	}
	sort.Strings(provs)
	for _, p := range provs {
		var dels [][]byte
		below := v.forget[p]
		prefix := []byte(pTrail + p + "/")
		err := v.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
				k := it.Item().Key()
				if len(k) == len(prefix)+8 && binary.BigEndian.Uint64(k[len(prefix):]) > below {
					break
				}
				dels = append(dels, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dels {
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		if ts := v.st.Trails[p]; ts != nil {
			ts.Kept = max(0, ts.Kept-len(dels))
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store trail heads: %w", err)
	}
	clear(v.heads)
	clear(v.forget)
	return nil
}
