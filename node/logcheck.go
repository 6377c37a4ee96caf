package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// The follower keeps the Merkle tree of the log prefix it applied as a
// compact range (the right edge of the tree: at most 64 hashes), stored with
// the follow position in the same transaction. Before it applies a page it
// checks the page against the hub's newest signed checkpoint, all read from
// one member:
//
//   - the checkpoint is signed by a hub key of the trust list in force (or of
//     a root-signed trust list in the page itself, for the first page);
//   - our tree with the page appended has the checkpoint's root if it has its
//     size; if the checkpoint is smaller, a consistency proof from the
//     checkpoint to our tree holds; if it is larger, a consistency proof from
//     our tree to the checkpoint holds.
//
// Anything else is a fork: the page is not applied, the member is never read
// again by this process, Ready says so, and the follower moves to the next
// member. See docs/decisions.md "Follower (issue 8)".

var logRanges = compact.RangeFactory{Hash: exchange.LogHasher{}.HashChildren}

// ForkError says that a hub member served a log that contradicts its own
// signed checkpoint or the tree this node already applied. Node.Ready
// returns it until another member's signed checkpoint checks out.
type ForkError struct {
	Member string // the member's base URL
	Size   uint64 // the size of the tree the check was made at
	Reason string
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("the hub's log forked at size %d at member %s: %s; this node does not apply entries from that member (check the hub, then restart the node to try it again)", e.Size, e.Member, e.Reason)
}

// unverifiedError is a check that could not be made (no checkpoint yet, a
// proof the member could not serve, a network failure): nothing is applied
// and the follower tries again; it is not evidence of a fork.
type unverifiedError struct {
	err error
	// soon: the member is fine and the answer comes by itself (its first
	// checkpoint is not signed yet): ask it again shortly, without backing
	// off or moving to another member.
	soon bool
}

func (e *unverifiedError) Error() string { return "log not verified yet: " + e.err.Error() }
func (e *unverifiedError) Unwrap() error { return e.err }

// logTree is the follower's tree: its compact range and its root.
type logTree struct {
	rng  *compact.Range
	root []byte
	// cp is the newest hub checkpoint verified against this tree, with the
	// consistency proof between the two; nil until the follower checked one
	// (a verification bundle carries it, bundle.go).
	cp *treeCheckpoint
	// wcp is the newest checkpoint with Config.Cosignatures witness
	// cosignatures verified against this tree; nil when the node requires
	// none or holds none yet (bundles then carry it instead of cp).
	wcp *treeCheckpoint
}

// treeCheckpoint is a verified checkpoint note and the consistency hashes
// between the tree of Size leaves and the note's size (either direction).
type treeCheckpoint struct {
	Size  uint64   `json:"size"`
	Note  string   `json:"note"`
	Proof [][]byte `json:"proof"`
}

