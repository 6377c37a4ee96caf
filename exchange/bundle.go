package exchange

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/transparency-dev/merkle/proof"
)

// Verification bundles (PROTOCOL.md §9): what an offline verifier needs of
// a node's view of the log. A bundle is one line holding a compact JWS (the
// header, signed by the node's province key), then the body: Count records
// of BundleRecordSize bytes sorted by (key, issuer), so a device finds a
// subject by binary search with ReadAt without loading the file.
const (
	HdrBundle = "hcx-bundle+jws"
	TypBundle = "hcx.bundle.v1"
	// BundleRecordSize is key(16) issuer(2) colour(1) reasons(2) eff(4) exp(4).
	BundleRecordSize = 29
	// MaxBundleHeaderBytes bounds the header line; a longer one is refused
	// before it is read.
	MaxBundleHeaderBytes = 1 << 20
	maxBundleIssuers     = 1 << 10
	maxBundleReasonSets  = 1 << 16
	maxBundleProof       = 64
)

// ErrBadBundle is wrapped by every refusal of a bundle; the message names
// the field or the check that failed.
var ErrBadBundle = errors.New("bad verification bundle")

func badBundle(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadBundle, field, fmt.Sprintf(format, a...))
}

// BundleHeader is the signed header of a bundle.
type BundleHeader struct {
	Typ string           `json:"typ"`
	Iss hcx.ProvinceCode `json:"iss"`
	// Size is the node's applied log size and Root its tree root there.
	Size uint64 `json:"size"`
	Root string `json:"root"`
	// Checkpoint is the newest hub-signed checkpoint note the node
	// verified (size C); Proof are the consistency hashes between Size and
	// C in whichever direction applies, empty when they are equal.
	Checkpoint string   `json:"checkpoint"`
	Proof      []string `json:"proof"`
	// Trust is the newest root-signed trust-list envelope applied at Size.
	Trust  string `json:"trust"`
	At     int64  `json:"at"`
	MaxAge int64  `json:"max_age"`
	Count  uint64 `json:"count"`
	// Body is the standard base64 SM3 of the body.
	Body    string             `json:"body"`
	Issuers []hcx.ProvinceCode `json:"issuers"`
	Reasons [][]hcx.Reason     `json:"reasons"`
}

// BundleRecord is one (subject, issuer) attestation that can change an
// answer.
type BundleRecord struct {
	Key     [16]byte
	Issuer  uint16
	Colour  hcx.Colour
	Reasons uint16
	Eff     int64
	Exp     int64
}

// BundleKey is the record key of a subject: the first 16 bytes of its SM3.
func BundleKey(sub hcx.Subject) [16]byte {
	s := certs.SM3([]byte(sub))
	var k [16]byte
	copy(k[:], s[:16])
	return k
}

var bundleColours = []hcx.Colour{hcx.Green, hcx.Yellow, hcx.Red}

// AppendBundleRecord appends r's fixed-size encoding to b. Times outside
// unsigned 32-bit seconds and unknown colours are refused.
func AppendBundleRecord(b []byte, r BundleRecord) ([]byte, error) {
	c := -1
	for i, k := range bundleColours {
		if k == r.Colour {
			c = i
		}
	}
	if c < 0 {
		return b, badBundle("colour", "%q is not a colour", r.Colour)
	}
	if r.Eff < 0 || r.Eff > 1<<32-1 || r.Exp < 0 || r.Exp > 1<<32-1 {
		return b, badBundle("eff/exp", "%d/%d do not fit unsigned 32-bit seconds", r.Eff, r.Exp)
	}
	b = append(b, r.Key[:]...)
	b = binary.BigEndian.AppendUint16(b, r.Issuer)
	b = append(b, byte(c))
	b = binary.BigEndian.AppendUint16(b, r.Reasons)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Eff))
	return binary.BigEndian.AppendUint32(b, uint32(r.Exp)), nil
}

