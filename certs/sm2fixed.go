package certs

import (
	"crypto/ecdsa"
	"math/big"
	"math/bits"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Fixed-key SM2 verification (issue 12, the stretch goal). The keys that
// sign codes and envelopes are few and fixed: one or two per province and
// the hub's. For such a key Q this file precomputes, once, a table of
// j·2^(8i)·Q (i < 33, 1 ≤ j ≤ 128, affine), and the same table for the base
// point G; a verification's two scalar multiplications, s·G + t·Q, are then
// at most 66 mixed additions of table points and no doubling at all, where
// the generic verification spends about 256 doublings on t·Q. It is plain Go
// (math/bits): the inputs of a verification are public, so nothing here
// needs to run in constant time.
//
// It must accept exactly what sm2.VerifyASN1WithSM2(pub, nil, msg, sig)
// accepts: the same DER reading (cryptobyte), r and s in [1, n-1],
// t = r + s ≠ 0 mod n, e = SM3(ZA || msg) mod n, the point at infinity
// refused, and (e + x1) mod n = r. sm2fixed_test.go holds the two to the
// same verdict over random, mutated and adversarial signatures, and
// FuzzFixedKeyVerify on anything else.

// fe is an element of SM2's prime field in Montgomery form (x·2^256 mod p),
// four little-endian 64-bit limbs, always fully reduced (< p).
type fe [4]uint64

// p = 2^256 − 2^224 − 2^96 + 2^64 − 1.
var feP = fe{0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF00000000, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFEFFFFFFFF}

// feMul sets z = x·y·2^-256 mod p (Montgomery multiplication, CIOS). Since
// p ≡ −1 mod 2^64, −p^-1 mod 2^64 is 1 and each round's multiplier is the
// lowest limb itself.
func feMul(z, x, y *fe) {
	var t0, t1, t2, t3, t4, t5, c uint64
	for i := 0; i < 4; i++ {
		// t += x·y[i]
		t0, t1, t2, t3, c = mulAdd(x, y[i], t0, t1, t2, t3)
		t4, t5 = bits.Add64(t4, c, 0)
		// t = (t + m·p) / 2^64 with m = t0; the lowest limb becomes 0.
		_, t0, t1, t2, c = mulAdd(&feP, t0, t0, t1, t2, t3)
		var cc uint64
		t3, cc = bits.Add64(t4, c, 0)
		t4 = t5 + cc
	}
	reduceOnce(z, t0, t1, t2, t3, t4)
}

// mulAdd returns (t3..t0) + x·y as five limbs, the carry last. It is
// unrolled by hand: as a loop over an array the compiler spills the limbs
// and verification is about a third slower (BenchmarkFixedKeyVerify).
func mulAdd(x *fe, y, t0, t1, t2, t3 uint64) (r0, r1, r2, r3, carry uint64) {
	var hi, lo, cc uint64
	hi, lo = bits.Mul64(x[0], y)
	r0, cc = bits.Add64(lo, t0, 0)
	carry = hi + cc
	hi, lo = bits.Mul64(x[1], y)
	lo, cc = bits.Add64(lo, t1, 0)
	hi += cc
	r1, cc = bits.Add64(lo, carry, 0)
	carry = hi + cc
	hi, lo = bits.Mul64(x[2], y)
	lo, cc = bits.Add64(lo, t2, 0)
	hi += cc
	r2, cc = bits.Add64(lo, carry, 0)
	carry = hi + cc
	hi, lo = bits.Mul64(x[3], y)
	lo, cc = bits.Add64(lo, t3, 0)
	hi += cc
	r3, cc = bits.Add64(lo, carry, 0)
	carry = hi + cc
	return
}

// reduceOnce sets z = t mod p for t = t4·2^256 + (t3..t0) < 2p.
func reduceOnce(z *fe, t0, t1, t2, t3, t4 uint64) {
	r0, b := bits.Sub64(t0, feP[0], 0)
	r1, b := bits.Sub64(t1, feP[1], b)
	r2, b := bits.Sub64(t2, feP[2], b)
	r3, b := bits.Sub64(t3, feP[3], b)
	_, b = bits.Sub64(t4, 0, b)
	if b == 0 {
		*z = fe{r0, r1, r2, r3}
	} else {
		*z = fe{t0, t1, t2, t3}
	}
}

func feSqr(z, x *fe) { feMul(z, x, x) }

// feAdd sets z = x + y mod p.
func feAdd(z, x, y *fe) {
	t0, c := bits.Add64(x[0], y[0], 0)
	t1, c := bits.Add64(x[1], y[1], c)
	t2, c := bits.Add64(x[2], y[2], c)
	t3, c := bits.Add64(x[3], y[3], c)
	reduceOnce(z, t0, t1, t2, t3, c)
}

// feSub sets z = x − y mod p.
func feSub(z, x, y *fe) {
	t0, b := bits.Sub64(x[0], y[0], 0)
	t1, b := bits.Sub64(x[1], y[1], b)
	t2, b := bits.Sub64(x[2], y[2], b)
	t3, b := bits.Sub64(x[3], y[3], b)
	if b != 0 {
		var c uint64
		t0, c = bits.Add64(t0, feP[0], 0)
		t1, c = bits.Add64(t1, feP[1], c)
		t2, c = bits.Add64(t2, feP[2], c)
		t3, _ = bits.Add64(t3, feP[3], c)
	}
	*z = fe{t0, t1, t2, t3}
}

func (x *fe) isZero() bool { return x[0]|x[1]|x[2]|x[3] == 0 }

// Conversions with math/big, used only when tables are built and for the
// few scalars of a verification.
var (
	sm2P, sm2N, sm2B, sm2Gx, sm2Gy *big.Int
	feRR                           fe // 2^512 mod p: feMul(x, RR) puts x in Montgomery form
	feOne                          fe // 1 in Montgomery form
)

func init() {
	params := sm2.P256().Params()
	sm2P, sm2N, sm2B, sm2Gx, sm2Gy = params.P, params.N, params.B, params.Gx, params.Gy
	rr := new(big.Int).Lsh(big.NewInt(1), 512)
	feRR = feFromBig(rr.Mod(rr, sm2P))
	one := big.NewInt(1)
	feToMont(&feOne, one)
}

// feFromBig reads x < 2^256 into limbs as is (no Montgomery conversion).
func feFromBig(x *big.Int) fe {
	var b [32]byte
	x.FillBytes(b[:])
	return fe{beUint64(b[24:]), beUint64(b[16:]), beUint64(b[8:]), beUint64(b[:])}
}

func beUint64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// feToMont sets z to x (0 ≤ x < p) in Montgomery form.
func feToMont(z *fe, x *big.Int) {
	raw := feFromBig(x)
	feMul(z, &raw, &feRR)
}

// feToBig is the integer that z represents.
func feToBig(z *fe) *big.Int {
	one := fe{1}
	var r fe
	feMul(&r, z, &one)
	var b [32]byte
	for i := 0; i < 4; i++ {
		v := r[3-i]
		for j := 0; j < 8; j++ {
			b[i*8+j] = byte(v >> (56 - 8*j))
		}
	}
	return new(big.Int).SetBytes(b[:])
}

// feInv sets z = x^-1 (x ≠ 0) as x^(p−2), for table building only.
func feInv(z, x *fe) {
	e := new(big.Int).Sub(sm2P, big.NewInt(2))
	r := feOne
	base := *x
	for i := e.BitLen() - 1; i >= 0; i-- {
		feSqr(&r, &r)
		if e.Bit(i) == 1 {
			feMul(&r, &r, &base)
		}
	}
	*z = r
}

// jacPoint is a point in Jacobian coordinates (x = X/Z², y = Y/Z³); inf
// marks the point at infinity.
type jacPoint struct {
	X, Y, Z fe
	inf     bool
}

// affPoint is a table point (never the point at infinity).
type affPoint struct{ X, Y fe }

// double sets q = 2q (dbl-2001-b, a = −3).
func (q *jacPoint) double() {
	if q.inf {
		return
	}
	if q.Y.isZero() {
		q.inf = true
		return
	}
	var delta, gamma, beta, alpha, t1, t2 fe
	feSqr(&delta, &q.Z)
	feSqr(&gamma, &q.Y)
	feMul(&beta, &q.X, &gamma)
	feSub(&t1, &q.X, &delta)
	feAdd(&t2, &q.X, &delta)
	feMul(&alpha, &t1, &t2)
	feAdd(&t1, &alpha, &alpha)
	feAdd(&alpha, &alpha, &t1) // 3(X−δ)(X+δ)
	// Z3 = (Y+Z)² − γ − δ
	feAdd(&t1, &q.Y, &q.Z)
	feSqr(&t1, &t1)
	feSub(&t1, &t1, &gamma)
	feSub(&q.Z, &t1, &delta)
	// X3 = α² − 8β
	var beta4, beta8 fe
	feAdd(&beta4, &beta, &beta)
	feAdd(&beta4, &beta4, &beta4)
	feAdd(&beta8, &beta4, &beta4)
	feSqr(&t1, &alpha)
	feSub(&q.X, &t1, &beta8)
	// Y3 = α(4β − X3) − 8γ²
	feSub(&t1, &beta4, &q.X)
	feMul(&t1, &alpha, &t1)
	feSqr(&t2, &gamma)
	feAdd(&t2, &t2, &t2)
	feAdd(&t2, &t2, &t2)
	feAdd(&t2, &t2, &t2)
	feSub(&q.Y, &t1, &t2)
}

// addAffine sets q = q + a, or q − a when neg (madd-2007-bl), handling the
// point at infinity, a doubling and a sum that is the point at infinity.
func (q *jacPoint) addAffine(a *affPoint, neg bool) {
	ay := a.Y
	if neg {
		feSub(&ay, &fe{}, &a.Y)
	}
	if q.inf {
		q.X, q.Y, q.Z, q.inf = a.X, ay, feOne, false
		return
	}
	var z1z1, u2, s2, h, r, t fe
	feSqr(&z1z1, &q.Z)
	feMul(&u2, &a.X, &z1z1)
	feMul(&s2, &q.Z, &z1z1)
	feMul(&s2, &ay, &s2)
	feSub(&h, &u2, &q.X)
	feSub(&r, &s2, &q.Y)
	if h.isZero() {
		if r.isZero() {
			q.double()
		} else {
			q.inf = true
		}
		return
	}
	var hh, i, j, v fe
	feSqr(&hh, &h)
	feAdd(&i, &hh, &hh)
	feAdd(&i, &i, &i)
	feMul(&j, &h, &i)
	feAdd(&r, &r, &r)
	feMul(&v, &q.X, &i)
	// Z3 = (Z1+H)² − Z1Z1 − HH
	feAdd(&t, &q.Z, &h)
	feSqr(&t, &t)
	feSub(&t, &t, &z1z1)
	feSub(&q.Z, &t, &hh)
	// X3 = r² − J − 2V
	var x3 fe
	feSqr(&x3, &r)
	feSub(&x3, &x3, &j)
	feSub(&x3, &x3, &v)
	feSub(&x3, &x3, &v)
	// Y3 = r(V − X3) − 2·Y1·J
	feSub(&t, &v, &x3)
	feMul(&t, &r, &t)
	var y1j fe
	feMul(&y1j, &q.Y, &j)
	feAdd(&y1j, &y1j, &y1j)
	feSub(&q.Y, &t, &y1j)
	q.X = x3
}

// Table shape: scalars below 2^256 in 33 signed base-256 digits in
// [−127, 128]; window i holds j·2^(8i)·P for j = 1..128.
const (
	fixedWindows = 33
	fixedEntries = 128
)

// fixedTable is the precomputed multiples of one point.
type fixedTable [fixedWindows][fixedEntries]affPoint

// newFixedTable computes the table of the affine point (x, y), converting
// all points to affine with one inversion (Montgomery's trick).
func newFixedTable(x, y *big.Int) *fixedTable {
	jac := make([]jacPoint, fixedWindows*fixedEntries)
	var base jacPoint
	feToMont(&base.X, x)
	feToMont(&base.Y, y)
	base.Z = feOne
	for w := 0; w < fixedWindows; w++ {
		row := jac[w*fixedEntries : (w+1)*fixedEntries]
		row[0] = base
		var baseAff affPoint
		if !base.inf {
			baseAff = toAffine(&base)
		}
		for j := 1; j < fixedEntries; j++ {
			row[j] = row[j-1]
			row[j].addAffine(&baseAff, false)
		}
		for range 8 {
			base.double()
		}
	}
	// Batch inversion of every Z: prefix products, one inversion, back.
	n := len(jac)
	prefix := make([]fe, n)
	acc := feOne
	for i := range jac {
		prefix[i] = acc
		feMul(&acc, &acc, &jac[i].Z)
	}
	var inv fe
	feInv(&inv, &acc)
	t := new(fixedTable)
	for i := n - 1; i >= 0; i-- {
		var zinv, zinv2, zinv3 fe
		feMul(&zinv, &inv, &prefix[i])
		feMul(&inv, &inv, &jac[i].Z)
		feSqr(&zinv2, &zinv)
		feMul(&zinv3, &zinv2, &zinv)
		a := &t[i/fixedEntries][i%fixedEntries]
		feMul(&a.X, &jac[i].X, &zinv2)
		feMul(&a.Y, &jac[i].Y, &zinv3)
	}
	return t
}

// toAffine is p (not at infinity) with Z = 1.
func toAffine(p *jacPoint) affPoint {
	var zinv, zinv2, zinv3 fe
	feInv(&zinv, &p.Z)
	feSqr(&zinv2, &zinv)
	feMul(&zinv3, &zinv2, &zinv)
	var a affPoint
	feMul(&a.X, &p.X, &zinv2)
	feMul(&a.Y, &p.Y, &zinv3)
	return a
}

// addMul adds k·P to acc, k a 32-byte big-endian scalar, from P's table.
func (t *fixedTable) addMul(acc *jacPoint, k *[32]byte) {
	carry := 0
	for w := 0; w < fixedWindows; w++ {
		v := carry
		if w < 32 {
			v += int(k[31-w])
		}
		carry = 0
		if v > fixedEntries {
			v -= 256
			carry = 1
		}
		switch {
		case v > 0:
			acc.addAffine(&t[w][v-1], false)
		case v < 0:
			acc.addAffine(&t[w][-v-1], true)
		}
	}
}

var (
	baseTableOnce sync.Once
	baseTable     *fixedTable
)

func gTable() *fixedTable {
	baseTableOnce.Do(func() { baseTable = newFixedTable(sm2Gx, sm2Gy) })
	return baseTable
}

// fixedKey is one public key's table and its ZA (SM2's hash of the
// signer's identity, with the default uid), both computed once.
type fixedKey struct {
	table *fixedTable
	za    []byte
}

func newFixedKey(pub *ecdsa.PublicKey) (*fixedKey, bool) {
	if pub == nil || pub.X == nil || pub.Y == nil || !sm2.P256().IsOnCurve(pub.X, pub.Y) {
		return nil, false
	}
	// VerifyASN1WithSM2 given no uid uses the default one; so does ZA here.
	za, err := sm2.CalculateZA(pub, defaultSM2UID)
	if err != nil {
		return nil, false
	}
	return &fixedKey{table: newFixedTable(pub.X, pub.Y), za: za}, true
}

// defaultSM2UID is the uid VerifyASN1WithSM2 uses when given none
// (GB/T 32918.2).
var defaultSM2UID = []byte("1234567812345678")

// verify is sm2.VerifyASN1WithSM2(pub, nil, msg, sig) for the table's key.
func (k *fixedKey) verify(msg, sig []byte) bool {
	r, s, ok := parseSM2Signature(sig)
	if !ok {
		return false
	}
	h := sm3.New()
	h.Write(k.za)
	h.Write(msg)
	var digest [32]byte
	e := new(big.Int).SetBytes(h.Sum(digest[:0]))
	e.Mod(e, sm2N)
	return k.verifyScalars(r, s, e)
}

// verifyScalars checks (r, s) over the digest scalar e (already mod n).
func (k *fixedKey) verifyScalars(r, s, e *big.Int) bool {
	if r.Sign() <= 0 || r.Cmp(sm2N) >= 0 || s.Sign() <= 0 || s.Cmp(sm2N) >= 0 {
		return false
	}
	t := new(big.Int).Add(r, s)
	t.Mod(t, sm2N)
	if t.Sign() == 0 {
		return false
	}
	var sb, tb [32]byte
	s.FillBytes(sb[:])
	t.FillBytes(tb[:])
	var acc jacPoint
	acc.inf = true
	gTable().addMul(&acc, &sb)
	k.table.addMul(&acc, &tb)
	return xMatches(&acc, r, e)
}

// xMatches reports whether acc is not the point at infinity and its affine
// x satisfies (x + e) mod n = r, without an inversion: x is in [0, p) and
// p < 2n, so x mod n = r − e mod n means x is c = (r − e) mod n or c + n,
// and x = X/Z² means X = c·Z².
func xMatches(acc *jacPoint, r, e *big.Int) bool {
	if acc.inf || acc.Z.isZero() {
		return false
	}
	c := new(big.Int).Sub(r, e)
	c.Mod(c, sm2N)
	var zz fe
	feSqr(&zz, &acc.Z)
	for c.Cmp(sm2P) < 0 {
		var cm, want fe
		feToMont(&cm, c)
		feMul(&want, &cm, &zz)
		if want == acc.X {
			return true
		}
		c.Add(c, sm2N)
	}
	return false
}

// parseSM2Signature reads a DER signature exactly as gmsm's verification
// does: a SEQUENCE of two non-negative minimal INTEGERs, nothing after.
func parseSM2Signature(sig []byte) (r, s *big.Int, ok bool) {
	var inner cryptobyte.String
	var rb, sb []byte
	input := cryptobyte.String(sig)
	if !input.ReadASN1(&inner, cbasn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(&rb) || !inner.ReadASN1Integer(&sb) || !inner.Empty() {
		return nil, nil, false
	}
	if len(rb) > 32 || len(sb) > 32 {
		return nil, nil, false
	}
	return new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb), true
}

// The fixed keys in use, bounded: a table is about 270 KiB.
const maxFixedKeys = 128

var fixedKeys struct {
	sync.Mutex
	m map[string]*fixedKeyEntry
}

type fixedKeyEntry struct {
	once sync.Once
	key  *fixedKey
}

// fixedKeyFor is the table for pub, built on first use; nil when pub is not
// an SM2 key on the curve, or when the bound is reached (the generic path
// then serves it).
func fixedKeyFor(pub *ecdsa.PublicKey) *fixedKey {
	if pub == nil || pub.X == nil || pub.Y == nil {
		return nil
	}
	id := string(MarshalPublicKey(pub))
	fixedKeys.Lock()
	if fixedKeys.m == nil {
		fixedKeys.m = map[string]*fixedKeyEntry{}
	}
	ent, ok := fixedKeys.m[id]
	if !ok {
		if len(fixedKeys.m) >= maxFixedKeys {
			fixedKeys.Unlock()
			return nil
		}
		ent = &fixedKeyEntry{}
		fixedKeys.m[id] = ent
	}
	fixedKeys.Unlock()
	ent.once.Do(func() { ent.key, _ = newFixedKey(pub) })
	return ent.key
}
