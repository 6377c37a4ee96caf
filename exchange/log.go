package exchange

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hcxfed/hcx/certs"
	"github.com/transparency-dev/merkle"
)

// LogHasher is the log's tree hasher (PROTOCOL.md §4): RFC 6962 shape over
// SM3. leaf = SM3(0x00 || leaf), node = SM3(0x01 || left || right), and the
// empty tree's root is SM3(""). The hub builds its tree with it and every
// follower rebuilds the tree of what it applied with it.
type LogHasher struct{}

var _ merkle.LogHasher = LogHasher{}

// EmptyRoot is SM3 of the empty string.
func (LogHasher) EmptyRoot() []byte { s := certs.SM3(nil); return s[:] }

// HashLeaf hashes one leaf's bytes.
func (LogHasher) HashLeaf(leaf []byte) []byte {
	h := certs.NewSM3()
	h.Write([]byte{0})
	h.Write(leaf)
	return h.Sum(nil)
}

// HashChildren hashes an interior node.
func (LogHasher) HashChildren(l, r []byte) []byte {
	h := certs.NewSM3()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// Size is 32.
func (LogHasher) Size() int { return 32 }

// Checkpoint notes (PROTOCOL.md §4): a C2SP tlog-checkpoint signed note.
const (
	// CheckpointOrigin is the first line of every checkpoint.
	CheckpointOrigin = "hcx.national-hub/v1"
	// CheckpointKeyName names the hub's checkpoint key in the signature line.
	CheckpointKeyName = "hcx.national-hub"
	// MaxCheckpointBytes bounds a checkpoint note; a longer one is refused
	// before it is read.
	MaxCheckpointBytes = 16 << 10
	// maxNoteSignatures bounds the signature lines a note may carry: the
	// hub's and witnesses' cosignatures (cosign.go).
	maxNoteSignatures = 64
)

// ErrMalformedCheckpoint is returned for a checkpoint note that is not in
// the canonical form of PROTOCOL.md §4; the error names the line.
var ErrMalformedCheckpoint = errors.New("malformed checkpoint note")

// ErrCheckpointSignature is returned when a checkpoint note carries no
// signature by a hub key the verifier trusts.
var ErrCheckpointSignature = errors.New("checkpoint is not signed by a trusted hub key")

// Checkpoint is a parsed checkpoint note.
type Checkpoint struct {
	Size uint64
	Root []byte
	Time time.Time // the hub's clock when it signed (zero without a time line)
	Body []byte    // the signed text
	Sigs []NoteSignature
	// Cosigs are the lines by witness key names (WitnessNamePrefix), read
	// but not verified: VerifyCosignatures checks them.
	Cosigs []Cosignature
}

// NoteSignature is one signature line by CheckpointKeyName.
type NoteSignature struct {
	KeyHash [4]byte
	Sig     []byte // SM2 DER
}

// CheckpointKeyHash is the note key hash of an SM2 public key: the first 4
// bytes of SHA-256(keyname || "\n" || 0xff || "hcx-sm2" || uncompressed key).
func CheckpointKeyHash(pub *ecdsa.PublicKey) [4]byte {
	h := sha256.New()
	h.Write([]byte(CheckpointKeyName + "\n"))
	h.Write([]byte{0xff})
	h.Write([]byte("hcx-sm2"))
	h.Write(certs.MarshalPublicKey(pub))
	var out [4]byte
	copy(out[:], h.Sum(nil))
	return out
}

// SignCheckpoint makes the signed note for a tree of size with root at t.
func SignCheckpoint(s *certs.Signer, size uint64, root []byte, t time.Time) ([]byte, error) {
	body := fmt.Sprintf("%s\n%d\n%s\ntime %d\n", CheckpointOrigin, size, base64.StdEncoding.EncodeToString(root), t.Unix())
	sig, err := s.Sign([]byte(body))
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	kh := CheckpointKeyHash(s.Public())
	return []byte(body + "\n— " + CheckpointKeyName + " " + base64.StdEncoding.EncodeToString(append(kh[:], sig...)) + "\n"), nil
}

// ParseCheckpoint reads a checkpoint note without checking its signature.
// It accepts only the canonical form: the origin line, the size in decimal
// without leading zeros, the root in padded standard base64 of 32 bytes, at
// most one `time` line, then a blank line and one or more signature lines
// of which at least one is by CheckpointKeyName. Errors wrap
// ErrMalformedCheckpoint and name the line.
func ParseCheckpoint(note []byte) (*Checkpoint, error) {
	if len(note) > MaxCheckpointBytes {
		return nil, malformedNote("the note is %d bytes, more than %d", len(note), MaxCheckpointBytes)
	}
	if !utf8.Valid(note) {
		return nil, malformedNote("the note is not UTF-8")
	}
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return nil, malformedNote("no blank line between body and signatures")
	}
	body, sigs := note[:i+1], string(note[i+2:])
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) < 3 || lines[0] != CheckpointOrigin {
		return nil, malformedNote("want origin %q, then size and root lines", CheckpointOrigin)
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return nil, malformedNote("size line %q: %v", lines[1], err)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return nil, malformedNote("root line %q is not a base64 32-byte hash", lines[2])
	}
	cp := &Checkpoint{Size: size, Root: root, Body: body}
	seenTime := false
	for _, l := range lines[3:] {
		v, ok := strings.CutPrefix(l, "time ")
		if !ok {
			continue // other extension lines are signed but carry nothing for us
		}
		if seenTime {
			return nil, malformedNote("more than one time line")
		}
		seenTime = true
		t, err := parseDecimal(v)
		if err != nil || t > 1<<40 {
			return nil, malformedNote("time line %q is not Unix seconds", l)
		}
		cp.Time = time.Unix(int64(t), 0).UTC()
	}
	if sigs == "" {
		return nil, malformedNote("no signature line by %s", CheckpointKeyName)
	}
	if !strings.HasSuffix(sigs, "\n") {
		return nil, malformedNote("the signature block does not end with a newline")
	}
	sigLines := strings.Split(strings.TrimSuffix(sigs, "\n"), "\n")
	if len(sigLines) > maxNoteSignatures {
		return nil, malformedNote("%d signature lines, at most %d", len(sigLines), maxNoteSignatures)
	}
	for _, l := range sigLines {
		rest, ok := strings.CutPrefix(l, "— ")
		if !ok {
			return nil, malformedNote("signature line %q does not start with an em dash and a space", l)
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok || name == "" {
			return nil, malformedNote("signature line %q has no key name", l)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(raw) < 5 {
			return nil, malformedNote("signature by %s is not base64 of a key hash and a signature", name)
		}
		if strings.HasPrefix(name, WitnessNamePrefix) {
			c, err := parseCosignature(name, raw, l)
			if err != nil {
				return nil, err
			}
			cp.Cosigs = append(cp.Cosigs, c)
			continue
		}
		if name != CheckpointKeyName {
			continue // another party's line: not ours to check
		}
		var s NoteSignature
		copy(s.KeyHash[:], raw[:4])
		s.Sig = raw[4:]
		cp.Sigs = append(cp.Sigs, s)
	}
	if len(cp.Sigs) == 0 {
		return nil, malformedNote("no signature line by %s", CheckpointKeyName)
	}
	return cp, nil
}

func malformedNote(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedCheckpoint, fmt.Sprintf(format, a...))
}

