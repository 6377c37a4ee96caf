package certs

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
	"github.com/hcxfed/hcx"
)

// SubjectKey is one version of the federation subject key K_v. Province nodes
// share it; the hub and auditors never see it.
type SubjectKey struct {
	Version int
	Key     []byte
}

var subjectB32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// HMACSM3 is HMAC (RFC 2104) over SM3 (GM/T 0042-2015).
func HMACSM3(key, msg []byte) []byte {
	m := hmac.New(sm3.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// Subject derives the pseudonym of a document (PROTOCOL.md §1):
// b32(HMAC-SM3(K_v, "hcx-subject-v1" || 0x00 || doctype || 0x00 || number)[:16]),
// lower case. number must already be normalised.
func (k SubjectKey) Subject(t hcx.DocType, number string) hcx.Subject {
	m := hmac.New(sm3.New, k.Key)
	m.Write([]byte("hcx-subject-v1\x00"))
	m.Write([]byte(t))
	m.Write([]byte{0})
	m.Write([]byte(number))
	sum := m.Sum(nil)
	b := []byte(subjectB32.EncodeToString(sum[:16]))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return hcx.Subject(b)
}

// FieldCipher encrypts identity fields at rest with SM4-GCM under versioned
// keys. A sealed value is version (1 byte) || nonce (12) || ciphertext+tag, so
// old values stay readable after the current key changes.
type FieldCipher struct {
	current byte
	aeads   map[byte]cipher.AEAD
}

// NewFieldCipher uses keys[current] to seal and any of keys to open. Keys are
// 16 bytes.
func NewFieldCipher(current int, keys map[int][]byte) (*FieldCipher, error) {
	fc := &FieldCipher{current: byte(current), aeads: map[byte]cipher.AEAD{}}
	for v, k := range keys {
		if v < 1 || v > 255 {
			return nil, fmt.Errorf("field key version %d: want 1 to 255", v)
		}
		block, err := sm4.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("field key version %d: %w", v, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		fc.aeads[byte(v)] = aead
	}
	if _, ok := fc.aeads[fc.current]; !ok {
		return nil, fmt.Errorf("no field key for the current version %d", current)
	}
	return fc, nil
}

// Seal encrypts plaintext bound to aad (for example the record's key).
func (fc *FieldCipher) Seal(plaintext, aad []byte) []byte {
	aead := fc.aeads[fc.current]
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = fc.current
	if _, err := rand.Read(out[1:]); err != nil {
		panic(err)
	}
	return aead.Seal(out, out[1:], plaintext, aad)
}

// ErrFieldDecrypt means a sealed field could not be opened.
var ErrFieldDecrypt = errors.New("field decryption failed")

// Open decrypts a value made by Seal.
func (fc *FieldCipher) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1 {
		return nil, fmt.Errorf("%w: empty", ErrFieldDecrypt)
	}
	aead, ok := fc.aeads[sealed[0]]
	if !ok {
		return nil, fmt.Errorf("%w: no key for version %d", ErrFieldDecrypt, sealed[0])
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrFieldDecrypt)
	}
	n := 1 + aead.NonceSize()
	pt, err := aead.Open(nil, sealed[1:n], sealed[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFieldDecrypt, err)
	}
	return pt, nil
}
