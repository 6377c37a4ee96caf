package certs

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"hash"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

// SM3 returns the SM3 digest of b.
func SM3(b []byte) [32]byte { return sm3.Sum(b) }

// NewSM3 returns a new SM3 hash.
func NewSM3() hash.Hash { return sm3.New() }

// KID is the key id of a certificate: b64u(SM3(DER)[:16]), 22 characters
// (PROTOCOL.md §1).
func KID(der []byte) string {
	sum := sm3.Sum(der)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// PrivateKey is an SM2 private key.
type PrivateKey = sm2.PrivateKey

// GenerateKey makes a new SM2 key on the recommended curve.
func GenerateKey() (*PrivateKey, error) { return sm2.GenerateKey(rand.Reader) }

// SignSM2 signs msg with SM2 over SM3 with the default user id
// 1234567812345678; the signature is ASN.1 DER (PROTOCOL.md §2).
func SignSM2(key *PrivateKey, msg []byte) ([]byte, error) {
	return sm2.SignASN1(rand.Reader, key, msg, sm2.DefaultSM2SignerOpts)
}

// VerifySM2 checks an SM2 signature made by SignSM2.
func VerifySM2(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	return sm2.VerifyASN1WithSM2(pub, nil, msg, sig)
}

// MarshalPublicKey is the uncompressed 65-byte encoding of an SM2 public key.
func MarshalPublicKey(pub *ecdsa.PublicKey) []byte {
	out := make([]byte, 65)
	out[0] = 4
	pub.X.FillBytes(out[1:33])
	pub.Y.FillBytes(out[33:])
	return out
}