// parseDecimal reads a canonical unsigned decimal: digits only, no leading
// zero unless the number is 0.
func parseDecimal(s string) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a canonical decimal number")
	}
	return strconv.ParseUint(s, 10, 64)
}

// Verify checks the note's signature against one of the hub keys given. It
// returns an error wrapping ErrCheckpointSignature if none verifies.
func (c *Checkpoint) Verify(keys ...*ecdsa.PublicKey) error {
	for _, k := range keys {
		kh := CheckpointKeyHash(k)
		for _, s := range c.Sigs {
			if s.KeyHash == kh && certs.VerifySM2(k, c.Body, s.Sig) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w (size %d; tried %d hub keys)", ErrCheckpointSignature, c.Size, len(keys))
}

// HubKeys are the public keys of the hub-role certificates in ts that were
// not revoked at or before at: the keys a checkpoint signed at at may carry.
func HubKeys(ts *certs.TrustStore, at time.Time) []*ecdsa.PublicKey {
	var keys []*ecdsa.PublicKey
	for _, e := range ts.Entries() {
		if e.Role != certs.RoleHub {
			continue
		}
		if r, ok := ts.RevokedAt(e.KID); ok && !at.Before(r) {
			continue
		}
		keys = append(keys, e.PublicKey())
	}
	return keys
}

// VerifyCheckpoint parses a checkpoint note and checks that a hub key in ts
// signed it. Errors wrap ErrMalformedCheckpoint or ErrCheckpointSignature.
func VerifyCheckpoint(ts *certs.TrustStore, note []byte) (*Checkpoint, error) {
	cp, err := ParseCheckpoint(note)
	if err != nil {
		return nil, err
	}
	if err := cp.Verify(HubKeys(ts, cp.Time)...); err != nil {
		return nil, err
	}
	return cp, nil
}