// DecodeBundleRecord reads one record.
func DecodeBundleRecord(b []byte) (BundleRecord, error) {
	var r BundleRecord
	if len(b) != BundleRecordSize {
		return r, badBundle("record", "%d bytes, want %d", len(b), BundleRecordSize)
	}
	copy(r.Key[:], b[:16])
	r.Issuer = binary.BigEndian.Uint16(b[16:])
	if int(b[18]) >= len(bundleColours) {
		return r, badBundle("record", "colour byte %d", b[18])
	}
	r.Colour = bundleColours[b[18]]
	r.Reasons = binary.BigEndian.Uint16(b[19:])
	r.Eff = int64(binary.BigEndian.Uint32(b[21:]))
	r.Exp = int64(binary.BigEndian.Uint32(b[25:]))
	return r, nil
}

// BundleCounts says whether an attestation belongs in a bundle made at a
// checkpoint of time cpTime: it can change an answer (not green, or with
// reasons) and is not expired by then (a device never verifies at a time
// before the checkpoint).
func BundleCounts(a *hcx.Attestation, cpTime time.Time) bool {
	return (a.Colour != hcx.Green || len(a.Reasons) > 0) && a.Exp > cpTime.Unix()
}

// SealBundleHeader signs h with the node's province signer.
func SealBundleHeader(s *certs.Signer, h *BundleHeader) (string, error) {
	h.Typ = TypBundle
	b, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	return s.SignJWS(HdrBundle, b)
}

// VerifiedBundle is a bundle header whose every check passed.
type VerifiedBundle struct {
	Header     BundleHeader
	Trust      *certs.TrustStore
	Checkpoint *Checkpoint
	Root       []byte
}

// VerifyBundleHeader checks a bundle header against the national root (DER)
// in this order: the trust list is signed by the root; the header is
// signed by a province certificate of that list for its iss, not revoked
// at its time; the checkpoint is signed by a hub key of the list; the
// consistency proof links the node's tree to the checkpoint. The body is
// checked against Header.Body by the caller (VerifyBundleBody).
func VerifyBundleHeader(rootDER []byte, compact string) (*VerifiedBundle, error) {
	if len(compact) > MaxBundleHeaderBytes {
		return nil, badBundle("header", "%d bytes, more than %d", len(compact), MaxBundleHeaderBytes)
	}
	h, err := certs.ParseHeader(compact)
	if err != nil {
		return nil, badBundle("header", "%v", err)
	}
	if h.Typ != HdrBundle {
		return nil, badBundle("typ", "header typ %q, want %q", h.Typ, HdrBundle)
	}
	parts := strings.Split(compact, ".")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, badBundle("payload", "not base64url: %v", err)
	}
	var b BundleHeader
	if err := DecodeStrict(raw, &b); err != nil {
		return nil, badBundle("payload", "%v", err)
	}
	if b.Typ != TypBundle {
		return nil, badBundle("typ", "payload typ %q, want %q", b.Typ, TypBundle)
	}
	ts, err := certs.NewTrustStoreDER(rootDER)
	if err != nil {
		return nil, fmt.Errorf("national root: %w", err)
	}
	if _, err := ApplyTrustList(ts, b.Trust); err != nil {
		return nil, badBundle("trust", "the trust list is not one the national root signed: %v", err)
	}
	v, err := ts.VerifyParsedJWS(compact, h)
	if err != nil {
		return nil, badBundle("signature", "the header is not signed by a province key of the trust list: %v", err)
	}
	if v.Entry.Province != b.Iss {
		return nil, badBundle("iss", "the header names %s but is signed by a key of %s", b.Iss, v.Entry.Province)
	}
	if err := ts.CheckRevokedAt(v.Entry, time.Unix(b.At, 0)); err != nil {
		return nil, badBundle("signature", "%v", err)
	}
	cp, err := VerifyCheckpoint(ts, []byte(b.Checkpoint))
	if err != nil {
		return nil, badBundle("checkpoint", "%v", err)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(b.Root)
	if err != nil || len(root) != 32 {
		return nil, badBundle("root", "not a base64 32-byte hash")
	}
	if len(b.Proof) > maxBundleProof {
		return nil, badBundle("proof", "%d hashes, at most %d", len(b.Proof), maxBundleProof)
	}
	p, err := decodeHashes(b.Proof)
	if err != nil {
		return nil, badBundle("proof", "%v", err)
	}
	switch {
	case b.Size == cp.Size:
		if !bytes.Equal(root, cp.Root) || len(p) != 0 {
			return nil, badBundle("root", "the node's root at size %d is not the checkpoint's", b.Size)
		}
	case b.Size < cp.Size:
		err = proof.VerifyConsistency(LogHasher{}, b.Size, cp.Size, p, root, cp.Root)
	default:
		err = proof.VerifyConsistency(LogHasher{}, cp.Size, b.Size, p, cp.Root, root)
	}
	if err != nil {
		return nil, badBundle("proof", "the node's tree of size %d is not consistent with the checkpoint of size %d: %v", b.Size, cp.Size, err)
	}
	if b.MaxAge <= 0 {
		return nil, badBundle("max_age", "%d, want > 0 seconds", b.MaxAge)
	}
	if len(b.Issuers) > maxBundleIssuers || len(b.Reasons) > maxBundleReasonSets {
		return nil, badBundle("issuers/reasons", "%d issuers, %d reason sets: too many", len(b.Issuers), len(b.Reasons))
	}
	if b.Count > (1<<63)/BundleRecordSize {
		return nil, badBundle("count", "%d records is too many", b.Count)
	}
	return &VerifiedBundle{Header: b, Trust: ts, Checkpoint: cp, Root: root}, nil
}

