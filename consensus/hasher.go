package consensus

import (
	"github.com/hcxfed/hcx/certs"
	"github.com/transparency-dev/merkle"
)

// SM3Hasher is the log's tree hasher (PROTOCOL.md §4): RFC 6962 shape over
// SM3. leaf = SM3(0x00 || leaf), node = SM3(0x01 || left || right), and the
// empty tree's root is SM3("").
type SM3Hasher struct{}

var _ merkle.LogHasher = SM3Hasher{}

// EmptyRoot is SM3 of the empty string.
func (SM3Hasher) EmptyRoot() []byte { s := certs.SM3(nil); return s[:] }

// HashLeaf hashes one leaf's bytes.
func (SM3Hasher) HashLeaf(leaf []byte) []byte {
	h := certs.NewSM3()
	h.Write([]byte{0})
	h.Write(leaf)
	return h.Sum(nil)
}

// HashChildren hashes an interior node.
func (SM3Hasher) HashChildren(l, r []byte) []byte {
	h := certs.NewSM3()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

// Size is 32.
func (SM3Hasher) Size() int { return 32 }