func newLogTree(rng *compact.Range) (*logTree, error) {
	if rng.End() == 0 {
		return &logTree{rng: rng, root: exchange.LogHasher{}.EmptyRoot()}, nil
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	return &logTree{rng: rng, root: root}, nil
}

// extend returns the tree with entries appended; t is unchanged (the range
// appends in place, so it works on a copy of the hashes).
func (t *logTree) extend(entries []string) (*logTree, error) {
	hs := make([][]byte, len(t.rng.Hashes()))
	for i, h := range t.rng.Hashes() {
		hs[i] = append([]byte(nil), h...)
	}
	rng, err := logRanges.NewRange(0, t.rng.End(), hs)
	if err != nil {
		return nil, err
	}
	var h exchange.LogHasher
	for _, raw := range entries {
		if err := rng.Append(h.HashLeaf([]byte(raw)), nil); err != nil {
			return nil, err
		}
	}
	return newLogTree(rng)
}

// encode is size (8 bytes, big-endian) || the range's hashes.
func (t *logTree) encode() []byte {
	out := append(make([]byte, 0, 8+32*len(t.rng.Hashes())), u64b(t.rng.End())...)
	for _, h := range t.rng.Hashes() {
		out = append(out, h...)
	}
	return out
}

func decodeLogTree(b []byte) (*logTree, error) {
	if len(b) < 8 || (len(b)-8)%32 != 0 {
		return nil, fmt.Errorf("stored log tree is %d bytes, not a size and 32-byte hashes", len(b))
	}
	var hs [][]byte
	for i := 8; i < len(b); i += 32 {
		hs = append(hs, b[i:i+32])
	}
	rng, err := logRanges.NewRange(0, u64(b[:8]), hs)
	if err != nil {
		return nil, fmt.Errorf("stored log tree: %w", err)
	}
	return newLogTree(rng)
}

// loadLogTree reads the stored tree. A store written before the follower
// kept one has a follow position and no tree: the follower then starts over
// from leaf 0, which re-applies what it had (harmless: attestations only
// replace lower per-subject sequences) and rebuilds the tree on the way.
func loadLogTree(txn *badger.Txn) (*logTree, error) {
	item, err := txn.Get([]byte(kFollowTree))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return newLogTree(logRanges.NewEmptyRange(0))
	}
	if err != nil {
		return nil, err
	}
	var t *logTree
	if err = item.Value(func(b []byte) error { t, err = decodeLogTree(b); return err }); err != nil {
		return nil, err
	}
	for key, dst := range map[string]**treeCheckpoint{kFollowCheckpoint: &t.cp, kFollowWitnessed: &t.wcp} {
		item, err = txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var cp treeCheckpoint
		if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &cp) }); err != nil {
			return nil, fmt.Errorf("stored checkpoint %s: %w", key, err)
		}
		// A checkpoint verified against a smaller tree has a proof for
		// that tree: it is checked again with the next page.
		if cp.Size == t.rng.End() {
			*dst = &cp
		}
	}
	return t, nil
}

// LogTree is the size and root of the log prefix the node has applied, as
// the node computed them from the leaves.
func (n *Node) LogTree() (size uint64, root []byte) {
	n.treeMu.Lock()
	defer n.treeMu.Unlock()
	return n.tree.rng.End(), append([]byte(nil), n.tree.root...)
}

