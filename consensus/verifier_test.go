package consensus

import (
	"bytes"
	"fmt"

	"github.com/hcxfed/hcx/certs"
)

// An independent verifier, written from RFC 6962 / RFC 9162 §2.1 with SM3 and
// sharing no code with the hub's tree (neither the merkle library nor
// exchange.LogHasher): it recomputes roots from the leaves and checks proofs.

func refLeaf(b []byte) []byte {
	s := certs.SM3(append([]byte{0}, b...))
	return s[:]
}

func refNode(l, r []byte) []byte {
	s := certs.SM3(append(append([]byte{1}, l...), r...))
	return s[:]
}

// refRoot is MTH(D[n]) by the RFC's recursive definition.
func refRoot(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		s := certs.SM3(nil)
		return s[:]
	case 1:
		return refLeaf(leaves[0])
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return refNode(refRoot(leaves[:k]), refRoot(leaves[k:]))
}

// refVerifyInclusion is RFC 9162 §2.1.3.2.
func refVerifyInclusion(index, size uint64, leaf []byte, path [][]byte, root []byte) error {
	if index >= size {
		return fmt.Errorf("index %d not below size %d", index, size)
	}
	fn, sn := index, size-1
	r := refLeaf(leaf)
	for _, p := range path {
		if sn == 0 {
			return fmt.Errorf("proof too long")
		}
		if fn&1 == 1 || fn == sn {
			r = refNode(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = refNode(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("proof too short")
	}
	if !bytes.Equal(r, root) {
		return fmt.Errorf("inclusion proof gives another root")
	}
	return nil
}

// refVerifyConsistency is RFC 9162 §2.1.4.2.
func refVerifyConsistency(size1, size2 uint64, path [][]byte, root1, root2 []byte) error {
	if size1 == size2 {
		if len(path) != 0 || !bytes.Equal(root1, root2) {
			return fmt.Errorf("equal sizes need an empty proof and equal roots")
		}
		return nil
	}
	if size1 == 0 {
		return nil
	}
	if size1 > size2 {
		return fmt.Errorf("size1 above size2")
	}
	if size1&(size1-1) == 0 { // a power of two: prepend the first root
		path = append([][]byte{root1}, path...)
	}
	if len(path) == 0 {
		return fmt.Errorf("empty proof")
	}
	fn, sn := size1-1, size2-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return fmt.Errorf("proof too long")
		}
		if fn&1 == 1 || fn == sn {
			fr = refNode(c, fr)
			sr = refNode(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = refNode(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("proof too short")
	}
	if !bytes.Equal(fr, root1) || !bytes.Equal(sr, root2) {
		return fmt.Errorf("consistency proof gives other roots")
	}
	return nil
}
