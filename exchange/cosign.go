package exchange

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// Witness cosignatures (PROTOCOL.md §4): C2SP tlog-cosignature, adapted to
// SM2. A witness is a certificate of the trust list of role province or
// auditor; it cosigns a checkpoint after checking that it is consistent with
// the largest one it cosigned before (package witness). A cosignature is a
// note signature line
//
//	— hcx.witness/<kid> base64(key ID(4) || timestamp(8, big-endian) || SM2 DER signature)
//
// over the message "cosignature/v1\ntime <timestamp>\n" followed by the whole
// checkpoint body. The key ID is the first 4 bytes of SHA-256(name || "\n" ||
// 0xff || "hcx-sm2-cosignature/v1" || the 65-byte uncompressed key).

// WitnessNamePrefix starts the note key name of every witness; the rest is
// the kid of its certificate in the trust list.
const WitnessNamePrefix = "hcx.witness/"

const (
	cosignatureHeader  = "cosignature/v1"
	cosignatureKeyType = "hcx-sm2-cosignature/v1"
	// maxCosignatureSkew is how far in the future of the verifier's clock a
	// cosignature's timestamp may be.
	maxCosignatureSkew = 5 * time.Minute
	// maxSM2DER bounds a DER SM2 signature: SEQUENCE of two INTEGERs of at
	// most 33 bytes each.
	maxSM2DER = 72
)

// ErrTooFewCosignatures is returned by RequireCosignatures when fewer than k
// distinct witnesses cosigned a checkpoint.
var ErrTooFewCosignatures = errors.New("checkpoint carries too few witness cosignatures")

// Witness is a key that may cosign checkpoints.
type Witness struct {
	Name string // WitnessNamePrefix + KID
	KID  string
	Key  *ecdsa.PublicKey
}

// Cosignature is one witness line of a note, as read (not verified).
type Cosignature struct {
	Name    string
	KeyHash [4]byte
	Time    time.Time // when the witness cosigned, by its clock
	Sig     []byte    // SM2 DER
	Line    string    // the whole line, with its final newline
}

// WitnessName is the note key name of the witness whose certificate has kid.
func WitnessName(kid string) string { return WitnessNamePrefix + kid }

// WitnessKeyHash is the note key ID of a witness: the first 4 bytes of
// SHA-256(name || "\n" || 0xff || "hcx-sm2-cosignature/v1" || key).
func WitnessKeyHash(name string, pub *ecdsa.PublicKey) [4]byte {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{0xff})
	h.Write([]byte(cosignatureKeyType))
	h.Write(certs.MarshalPublicKey(pub))
	var out [4]byte
	copy(out[:], h.Sum(nil))
	return out
}

