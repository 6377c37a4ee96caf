// Package witness is a transparency-log witness for the hub's checkpoints:
// the C2SP tlog-witness add-checkpoint protocol, with cosignatures in the
// SM2 form of PROTOCOL.md §4 (exchange.Cosign). A witness keeps the largest
// checkpoint it cosigned and cosigns a new one only if it is signed by a
// trusted hub key and a consistency proof leads to it from the one kept, so
// that two checkpoints it cosigned are always of one history. Province nodes
// and the national auditor run one each; the hub's leader submits every new
// checkpoint to them and serves the cosignatures with the checkpoint.
package witness

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/proof"
)

// Bounds of a request (tlog-witness: at most 63 proof lines).
const (
	MaxProofLines  = 63
	MaxRequestBody = 64 << 10
	maxConflicts   = 32
)

// Store keeps the largest checkpoint a witness cosigned.
type Store interface {
	// Latest returns the size and root hash of the largest checkpoint
	// cosigned (0 and nil if none).
	Latest() (size uint64, root []byte, err error)
	// Advance records a checkpoint of size with root (and its note) if the
	// stored size is still old, atomically; otherwise it returns an error
	// and changes nothing. It returns once the record is durable.
	Advance(old, size uint64, root, note []byte) error
}

// Config is a witness.
type Config struct {
	// Signer is the witness key: a province signer or an auditor's key,
	// listed in the trust list (its name is exchange.WitnessName(KID)).
	Signer *certs.Signer
	// LogKeys are the hub keys trusted for a checkpoint signed at at.
	LogKeys func(at time.Time) []*ecdsa.PublicKey
	Store   Store
	Now     func() time.Time
	Logger  *slog.Logger
}

// Witness cosigns consistent checkpoints.
type Witness struct {
	cfg  Config
	name string

	mu        sync.Mutex // one add-checkpoint at a time: check and advance are atomic
	conflicts []Conflict
	stats     Stats
}

// Stats counts what a witness did since it started.
type Stats struct {
	Cosigned      uint64 // checkpoints cosigned
	Malformed     uint64 // 400
	Unsigned      uint64 // 403: no trusted hub signature
	UnknownOrigin uint64 // 404
	Stale         uint64 // 409: the caller's old size was not ours (a normal restart)
	Conflicts     uint64 // 409 for a root that differs at our size, 422 for a proof that fails
}

// Conflict is a refused submission that contradicts what the witness
// cosigned: evidence of a split view when the note is signed by the hub.
type Conflict struct {
	At         time.Time `json:"at"`
	Caller     string    `json:"caller"`
	StoredSize uint64    `json:"stored_size"`
	StoredRoot string    `json:"stored_root"` // base64
	Old        uint64    `json:"old"`
	Size       uint64    `json:"size"`
	Root       string    `json:"root"` // base64
	Reason     string    `json:"reason"`
	Note       string    `json:"note"` // the submitted checkpoint
}

// Error is a refused add-checkpoint, with the HTTP status tlog-witness
// gives it. Size is the witness's stored size for a 409.
type Error struct {
	Status  int
	Code    string
	Message string
	Size    uint64
}

func (e *Error) Error() string { return e.Message }

func refuse(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// New checks cfg and makes a witness.
func New(cfg Config) (*Witness, error) {
	switch {
	case cfg.Signer == nil:
		return nil, errors.New("witness: Signer is nil")
	case cfg.LogKeys == nil:
		return nil, errors.New("witness: LogKeys is nil")
	case cfg.Store == nil:
		return nil, errors.New("witness: Store is nil")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Witness{cfg: cfg, name: exchange.WitnessName(cfg.Signer.KID)}, nil
}

// Name is the witness's note key name.
func (w *Witness) Name() string { return w.name }

// Stats returns the counters.
func (w *Witness) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Conflicts returns the last refused submissions that contradict what the
// witness cosigned, oldest first.
func (w *Witness) Conflicts() []Conflict {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Conflict(nil), w.conflicts...)
}

// Request is an add-checkpoint request body, read.
type Request struct {
	Old   uint64
	Proof [][]byte
	Note  []byte
}

// EncodeRequest is the add-checkpoint body: "old <size>", the proof hashes
// in base64 one a line, an empty line, the checkpoint note.
func EncodeRequest(old uint64, p [][]byte, note []byte) []byte {
	var b bytes.Buffer
	b.WriteString("old " + strconv.FormatUint(old, 10) + "\n")
	for _, h := range p {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(note)
	return b.Bytes()
}

// ParseRequest reads an add-checkpoint body strictly; errors are 400s.
func ParseRequest(body []byte) (*Request, error) {
	if len(body) > MaxRequestBody {
		return nil, refuse(400, "malformed_request", "the request is %d bytes, more than %d", len(body), MaxRequestBody)
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return nil, refuse(400, "malformed_request", "the request does not start with an old size line")
	}
	v, found := strings.CutPrefix(string(line), "old ")
	if !found {
		return nil, refuse(400, "malformed_request", "the first line %q is not \"old <size>\"", clip(line))
	}
	if v == "" || (len(v) > 1 && v[0] == '0') || strings.Trim(v, "0123456789") != "" {
		return nil, refuse(400, "malformed_request", "old size %q is not a decimal number without leading zeroes", clip([]byte(v)))
	}
	old, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, refuse(400, "malformed_request", "old size %q: %v", clip([]byte(v)), err)
	}
	req := &Request{Old: old}
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, refuse(400, "malformed_request", "no empty line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(req.Proof) == MaxProofLines {
			return nil, refuse(400, "malformed_request", "more than %d consistency proof lines", MaxProofLines)
		}
		h, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(h) != 32 {
			return nil, refuse(400, "malformed_request", "proof line %d is not a base64 32-byte hash", len(req.Proof)+1)
		}
		req.Proof = append(req.Proof, h)
	}
	req.Note = rest
	return req, nil
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// Add runs one add-checkpoint body sent by caller (named in logs and
// conflicts) and returns the cosignature line, or an *Error.
func (w *Witness) Add(caller string, body []byte) ([]byte, error) {
	line, err := w.add(caller, body)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			w.count(e.Status, e.Code)
		}
		return nil, err
	}
	return line, nil
}