// checkPage checks that the page entries, appended at start to the tree the
// node applied, agree with hub's newest signed checkpoint. It returns the
// extended tree; a *ForkError if they do not agree; an *unverifiedError if
// the check could not be made.
func (n *Node) checkPage(ctx context.Context, hub *exchange.HubClient, start uint64, entries []string) (*logTree, error) {
	n.treeMu.Lock()
	cur := n.tree
	n.treeMu.Unlock()
	if cur.rng.End() != start {
		return nil, fmt.Errorf("page starts at %d but the node's tree has %d leaves", start, cur.rng.End())
	}
	next, err := cur.extend(entries)
	if err != nil {
		return nil, err
	}
	size := next.rng.End()
	forked := forkAt(hub, size)
	note, err := hub.Checkpoint(ctx)
	if err != nil {
		var apiErr *exchange.APIError
		soon := errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound
		return nil, &unverifiedError{err: fmt.Errorf("fetch checkpoint: %w", err), soon: soon}
	}
	cp, err := exchange.ParseCheckpoint(note)
	if err != nil {
		return nil, forked("it serves a checkpoint that does not parse: %v", err)
	}
	if err := n.checkHubSigned(ctx, hub, cp, entries, "checkpoint", forked); err != nil {
		return nil, err
	}
	p, err := n.provenConsistent(ctx, hub, cp, next, "signed checkpoint", forked)
	if err != nil {
		return nil, err
	}
	next.cp = &treeCheckpoint{Size: size, Note: string(note), Proof: p}
	if n.cfg.Cosignatures > 0 {
		if next.wcp, err = n.checkWitnessed(ctx, hub, cur.wcp, next, entries, note, forked); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// forkAt makes the *ForkError of hub's member at a tree of size leaves.
func forkAt(hub *exchange.HubClient, size uint64) func(string, ...any) error {
	member := hub.Members()[0]
	return func(format string, a ...any) error {
		return &ForkError{Member: member, Size: size, Reason: fmt.Sprintf(format, a...)}
	}
}

// checkHubSigned checks that cp (what names it in a fork's reason) is
// signed by a hub key of the trust list in force, of a root-signed trust
// list among entries, or of the newest trust list the member serves.
func (n *Node) checkHubSigned(ctx context.Context, hub *exchange.HubClient, cp *exchange.Checkpoint, entries []string, what string, forked func(string, ...any) error) error {
	// A hub key revoked by now cannot sign the newest checkpoint, whatever
	// time the note claims.
	at := n.cfg.Now()
	if cp.Time.After(at) {
		at = cp.Time
	}
	keys := append(exchange.HubKeys(n.trust, at), n.hubKeysIn(entries)...)
	if cp.Verify(keys...) == nil {
		return nil
	}
	// A hub key can be newer than the node's trust list: a member that
	// joined after the trust list naming it, further on in the log.
	// The newest trust list is root-signed, so any member may bring it.
	newest, err := hub.Trust(ctx)
	if err != nil {
		return &unverifiedError{err: fmt.Errorf("%s of size %d is signed by a key this node does not know yet, and the newest trust list could not be fetched: %w", what, cp.Size, err)}
	}
	keys = append(keys, n.hubKeysIn([]string{newest})...)
	if len(keys) == 0 {
		return &unverifiedError{err: errors.New("no trust list names a hub key yet, so no checkpoint can be checked")}
	}
	if cp.Verify(keys...) != nil {
		return forked("its %s of size %d is not signed by a hub key of the trust list", what, cp.Size)
	}
	return nil
}

// provenConsistent checks that the tree next and the checkpoint cp (what
// names it) are one history, with a consistency proof from the member in
// whichever direction applies, and returns the proof (empty at equal
// sizes).
func (n *Node) provenConsistent(ctx context.Context, hub *exchange.HubClient, cp *exchange.Checkpoint, next *logTree, what string, forked func(string, ...any) error) ([][]byte, error) {
	size := next.rng.End()
	switch {
	case cp.Size == size:
		if !bytes.Equal(cp.Root, next.root) {
			return nil, forked("its %s has root %s, the entries it served have root %s", what, b64(cp.Root), b64(next.root))
		}
		return nil, nil
	case cp.Size < size:
		p, err := hub.ConsistencyProof(ctx, cp.Size, size)
		if err != nil {
			return nil, unverifiedOrFork(err, forked)
		}
		if err := proof.VerifyConsistency(exchange.LogHasher{}, cp.Size, size, p, cp.Root, next.root); err != nil {
			return nil, forked("the entries it served (root %s) are not an extension of its %s of size %d (root %s)", b64(next.root), what, cp.Size, b64(cp.Root))
		}
		return p, nil
	default:
		p, err := hub.ConsistencyProof(ctx, size, cp.Size)
		if err != nil {
			return nil, unverifiedOrFork(err, forked)
		}
		if err := proof.VerifyConsistency(exchange.LogHasher{}, size, cp.Size, p, next.root, cp.Root); err != nil {
			return nil, forked("its %s of size %d (root %s) does not extend the entries it served (root %s)", what, cp.Size, b64(cp.Root), b64(next.root))
		}
		return p, nil
	}
}

// checkWitnessed returns the newest checkpoint with Config.Cosignatures
// valid cosignatures for the tree next, with its proof, among: held (the
// one verified against the tree before), the member's newest checkpoint
// signed (its cosignatures so far; nil: fetched here) and its newest
// witnessed checkpoint. next must be consistent with it, or the member has
// forked. It returns nil when there is none: entries do not wait for
// cosigning (Ready says how long the tree has been ahead of its
// witnesses). A witness revoked since held was checked no longer counts.
func (n *Node) checkWitnessed(ctx context.Context, hub *exchange.HubClient, held *treeCheckpoint, next *logTree, entries []string, signed []byte, forked func(string, ...any) error) (*treeCheckpoint, error) {
	now := n.cfg.Now()
	ws, k := n.witnessesWith(now, entries), n.cfg.Cosignatures
	var best *exchange.Checkpoint
	var bestNote []byte
	if held != nil {
		if cp, err := exchange.ParseCheckpoint([]byte(held.Note)); err == nil && cp.RequireCosignatures(ws, k, now) == nil {
			best, bestNote = cp, []byte(held.Note)
		}
	}
	// consider takes note if it is hub-signed, carries k valid
	// cosignatures and is not older than the best so far.
	consider := func(note []byte, what string, checked bool) error {
		cp, err := exchange.ParseCheckpoint(note)
		if err != nil {
			return forked("it serves a %s that does not parse: %v", what, err)
		}
		if !checked {
			if err := n.checkHubSigned(ctx, hub, cp, entries, what, forked); err != nil {
				return err
			}
		}
		switch err := cp.RequireCosignatures(ws, k, now); {
		case err != nil:
			if len(cp.Cosigs) > 0 {
				n.metrics.witnessedShort.Add(1)
				n.log.Debug("the member's "+what+" falls short", "member", hub.Members()[0], "err", err)
			}
		case best != nil && cp.Size == best.Size && !bytes.Equal(cp.Root, best.Root):
			return forked("its %s of size %d has root %s, another witnessed checkpoint of that size has root %s", what, cp.Size, b64(cp.Root), b64(best.Root))
		case best == nil || cp.Size >= best.Size:
			best, bestNote = cp, note
		}
		return nil
	}
	checked := signed != nil
	if !checked {
		signed, _ = hub.Checkpoint(ctx)
	}
	if signed != nil {
		if err := consider(signed, "checkpoint", checked); err != nil {
			return nil, err
		}
	}
	if note, err := hub.WitnessedCheckpoint(ctx); err != nil {
		n.log.Debug("no witnessed checkpoint from this member", "member", hub.Members()[0], "err", err)
	} else if err := consider(note, "witnessed checkpoint", false); err != nil {
		return nil, err
	}
	if best == nil {
		return nil, nil
	}
	p, err := n.provenConsistent(ctx, hub, best, next, "witnessed checkpoint", forked)
	if err != nil {
		return nil, err
	}
	return &treeCheckpoint{Size: next.rng.End(), Note: string(bestNote), Proof: p}, nil
}

// unverifiedOrFork: a member that cannot serve a proof (busy, restarting,
// not caught up, unreachable) is asked again; one that answers with a proof
// of the wrong shape has lied.
func unverifiedOrFork(err error, forked func(string, ...any) error) error {
	if errors.Is(err, exchange.ErrMalformedProof) {
		return forked("%v", err)
	}
	return &unverifiedError{err: fmt.Errorf("fetch consistency proof: %w", err)}
}

// hubKeysIn are the hub keys, not revoked there, named by the root-signed
// trust lists among entries: the first page of the log carries the trust
// list that names the hub keys its checkpoint is signed with. Nothing is
// applied here.
func (n *Node) hubKeysIn(entries []string) []*ecdsa.PublicKey {
	var keys []*ecdsa.PublicKey
	for _, e := range n.trustedIn(entries) {
		if e.Role == certs.RoleHub {
			keys = append(keys, e.PublicKey())
		}
	}
	return keys
}

// trustedIn are the certificates, not revoked there, of the root-signed
// trust lists among entries.
func (n *Node) trustedIn(entries []string) []*certs.Entry {
	var out []*certs.Entry
	for _, raw := range entries {
		h, err := certs.ParseHeader(raw)
		if err != nil || h.Typ != exchange.HdrTrust {
			continue
		}
		env, err := exchange.Open(n.trust, raw)
		if err != nil {
			continue
		}
		tl, err := exchange.DecodeTrustList(env)
		if err != nil {
			continue
		}
		revoked := map[string]bool{}
		for _, r := range tl.Revoked {
			revoked[r.KID] = true
		}
		for _, c := range tl.Certs {
			if revoked[c.KID] {
				continue
			}
			der, err := base64.StdEncoding.DecodeString(c.DER)
			if err != nil {
				continue
			}
			if e, err := n.trust.CheckCertificate(der); err == nil && e.Role == c.Role {
				out = append(out, e)
			}
		}
	}
	return out
}

// reportFork records a fork: metrics, the error log line, and Ready.
func (n *Node) reportFork(f *ForkError) {
	n.metrics.forks.Add(1)
	n.fork.Store(f)
	n.log.Error("hub log fork: not applying entries from this member; trying the others", "member", f.Member, "size", f.Size, "reason", f.Reason)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// firstCheckpointPoll is how often the follower asks a member that has not
// signed its first checkpoint yet (the hub signs one every second).
const firstCheckpointPoll = 100 * time.Millisecond

// forkRetry is how long the follower waits before it looks again when every
// member has forked: it never applies from them, it only keeps Run alive.
const forkRetry = 30 * time.Second
