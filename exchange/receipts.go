package exchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Check receipts across provinces (PROTOCOL.md §3, 1.4; docs/decisions.md
// "Issue 11: check receipts across provinces").
//
// A province publishes the public half of its box key (certs/box.go) in a
// box-key envelope; a province whose checkpoints verified another
// province's codes sends that province a receipts envelope: the receipts,
// padded to a size bucket, sealed in a box to the recipient's newest box
// key. The hub and every other reader see who sent how big a bucket to whom
// and when; only the recipient can read the receipts.

// Limits of receipts envelopes.
const (
	// MaxReceipts bounds the receipts in one envelope.
	MaxReceipts = 1000
	// ReceiptsMinBucket and ReceiptsMaxBucket bound the padded plaintext
	// of a receipts envelope, whose size is a power of two between them.
	ReceiptsMinBucket = 4 << 10
	ReceiptsMaxBucket = 256 << 10
	// MaxReceiptUnit bounds a receipt's unit, in bytes.
	MaxReceiptUnit = 128
)

// BoxKeyEnvelope publishes a province's box public key.
type BoxKeyEnvelope struct {
	Typ string           `json:"typ"`
	Iss hcx.ProvinceCode `json:"iss"`
	At  int64            `json:"at"`
	KID string           `json:"kid"`
	// Pub is the uncompressed SM2 point, standard base64.
	Pub string `json:"pub"`
}

// Validate checks a box-key envelope's content, naming the first wrong
// field.
func (k *BoxKeyEnvelope) Validate() error {
	if k.Typ != TypBoxKey {
		return hcx.Invalidf("typ", "box-key typ is %q, want %q", k.Typ, TypBoxKey)
	}
	if err := k.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	pub, err := base64.StdEncoding.Strict().DecodeString(k.Pub)
	if err != nil {
		return hcx.Invalidf("pub", "pub is not standard base64")
	}
	if err := certs.CheckBoxPublic(pub); err != nil {
		return hcx.Invalidf("pub", "%v", err)
	}
	if k.KID != certs.BoxKID(pub) {
		return hcx.Invalidf("kid", "kid %q is not the fingerprint of pub (%s)", k.KID, certs.BoxKID(pub))
	}
	return nil
}

// PubBytes is the box public key (Validate first).
func (k *BoxKeyEnvelope) PubBytes() []byte {
	b, _ := base64.StdEncoding.DecodeString(k.Pub)
	return b
}

// SealBoxKey signs a box-key envelope for pub.
func SealBoxKey(s *certs.Signer, at int64, pub []byte) (string, error) {
	k := BoxKeyEnvelope{Typ: TypBoxKey, Iss: s.Province, At: at, KID: certs.BoxKID(pub), Pub: base64.StdEncoding.EncodeToString(pub)}
	if err := k.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypBoxKey, &k)
}

// DecodeBoxKey reads the box-key envelope in a verified envelope and checks
// its content.
func DecodeBoxKey(env *Envelope) (*BoxKeyEnvelope, error) {
	return decodeValid[BoxKeyEnvelope](env, TypBoxKey)
}

// Receipts is a receipts envelope: checks by Iss's units of To's codes,
// sealed to To's box key KID.
type Receipts struct {
	Typ string           `json:"typ"`
	Iss hcx.ProvinceCode `json:"iss"`
	At  int64            `json:"at"`
	To  hcx.ProvinceCode `json:"to"`
	KID string           `json:"kid"`
	// CT is the box (certs.SealBox), standard base64.
	CT string `json:"ct"`
}

// Receipt is one check of a code, as the sealed plaintext carries it.
type Receipt struct {
	Sub    hcx.Subject      `json:"sub"`
	At     int64            `json:"at"` // Unix seconds
	Unit   string           `json:"unit"`
	Role   string           `json:"role"`
	Colour hcx.Colour       `json:"colour"`
	Div    hcx.DivisionCode `json:"div,omitempty"`
}

// Validate checks a receipt, naming the first wrong field.
func (r *Receipt) Validate() error {
	if err := r.Sub.Validate(); err != nil {
		return inField("sub", err)
	}
	if r.At <= 0 {
		return hcx.Invalidf("at", "at must be Unix seconds, got %d", r.At)
	}
	if r.Unit == "" || len(r.Unit) > MaxReceiptUnit || !utf8.ValidString(r.Unit) {
		return hcx.Invalidf("unit", "unit must be 1 to %d bytes of UTF-8", MaxReceiptUnit)
	}
	if r.Role != "checkpoint" && r.Role != "operator" {
		return hcx.Invalidf("role", "role %q is not checkpoint or operator", r.Role)
	}
	if err := r.Colour.Validate(); err != nil {
		return inField("colour", err)
	}
	if r.Div != "" {
		if err := r.Div.Validate(); err != nil {
			return inField("div", err)
		}
	}
	return nil
}