func (w *Witness) count(status int, code string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case status == 400:
		w.stats.Malformed++
	case status == 403:
		w.stats.Unsigned++
	case status == 404:
		w.stats.UnknownOrigin++
	case status == 409 && code == "old_size_mismatch":
		w.stats.Stale++
	case status == 409 || status == 422:
		w.stats.Conflicts++
	}
}

func (w *Witness) add(caller string, body []byte) ([]byte, error) {
	req, err := ParseRequest(body)
	if err != nil {
		return nil, err
	}
	if origin, _, _ := bytes.Cut(req.Note, []byte("\n")); string(origin) != exchange.CheckpointOrigin {
		return nil, refuse(404, "unknown_origin", "this witness follows only the log %q, not %q", exchange.CheckpointOrigin, clip(origin))
	}
	cp, err := exchange.ParseCheckpoint(req.Note)
	if err != nil {
		return nil, refuse(400, "malformed_checkpoint", "%v", err)
	}
	if err := cp.Verify(w.cfg.LogKeys(cp.Time)...); err != nil {
		return nil, refuse(403, "checkpoint_signature", "%v", err)
	}
	if req.Old > cp.Size {
		return nil, refuse(400, "old_size_too_large", "old size %d is larger than the checkpoint's %d", req.Old, cp.Size)
	}
	if req.Old == 0 && len(req.Proof) != 0 {
		return nil, refuse(400, "malformed_request", "old size 0 takes no proof, got %d lines", len(req.Proof))
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	size, root, err := w.cfg.Store.Latest()
	if err != nil {
		return nil, fmt.Errorf("witness: read state: %w", err)
	}
	if req.Old != size {
		e := refuse(409, "old_size_mismatch", "this witness last cosigned size %d, not %d; send a proof from %d", size, req.Old, size)
		e.Size = size
		return nil, e
	}
	switch {
	case req.Old == cp.Size && size > 0 && !bytes.Equal(root, cp.Root):
		w.conflict(caller, size, root, req, cp, "same size, different root")
		e := refuse(409, "root_mismatch", "the checkpoint of size %d has root %s but this witness cosigned root %s for that size: two histories", cp.Size, b64(cp.Root), b64(root))
		e.Size = size
		return nil, e
	case req.Old > 0 && req.Old < cp.Size:
		if err := proof.VerifyConsistency(exchange.LogHasher{}, req.Old, cp.Size, req.Proof, root, cp.Root); err != nil {
			w.conflict(caller, size, root, req, cp, "consistency proof fails: "+err.Error())
			return nil, refuse(422, "inconsistent", "no consistency from the tree of size %d this witness cosigned to size %d: %v", size, cp.Size, err)
		}
	case req.Old == cp.Size && len(req.Proof) != 0:
		return nil, refuse(400, "malformed_request", "old size equals the checkpoint's: the proof must be empty, got %d lines", len(req.Proof))
	}
	line, err := exchange.Cosign(w.cfg.Signer, cp.Body, w.cfg.Now())
	if err != nil {
		return nil, err
	}
	if cp.Size != size || size == 0 {
		if err := w.cfg.Store.Advance(size, cp.Size, cp.Root, req.Note); err != nil {
			return nil, fmt.Errorf("witness: record size %d: %w", cp.Size, err)
		}
	}
	w.stats.Cosigned++
	return []byte(line), nil
}

// conflict records evidence; w.mu is held.
func (w *Witness) conflict(caller string, size uint64, root []byte, req *Request, cp *exchange.Checkpoint, reason string) {
	c := Conflict{At: w.cfg.Now().UTC(), Caller: caller, StoredSize: size, StoredRoot: b64(root), Old: req.Old,
		Size: cp.Size, Root: b64(cp.Root), Reason: reason, Note: string(req.Note)}
	if len(w.conflicts) == maxConflicts {
		w.conflicts = append(w.conflicts[:0], w.conflicts[1:]...)
	}
	w.conflicts = append(w.conflicts, c)
	w.cfg.Logger.Warn("witness: a hub-signed checkpoint contradicts the one cosigned", "caller", caller,
		"stored_size", size, "old", req.Old, "size", cp.Size, "reason", reason)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