// WitnessesOf are the witnesses of ts at at: its province and auditor
// certificates not revoked at or before at, sorted by name.
func WitnessesOf(ts *certs.TrustStore, at time.Time) []Witness {
	var ws []Witness
	for _, e := range ts.Entries() {
		if e.Role != certs.RoleProvince && e.Role != certs.RoleAuditor {
			continue
		}
		if r, ok := ts.RevokedAt(e.KID); ok && !at.Before(r) {
			continue
		}
		ws = append(ws, Witness{Name: WitnessName(e.KID), KID: e.KID, Key: e.PublicKey()})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	return ws
}

// cosignedMessage is what a witness signs over a checkpoint body at t.
func cosignedMessage(body []byte, t int64) []byte {
	m := make([]byte, 0, len(cosignatureHeader)+32+len(body))
	m = append(m, cosignatureHeader+"\ntime "...)
	m = strconv.AppendInt(m, t, 10)
	m = append(m, '\n')
	return append(m, body...)
}

// Cosign returns the signature line (ending in a newline) of witness s over
// the checkpoint body at t. The witness's name is WitnessName(s.KID).
func Cosign(s *certs.Signer, body []byte, t time.Time) (string, error) {
	ts := t.Unix()
	if ts < 0 {
		return "", fmt.Errorf("cosign: time %v is before 1970", t)
	}
	sig, err := s.Sign(cosignedMessage(body, ts))
	if err != nil {
		return "", fmt.Errorf("cosign: %w", err)
	}
	name := WitnessName(s.KID)
	kh := WitnessKeyHash(name, s.Public())
	raw := make([]byte, 0, 12+len(sig))
	raw = append(raw, kh[:]...)
	raw = binary.BigEndian.AppendUint64(raw, uint64(ts))
	raw = append(raw, sig...)
	return "— " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n", nil
}

// parseCosignature reads the decoded signature of a witness line.
func parseCosignature(name string, raw []byte, line string) (Cosignature, error) {
	kid := strings.TrimPrefix(name, WitnessNamePrefix)
	if !validKID(kid) {
		return Cosignature{}, malformedNote("witness key name %q: want %s followed by a key id (22 base64url characters)", name, WitnessNamePrefix)
	}
	if len(raw) < 4+8+8 || len(raw) > 4+8+maxSM2DER {
		return Cosignature{}, malformedNote("cosignature by %s is %d bytes, want a key id, a timestamp and an SM2 signature", name, len(raw))
	}
	ts := binary.BigEndian.Uint64(raw[4:12])
	if ts > math.MaxInt64 || ts > 1<<40 {
		return Cosignature{}, malformedNote("cosignature by %s has timestamp %d, not Unix seconds", name, ts)
	}
	c := Cosignature{Name: name, Time: time.Unix(int64(ts), 0).UTC(), Sig: raw[12:], Line: line + "\n"}
	copy(c.KeyHash[:], raw[:4])
	return c, nil
}

func validKID(s string) bool {
	if len(s) != 22 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// VerifyCosignatures checks the note's witness lines against ws. It returns
// the names of the witnesses whose line verifies, each once, in the order of
// ws, and the lines that name a witness of ws but do not verify under its
// key or are dated more than 5 minutes after now. Lines by names not in ws
// are neither: the verifier does not know them.
func (c *Checkpoint) VerifyCosignatures(ws []Witness, now time.Time) (valid []string, bad []Cosignature) {
	byName := make(map[string][]Cosignature, len(c.Cosigs))
	for _, s := range c.Cosigs {
		byName[s.Name] = append(byName[s.Name], s)
	}
	for _, w := range ws {
		lines := byName[w.Name]
		if len(lines) == 0 {
			continue
		}
		kh := WitnessKeyHash(w.Name, w.Key)
		ok := false
		for _, s := range lines {
			if s.KeyHash == kh && !s.Time.After(now.Add(maxCosignatureSkew)) &&
				certs.VerifySM2(w.Key, cosignedMessage(c.Body, s.Time.Unix()), s.Sig) {
				ok = true
				continue
			}
			bad = append(bad, s)
		}
		if ok {
			valid = append(valid, w.Name)
		}
	}
	return valid, bad
}

// RequireCosignatures returns nil if at least k distinct witnesses of ws
// cosigned the checkpoint, else an error wrapping ErrTooFewCosignatures that
// says how many of how many did. k <= 0 requires nothing.
func (c *Checkpoint) RequireCosignatures(ws []Witness, k int, now time.Time) error {
	if k <= 0 {
		return nil
	}
	valid, bad := c.VerifyCosignatures(ws, now)
	if len(valid) >= k {
		return nil
	}
	why := ""
	if len(bad) > 0 {
		why = fmt.Sprintf("; %d lines do not verify, the first by %s", len(bad), bad[0].Name)
	}
	return fmt.Errorf("%w: the checkpoint of size %d has %d valid of the %d required (of %d witnesses known%s)",
		ErrTooFewCosignatures, c.Size, len(valid), k, len(ws), why)
}

// AddCosignatures returns note with the witness lines added: a line by a
// name the note already carries replaces it. Other signature lines keep
// their order; witness lines follow them, sorted by name, so that every hub
// member that adds the same lines gets the same bytes. Lines are not
// verified here (VerifyCosignatures does that); they must be well-formed
// witness lines, and the result must stay within the note's bounds.
func AddCosignatures(note []byte, lines ...string) ([]byte, error) {
	if _, err := ParseCheckpoint(note); err != nil {
		return nil, err
	}
	i := strings.Index(string(note), "\n\n")
	body, sigs := string(note[:i+1]), strings.Split(strings.TrimSuffix(string(note[i+2:]), "\n"), "\n")
	witness := make(map[string]string)
	var out strings.Builder
	out.WriteString(body)
	out.WriteString("\n")
	for _, l := range sigs {
		name := lineName(l)
		if strings.HasPrefix(name, WitnessNamePrefix) {
			witness[name] = l
			continue
		}
		out.WriteString(l)
		out.WriteString("\n")
	}
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\n")
		if strings.Contains(l, "\n") {
			return nil, malformedNote("a cosignature is one line, got %q", l)
		}
		name := lineName(l)
		if !strings.HasPrefix(name, WitnessNamePrefix) {
			return nil, malformedNote("line %q is not a witness cosignature", l)
		}
		witness[name] = l
	}
	names := make([]string, 0, len(witness))
	for n := range witness {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out.WriteString(witness[n])
		out.WriteString("\n")
	}
	res := []byte(out.String())
	if _, err := ParseCheckpoint(res); err != nil {
		return nil, err
	}
	return res, nil
}

// lineName is the key name of a signature line ("" if it has none).
func lineName(l string) string {
	rest, ok := strings.CutPrefix(l, "— ")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, " ")
	return name
}
