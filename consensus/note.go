package consensus

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// Checkpoint notes (PROTOCOL.md §4): a C2SP tlog-checkpoint signed note.
const (
	// Origin is the first line of every checkpoint.
	Origin = "hcx.national-hub/v1"
	// KeyName names the hub's checkpoint key in the signature line.
	KeyName = "hcx.national-hub"
)

// Checkpoint is a parsed checkpoint note.
type Checkpoint struct {
	Size    uint64
	Root    []byte
	Time    time.Time
	Body    []byte // the signed text
	KeyHash [4]byte
	Sig     []byte // SM2 DER
}

// KeyHash is the note key hash of an SM2 public key: the first 4 bytes of
// SHA-256(keyname || "\n" || 0xff || "hcx-sm2" || uncompressed key).
func KeyHash(pub *ecdsa.PublicKey) [4]byte {
	h := sha256.New()
	h.Write([]byte(KeyName + "\n"))
	h.Write([]byte{0xff})
	h.Write([]byte("hcx-sm2"))
	h.Write(certs.MarshalPublicKey(pub))
	var out [4]byte
	copy(out[:], h.Sum(nil))
	return out
}

// SignCheckpoint makes the signed note for a tree of size with root at t.
func SignCheckpoint(s *certs.Signer, size uint64, root []byte, t time.Time) ([]byte, error) {
	body := fmt.Sprintf("%s\n%d\n%s\ntime %d\n", Origin, size, base64.StdEncoding.EncodeToString(root), t.Unix())
	sig, err := s.Sign([]byte(body))
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	kh := KeyHash(s.Public())
	return []byte(body + "\n— " + KeyName + " " + base64.StdEncoding.EncodeToString(append(kh[:], sig...)) + "\n"), nil
}

// ParseCheckpoint reads a checkpoint note without checking its signature.
func ParseCheckpoint(note []byte) (*Checkpoint, error) { return parseNote(note) }

func parseNote(note []byte) (*Checkpoint, error) {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return nil, fmt.Errorf("checkpoint: no blank line between body and signature")
	}
	body, sigs := note[:i+1], string(note[i+2:])
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) < 3 || lines[0] != Origin {
		return nil, fmt.Errorf("checkpoint: want origin %q and size and root lines", Origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: size line %q: %v", lines[1], err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return nil, fmt.Errorf("checkpoint: root line %q is not a base64 32-byte hash", lines[2])
	}
	cp := &Checkpoint{Size: size, Root: root, Body: body}
	for _, l := range lines[3:] {
		if v, ok := strings.CutPrefix(l, "time "); ok {
			t, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("checkpoint: time line %q: %v", l, err)
			}
			cp.Time = time.Unix(t, 0)
		}
	}
	prefix := "— " + KeyName + " "
	first, _, _ := strings.Cut(sigs, "\n")
	b64, ok := strings.CutPrefix(first, prefix)
	if !ok {
		return nil, fmt.Errorf("checkpoint: no signature line by %s", KeyName)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 5 {
		return nil, fmt.Errorf("checkpoint: signature is not base64")
	}
	copy(cp.KeyHash[:], raw[:4])
	cp.Sig = raw[4:]
	return cp, nil
}

// Verify checks the note's signature against one of the hub keys given.
func (c *Checkpoint) Verify(keys ...*ecdsa.PublicKey) error {
	for _, k := range keys {
		if KeyHash(k) == c.KeyHash && certs.VerifySM2(k, c.Body, c.Sig) {
			return nil
		}
	}
	return fmt.Errorf("checkpoint: signature does not verify against any hub key")
}