func decodeHashes(in []string) ([][]byte, error) {
	out := make([][]byte, len(in))
	for i, s := range in {
		h, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("[%d] is not a base64 32-byte hash", i)
		}
		out[i] = h
	}
	return out, nil
}

// VerifyBundleBody reads exactly Count records from r, checks their SM3
// against the header, that they are sorted by (key, issuer) without
// repeats, and that every index is in the dictionaries.
func (vb *VerifiedBundle) VerifyBundleBody(r io.Reader) error {
	h := certs.NewSM3()
	buf := make([]byte, BundleRecordSize)
	var prev []byte
	for i := uint64(0); i < vb.Header.Count; i++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			return badBundle("body", "record %d of %d: %v", i, vb.Header.Count, err)
		}
		h.Write(buf)
		rec, err := DecodeBundleRecord(buf)
		if err != nil {
			return err
		}
		if int(rec.Issuer) >= len(vb.Header.Issuers) || int(rec.Reasons) >= len(vb.Header.Reasons) {
			return badBundle("body", "record %d indexes past the dictionaries", i)
		}
		if prev != nil && bytes.Compare(prev, buf[:18]) >= 0 {
			return badBundle("body", "record %d is out of order", i)
		}
		prev = append(prev[:0], buf[:18]...)
	}
	if n, _ := io.ReadFull(r, buf[:1]); n != 0 {
		return badBundle("body", "more than %d records", vb.Header.Count)
	}
	if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); got != vb.Header.Body {
		return badBundle("body", "SM3 is %s, the header says %s", got, vb.Header.Body)
	}
	return nil
}

// LookupBundle finds the attestations about sub among count records that
// start at offset off in r, by binary search.
func LookupBundle(r io.ReaderAt, off int64, h *BundleHeader, sub hcx.Subject) ([]LoggedAttestation, error) {
	key := BundleKey(sub)
	buf := make([]byte, BundleRecordSize)
	read := func(i uint64) (BundleRecord, error) {
		if _, err := r.ReadAt(buf, off+int64(i)*BundleRecordSize); err != nil {
			return BundleRecord{}, err
		}
		return DecodeBundleRecord(buf)
	}
	var err error
	i := sort.Search(int(h.Count), func(i int) bool {
		if err != nil {
			return true
		}
		rec, e := read(uint64(i))
		if e != nil {
			err = e
			return true
		}
		return bytes.Compare(rec.Key[:], key[:]) >= 0
	})
	if err != nil {
		return nil, err
	}
	var atts []LoggedAttestation
	for j := uint64(i); j < h.Count; j++ {
		rec, err := read(j)
		if err != nil {
			return nil, err
		}
		if rec.Key != key {
			break
		}
		if int(rec.Issuer) >= len(h.Issuers) || int(rec.Reasons) >= len(h.Reasons) {
			return nil, badBundle("body", "record %d indexes past the dictionaries", j)
		}
		atts = append(atts, LoggedAttestation{Iss: h.Issuers[rec.Issuer], Attestation: hcx.Attestation{Subject: sub, Colour: rec.Colour,
			Reasons: h.Reasons[rec.Reasons], Eff: rec.Eff, Exp: rec.Exp}})
	}
	return atts, nil
}
