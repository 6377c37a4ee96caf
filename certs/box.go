package certs

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
)

// Box keys (docs/decisions.md "Issue 11: check receipts across provinces"):
// a province node's SM2 encryption key pair, separate from its signing key
// (GM/T practice keeps SM2 signing and encryption keys apart: a signing key
// is never used to decrypt, so a decryption oracle can never help forge a
// signature, and the two keys can be escrowed and rotated on their own).
//
// A box is a digital envelope: a fresh 16-byte SM4 key, SM2-encrypted to the
// recipient's box public key (GB/T 32918.4, C1C3C2, uncompressed C1), and the
// plaintext SM4-GCM sealed under that key with the caller's AAD. Layout:
// len(C1C3C2) (2 bytes, big endian) || C1C3C2 || nonce (12) || ciphertext+tag.

// BoxKey is a private box key.
type BoxKey struct {
	priv *sm2.PrivateKey
	pub  []byte
}

// BoxPublicLen is the length of a box public key: an uncompressed SM2 point.
const BoxPublicLen = 65

// boxWrapLen is the length of the SM2 encryption of a 16-byte SM4 key:
// C1 (65) || C3 (32) || C2 (16).
const boxWrapLen = 65 + 32 + 16

// BoxOverhead is what Seal adds to a plaintext: the length prefix, the
// wrapped key, the GCM nonce and the GCM tag.
const BoxOverhead = 2 + boxWrapLen + 12 + 16

// ErrBoxOpen means a box could not be opened: wrong key, tampered
// ciphertext or AAD, or not a box.
var ErrBoxOpen = errors.New("box cannot be opened")

// GenerateBoxKey makes a new box key pair.
func GenerateBoxKey() (*BoxKey, error) {
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return boxKeyOf(priv), nil
}

func boxKeyOf(priv *sm2.PrivateKey) *BoxKey {
	pub := make([]byte, BoxPublicLen)
	pub[0] = 4
	priv.X.FillBytes(pub[1:33])
	priv.Y.FillBytes(pub[33:])
	return &BoxKey{priv: priv, pub: pub}
}

// ParseBoxKey reads a private box key made by Bytes.
func ParseBoxKey(b []byte) (*BoxKey, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("box key: %d bytes, want 32", len(b))
	}
	priv, err := sm2.NewPrivateKeyFromInt(new(big.Int).SetBytes(b))
	if err != nil {
		return nil, fmt.Errorf("box key: %w", err)
	}
	return boxKeyOf(priv), nil
}

// Bytes is the private scalar (32 bytes). Keep it sealed at rest.
func (k *BoxKey) Bytes() []byte { return k.priv.D.FillBytes(make([]byte, 32)) }

// Public is the public half, an uncompressed SM2 point (65 bytes).
func (k *BoxKey) Public() []byte { return append([]byte(nil), k.pub...) }

// KID is the fingerprint of the public half (BoxKID).
func (k *BoxKey) KID() string { return BoxKID(k.pub) }

// BoxKID is the fingerprint of a box public key: the hex of the first 16
// bytes of SM3 over "hcx-box-v1" || 0x00 || pub.
func BoxKID(pub []byte) string {
	h := sm3.New()
	h.Write([]byte("hcx-box-v1\x00"))
	h.Write(pub)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// CheckBoxPublic checks that pub is an uncompressed point on the SM2 curve.
func CheckBoxPublic(pub []byte) error {
	if len(pub) != BoxPublicLen {
		return fmt.Errorf("box public key: %d bytes, want %d", len(pub), BoxPublicLen)
	}
	if _, err := sm2.NewPublicKey(pub); err != nil {
		return fmt.Errorf("box public key: %w", err)
	}
	return nil
}

// SealBox seals plaintext to the box public key pub, bound to aad.
func SealBox(pub, plaintext, aad []byte) ([]byte, error) {
	pk, err := sm2.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("box public key: %w", err)
	}
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	wrapped, err := sm2.Encrypt(rand.Reader, pk, key, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	if err != nil {
		return nil, err
	}
	if len(wrapped) != boxWrapLen {
		return nil, fmt.Errorf("box: wrapped key is %d bytes, want %d", len(wrapped), boxWrapLen)
	}
	aead, err := boxAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, BoxOverhead+len(plaintext))
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// Open opens a box sealed to k's public half with aad.
func (k *BoxKey) Open(box, aad []byte) ([]byte, error) {
	if len(box) < BoxOverhead {
		return nil, fmt.Errorf("%w: %d bytes, at least %d", ErrBoxOpen, len(box), BoxOverhead)
	}
	if n := binary.BigEndian.Uint16(box); n != boxWrapLen {
		return nil, fmt.Errorf("%w: wrapped key of %d bytes, want %d", ErrBoxOpen, n, boxWrapLen)
	}
	wrapped := box[2 : 2+boxWrapLen]
	key, err := sm2.Decrypt(k.priv, wrapped)
	if err != nil || len(key) != 16 {
		return nil, fmt.Errorf("%w: the key does not unwrap", ErrBoxOpen)
	}
	aead, err := boxAEAD(key)
	if err != nil {
		return nil, err
	}
	rest := box[2+boxWrapLen:]
	pt, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBoxOpen, err)
	}
	return pt, nil
}

func boxAEAD(key []byte) (cipher.AEAD, error) {
	block, err := sm4.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