// Validate checks a receipts envelope's shape, naming the first wrong
// field: what the hub can check without reading ct. The box's plaintext
// must be a size bucket (a power of two from ReceiptsMinBucket to
// ReceiptsMaxBucket), so a receipts envelope tells its size only to the
// bucket.
func (r *Receipts) Validate() error {
	if r.Typ != TypReceipts {
		return hcx.Invalidf("typ", "receipts typ is %q, want %q", r.Typ, TypReceipts)
	}
	if err := r.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if err := r.To.Validate(); err != nil {
		return inField("to", err)
	}
	if r.To == r.Iss {
		return hcx.Invalidf("to", "to %s is the sender; a province keeps its own checks", r.To)
	}
	if !isKID(r.KID) {
		return hcx.Invalidf("kid", "kid must be a box key fingerprint (32 lower-case hex digits)")
	}
	ct, err := base64.StdEncoding.Strict().DecodeString(r.CT)
	if err != nil {
		return hcx.Invalidf("ct", "ct is not standard base64")
	}
	p := len(ct) - certs.BoxOverhead
	if p < ReceiptsMinBucket || p > ReceiptsMaxBucket || bits.OnesCount(uint(p)) != 1 {
		return hcx.Invalidf("ct", "ct seals %d bytes; want a power of two from %d to %d", p, ReceiptsMinBucket, ReceiptsMaxBucket)
	}
	return nil
}

func isKID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// receiptsAAD binds a box to the envelope that carries it.
func receiptsAAD(iss, to hcx.ProvinceCode, at int64, kid string) []byte {
	return []byte("hcx-receipts-v1|" + string(iss) + "|" + string(to) + "|" + strconv.FormatInt(at, 10) + "|" + kid)
}

// ReceiptsBucket is the padded size of a plaintext of n bytes: the next
// power of two, at least ReceiptsMinBucket; 0 if n exceeds
// ReceiptsMaxBucket.
func ReceiptsBucket(n int) int {
	if n > ReceiptsMaxBucket {
		return 0
	}
	b := ReceiptsMinBucket
	for b < n {
		b <<= 1
	}
	return b
}

// ErrReceiptsTooBig means the receipts do not fit the largest bucket: send
// fewer.
var ErrReceiptsTooBig = fmt.Errorf("receipts do not fit %d bytes", ReceiptsMaxBucket)

// SealReceipts validates rs, pads them to their bucket, seals them to the
// box key pub (fingerprint kid) of province to, and signs the envelope.
func SealReceipts(s *certs.Signer, to hcx.ProvinceCode, at int64, kid string, pub []byte, rs []Receipt) (string, error) {
	if len(rs) == 0 || len(rs) > MaxReceipts {
		return "", hcx.Invalidf("receipts", "an envelope carries 1 to %d receipts, not %d", MaxReceipts, len(rs))
	}
	for i := range rs {
		if err := rs[i].Validate(); err != nil {
			return "", prefixField(fmt.Sprintf("receipts[%d]", i), err)
		}
	}
	if certs.BoxKID(pub) != kid {
		return "", hcx.Invalidf("kid", "kid %q is not the fingerprint of the box key", kid)
	}
	plain, err := json.Marshal(rs)
	if err != nil {
		return "", err
	}
	b := ReceiptsBucket(len(plain))
	if b == 0 {
		return "", fmt.Errorf("%w: %d receipts are %d bytes", ErrReceiptsTooBig, len(rs), len(plain))
	}
	// The padding is spaces, which Open trims.
	plain = append(plain, bytes.Repeat([]byte{' '}, b-len(plain))...)
	box, err := certs.SealBox(pub, plain, receiptsAAD(s.Province, to, at, kid))
	if err != nil {
		return "", err
	}
	r := Receipts{Typ: TypReceipts, Iss: s.Province, At: at, To: to, KID: kid, CT: base64.StdEncoding.EncodeToString(box)}
	if err := r.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypReceipts, &r)
}

// DecodeReceipts reads the receipts envelope in a verified envelope and
// checks its shape (it cannot read ct).
func DecodeReceipts(env *Envelope) (*Receipts, error) {
	return decodeValid[Receipts](env, TypReceipts)
}

// Open opens the box with k (whose KID must be r.KID) and reads the
// receipts strictly: an error wraps certs.ErrBoxOpen when the box does not
// open, or names the field of the first wrong receipt.
func (r *Receipts) Open(k *certs.BoxKey) ([]Receipt, error) {
	if k.KID() != r.KID {
		return nil, fmt.Errorf("%w: sealed to box key %s, not %s", certs.ErrBoxOpen, r.KID, k.KID())
	}
	box, err := base64.StdEncoding.Strict().DecodeString(r.CT)
	if err != nil {
		return nil, fmt.Errorf("%w: ct is not base64", certs.ErrBoxOpen)
	}
	plain, err := k.Open(box, receiptsAAD(r.Iss, r.To, r.At, r.KID))
	if err != nil {
		return nil, err
	}
	var rs []Receipt
	if err := DecodeStrict(bytes.TrimRight(plain, " "), &rs); err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs) > MaxReceipts {
		return nil, malformed("receipts", "an envelope carries 1 to %d receipts, not %d", MaxReceipts, len(rs))
	}
	for i := range rs {
		if err := rs[i].Validate(); err != nil {
			return nil, asMalformed(prefixField(fmt.Sprintf("receipts[%d]", i), err))
		}
	}
	return rs, nil
}

// prefixField puts p in front of the field an *hcx.Error names.
func prefixField(p string, err error) error {
	var e *hcx.Error
	if !errors.As(err, &e) {
		return hcx.Invalidf(p, "%v", err)
	}
	return inField(p+"."+e.Field, err)
}
