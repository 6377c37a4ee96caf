// Package offline is the device side of offline verification (PROTOCOL.md
// §9): a checkpoint device keeps a node's verification bundle in a
// directory, syncs it while online, and answers code checks offline exactly
// as the node would at the same log size and clock (exchange.Answer).
package offline

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/transparency-dev/merkle/proof"
)

const (
	bundleFile = "bundle"
	stateFile  = "state.json"
)

// Errors a device answers with instead of a verification.
var (
	// ErrClockBehind: the device clock is before the newest checkpoint it
	// has seen, so it cannot be trusted to judge expiry.
	ErrClockBehind = &hcx.Error{Class: hcx.EUnprocessable, Code: "clock_behind", Message: "the device clock is earlier than the newest checkpoint this device has seen; set the device clock to the right time"}
	// ErrBundleStale: the bundle is older than the limit; sync it.
	ErrBundleStale = &hcx.Error{Class: hcx.EUnprocessable, Code: "bundle_stale", Message: "the verification bundle is older than the limit; connect the device and run `hcx verify sync`"}
	// ErrNoBundle: the device has never synced.
	ErrNoBundle = &hcx.Error{Class: hcx.EUnprocessable, Code: "no_bundle", Message: "this device has no verification bundle yet; run `hcx verify sync` while online"}
	// ErrRollback: a bundle older than the one the device has.
	ErrRollback = errors.New("the bundle rolls the log back")
)

// State is what a device remembers between syncs.
type State struct {
	// Header is the installed bundle's verified header; Offset where its
	// records start in the bundle file.
	Header exchange.BundleHeader `json:"header"`
	Offset int64                 `json:"offset"`
	// Newest checkpoint seen: its size, root and time.
	CheckpointSize uint64 `json:"checkpoint_size"`
	CheckpointRoot string `json:"checkpoint_root"`
	CheckpointTime int64  `json:"checkpoint_time"`
	// ETag is the node's tag of the bundle, sent back as If-None-Match.
	ETag string `json:"etag,omitempty"`
}

// Device is a checkpoint device's bundle directory.
type Device struct {
	dir     string
	rootDER []byte
	// MaxAge, when set, tightens the bundle's signed max_age; it never
	// loosens it.
	MaxAge time.Duration
	// Cosignatures, when above 0, is how many witnesses (k) must have
	// cosigned a bundle's checkpoint for the device to install it;
	// Witnesses narrows them to these trust-list kids, else every witness
	// of the bundle's root-signed trust list counts. Now is the clock
	// Install checks cosignatures at (time.Now if nil; Sync uses its now).
	Cosignatures int
	Witnesses    []string
	Now          func() time.Time

	mu    sync.RWMutex
	state *State
	trust *certs.TrustStore
	file  *os.File
}

// Open opens (or prepares) the directory dir of a device pinned to the
// national root certificate rootDER.
func Open(dir string, rootDER []byte) (*Device, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &Device{dir: dir, rootDER: rootDER}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("device state %s: %w (delete the directory and sync again)", filepath.Join(dir, stateFile), err)
	}
	if err := d.load(&st); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Device) load(st *State) error {
	ts, err := certs.NewTrustStoreDER(d.rootDER)
	if err != nil {
		return err
	}
	if _, err := exchange.ApplyTrustList(ts, st.Header.Trust); err != nil {
		return fmt.Errorf("stored bundle's trust list: %w", err)
	}
	f, err := os.Open(filepath.Join(d.dir, bundleFile))
	if err != nil {
		return err
	}
	if d.file != nil {
		d.file.Close()
	}
	d.state, d.trust, d.file = st, ts, f
	return nil
}

// Close releases the bundle file.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file != nil {
		return d.file.Close()
	}
	return nil
}

// State returns a copy of the device's state, nil before the first sync.
func (d *Device) State() *State {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.state == nil {
		return nil
	}
	s := *d.state
	return &s
}

// Install verifies a bundle read from r and, if every check passes, makes
// it the device's bundle (atomic rename); otherwise nothing changes.
// fromProof is the consistency proof from the log size of the bundle the
// device has to the new bundle's size (empty when the sizes are equal or on
// the first sync). Checks, in order: trust list signed by the pinned root,
// header signed by a province key of the bundle's province, checkpoint
// signed by a hub key, at least Cosignatures witness cosignatures on it,
// the node's tree consistent with the checkpoint, no
// rollback (checkpoint and log size not older, the old tree a prefix of
// the new), the body's SM3.
func (d *Device) Install(r io.Reader, fromProof [][]byte) error {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	return d.install(r, fromProof, "", now())
}

func (d *Device) install(r io.Reader, fromProof [][]byte, etag string, now time.Time) error {
	br := bufio.NewReaderSize(r, 64<<10)
	line, err := readLine(br, exchange.MaxBundleHeaderBytes)
	if err != nil {
		return fmt.Errorf("%w: header: %v", exchange.ErrBadBundle, err)
	}
	vb, err := exchange.VerifyBundleHeader(d.rootDER, line)
	if err != nil {
		return err
	}
	if err := d.checkCosignatures(vb, now); err != nil {
		return err
	}
	h := vb.Header
	d.mu.RLock()
	old := d.state
	d.mu.RUnlock()
	st := &State{Header: h, Offset: int64(len(line) + 1), CheckpointSize: vb.Checkpoint.Size,
		CheckpointRoot: base64.StdEncoding.EncodeToString(vb.Checkpoint.Root), CheckpointTime: vb.Checkpoint.Time.Unix(), ETag: etag}
	if old != nil {
		if err := checkNoRollback(old, st, vb, fromProof); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(d.dir, "bundle-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 64<<10)
	w.WriteString(line + "\n")
	if err := vb.VerifyBundleBody(io.TeeReader(br, w)); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(w.Flush(), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	sb, err := json.Marshal(st)
	if err != nil {
		return err
	}
	stmp := filepath.Join(d.dir, stateFile+".tmp")
	if err := os.WriteFile(stmp, sb, 0o600); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Rename(tmp.Name(), filepath.Join(d.dir, bundleFile)); err != nil {
		return err
	}
	if err := os.Rename(stmp, filepath.Join(d.dir, stateFile)); err != nil {
		return err
	}
	return d.load(st)
}

// checkCosignatures refuses a bundle whose checkpoint carries fewer than
// d.Cosignatures valid cosignatures by witnesses of its trust list (a
// witness revoked by now does not count), saying how many of how many.
func (d *Device) checkCosignatures(vb *exchange.VerifiedBundle, now time.Time) error {
	if d.Cosignatures <= 0 {
		return nil
	}
	ws := exchange.FilterWitnesses(exchange.WitnessesOf(vb.Trust, now), d.Witnesses)
	if err := vb.Checkpoint.RequireCosignatures(ws, d.Cosignatures, now); err != nil {
		return fmt.Errorf("%w: checkpoint: %w", exchange.ErrBadBundle, err)
	}
	return nil
}

func checkNoRollback(old, st *State, vb *exchange.VerifiedBundle, fromProof [][]byte) error {
	h := vb.Header
	if st.CheckpointSize < old.CheckpointSize || st.CheckpointTime < old.CheckpointTime {
		return fmt.Errorf("%w: its checkpoint (size %d, %s) is older than the one this device has (size %d, %s)", ErrRollback,
			st.CheckpointSize, time.Unix(st.CheckpointTime, 0).UTC().Format(time.RFC3339), old.CheckpointSize, time.Unix(old.CheckpointTime, 0).UTC().Format(time.RFC3339))
	}
	if h.Size < old.Header.Size {
		return fmt.Errorf("%w: it reflects log size %d, this device has %d", ErrRollback, h.Size, old.Header.Size)
	}
	oldRoot, err := base64.StdEncoding.DecodeString(old.Header.Root)
	if err != nil {
		return err
	}
	if h.Size == old.Header.Size {
		if !bytes.Equal(oldRoot, vb.Root) {
			return fmt.Errorf("%w: the log of size %d has another root than the one this device has", ErrRollback, h.Size)
		}
		return nil
	}
	if err := proof.VerifyConsistency(exchange.LogHasher{}, old.Header.Size, h.Size, fromProof, oldRoot, vb.Root); err != nil {
		return fmt.Errorf("%w: the log of size %d this device has is not a prefix of the new one of size %d: %v", ErrRollback, old.Header.Size, h.Size, err)
	}
	return nil
}

func readLine(br *bufio.Reader, max int) (string, error) {
	var buf []byte
	for {
		part, err := br.ReadSlice('\n')
		buf = append(buf, part...)
		if len(buf) > max+1 {
			return "", fmt.Errorf("the header line is longer than %d bytes", max)
		}
		if err == nil {
			return string(buf[:len(buf)-1]), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// Result is an offline answer: the verification as the node gives it, and
// how old the bundle's checkpoint is.
type Result struct {
	Verification *exchange.Verification
	Age          time.Duration
}

// Age is how old the device's newest checkpoint is at now.
func (d *Device) Age(now time.Time) (time.Duration, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.state == nil {
		return 0, ErrNoBundle
	}
	return now.Sub(time.Unix(d.state.CheckpointTime, 0)), nil
}

// Limit is the age limit in force: the bundle's signed max_age, tightened
// by the device's own MaxAge; 0 before the first sync.
func (d *Device) Limit() time.Duration {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.state == nil {
		return 0
	}
	return d.maxAge()
}

func (d *Device) maxAge() time.Duration {
	m := time.Duration(d.state.Header.MaxAge) * time.Second
	if d.MaxAge > 0 && d.MaxAge < m {
		m = d.MaxAge
	}
	return m
}

// Verify answers a code check offline at now. It refuses (ErrClockBehind)
// a clock earlier than the newest checkpoint seen and (ErrBundleStale) any
// code once the bundle is older than the limit; otherwise the answer, or
// the error, is exactly the node's at the bundle's log size.
func (d *Device) Verify(qr string, now time.Time) (*Result, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.state == nil {
		return nil, ErrNoBundle
	}
	cpTime := time.Unix(d.state.CheckpointTime, 0)
	if now.Before(cpTime) {
		return nil, clockError(ErrClockBehind, "device clock %s, newest checkpoint %s", now.UTC().Format(time.RFC3339), cpTime.UTC().Format(time.RFC3339))
	}
	age := now.Sub(cpTime)
	if age > d.maxAge() {
		return nil, clockError(ErrBundleStale, "the checkpoint is %s old, the limit is %s", age.Round(time.Second), d.maxAge())
	}
	claims, _, err := exchange.VerifyCode(d.trust, qr, now)
	if err != nil {
		return &Result{Age: age}, err
	}
	atts, err := exchange.LookupBundle(d.file, d.state.Offset, &d.state.Header, claims.Sub)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	return &Result{Verification: exchange.Answer(claims, atts, now, d.state.Header.Size), Age: age}, nil
}

func clockError(base *hcx.Error, format string, a ...any) error {
	e := *base
	e.Message = base.Message + " (" + fmt.Sprintf(format, a...) + ")"
	e.Err = base
	return &e
}
