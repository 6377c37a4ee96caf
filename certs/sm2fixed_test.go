package certs

import (
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// The fixed-key verifier (sm2fixed.go) against the generic one, gmsm's
// sm2.VerifyASN1WithSM2: the same verdict on every input. The default run
// is sized for make test under -race; HCX_SM2_DIFF=N runs N cases of each
// kind (make diff-sm2 runs millions).
func diffCases(t *testing.T, def int) int {
	if v := os.Getenv("HCX_SM2_DIFF"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("HCX_SM2_DIFF=%q: want a positive count", v)
		}
		return n
	}
	return def
}

func randScalar(r *mrand.Rand, below *big.Int) *big.Int {
	b := make([]byte, 40)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(b), below)
}

func TestFieldArithmeticMatchesBigInt(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	edge := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(2), new(big.Int).Sub(sm2P, big.NewInt(1)), new(big.Int).Sub(sm2P, big.NewInt(2)),
		new(big.Int).Lsh(big.NewInt(1), 255), new(big.Int).Lsh(big.NewInt(1), 224), new(big.Int).Lsh(big.NewInt(1), 64)}
	pick := func(i int) *big.Int {
		if i < len(edge)*len(edge) {
			return edge[i%len(edge)]
		}
		return randScalar(r, sm2P)
	}
	for i := range diffCases(t, 20000) {
		a, b := pick(i), pick(i/len(edge))
		var fa, fb, z fe
		feToMont(&fa, a)
		feToMont(&fb, b)
		if got := feToBig(&fa); got.Cmp(a) != 0 {
			t.Fatalf("round trip of %x gave %x", a, got)
		}
		want := new(big.Int)
		feMul(&z, &fa, &fb)
		if got := feToBig(&z); got.Cmp(want.Mul(a, b).Mod(want, sm2P)) != 0 {
			t.Fatalf("%x · %x = %x, want %x", a, b, got, want)
		}
		feAdd(&z, &fa, &fb)
		if got := feToBig(&z); got.Cmp(want.Add(a, b).Mod(want, sm2P)) != 0 {
			t.Fatalf("%x + %x = %x, want %x", a, b, got, want)
		}
		feSub(&z, &fa, &fb)
		if got := feToBig(&z); got.Cmp(want.Sub(a, b).Mod(want, sm2P)) != 0 {
			t.Fatalf("%x − %x = %x, want %x", a, b, got, want)
		}
		if a.Sign() != 0 && i%50 == 0 {
			feInv(&z, &fa)
			if got := feToBig(&z); got.Cmp(want.ModInverse(a, sm2P)) != 0 {
				t.Fatalf("1/%x = %x, want %x", a, got, want)
			}
		}
	}
}

// The table's multiples against gmsm's curve arithmetic, including the
// scalars whose signed digits carry into the 33rd window.
func TestFixedTableScalarMultMatchesCurve(t *testing.T) {
	curve := sm2.P256()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tab := newFixedTable(key.X, key.Y)
	r := mrand.New(mrand.NewPCG(3, 4))
	ks := []*big.Int{big.NewInt(1), big.NewInt(2), big.NewInt(128), big.NewInt(129), big.NewInt(255), big.NewInt(256),
		new(big.Int).Sub(sm2N, big.NewInt(1)), new(big.Int).Lsh(big.NewInt(1), 255), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))}
	for range diffCases(t, 300) {
		ks = append(ks, randScalar(r, sm2N))
	}
	for _, k := range ks {
		var kb [32]byte
		k.FillBytes(kb[:])
		var acc jacPoint
		acc.inf = true
		tab.addMul(&acc, &kb)
		wx, wy := curve.ScalarMult(key.X, key.Y, kb[:])
		if acc.inf {
			t.Fatalf("k=%x: infinity", k)
		}
		a := toAffine(&acc)
		if feToBig(&a.X).Cmp(wx) != 0 || feToBig(&a.Y).Cmp(wy) != 0 {
			t.Fatalf("k=%x: table gives a different point than the curve", k)
		}
	}
	// k = n is the point at infinity; k·P + (n−k)·P too.
	var nb, kb, rest [32]byte
	sm2N.FillBytes(nb[:])
	var acc jacPoint
	acc.inf = true
	tab.addMul(&acc, &nb)
	if !acc.inf {
		t.Fatal("n·P is not the point at infinity")
	}
	k := randScalar(r, sm2N)
	k.FillBytes(kb[:])
	new(big.Int).Sub(sm2N, k).FillBytes(rest[:])
	acc.inf = true
	tab.addMul(&acc, &kb)
	tab.addMul(&acc, &rest)
	if !acc.inf {
		t.Fatal("k·P + (n−k)·P is not the point at infinity")
	}
}

func derSig(r, s *big.Int) []byte {
	b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		panic(err)
	}
	return b
}

type diffKey struct {
	priv *PrivateKey
	pub  *ecdsa.PublicKey
	fk   *fixedKey
}

func newDiffKey(t testing.TB) diffKey {
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	fk, ok := newFixedKey(&priv.PublicKey)
	if !ok {
		t.Fatal("no fixed key for a fresh key")
	}
	return diffKey{priv, &priv.PublicKey, fk}
}

func (k diffKey) same(t testing.TB, what string, msg, sig []byte) bool {
	t.Helper()
	want := VerifySM2(k.pub, msg, sig)
	if got := k.fk.verify(msg, sig); got != want {
		t.Fatalf("%s: fixed-key verify says %v, generic %v (msg %x, sig %x)", what, got, want, msg, sig)
	}
	return want
}

// digestScalar is e = SM3(ZA || msg) mod n, as a verifier computes it.
func (k diffKey) digestScalar(msg []byte) *big.Int {
	h, err := sm2.CalculateSM2Hash(k.pub, msg, nil)
	if err != nil {
		panic(err)
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(h), sm2N)
}

func TestFixedKeyVerifyMatchesGeneric(t *testing.T) {
	n := diffCases(t, 400)
	keys := []diffKey{newDiffKey(t), newDiffKey(t), newDiffKey(t)}
	r := mrand.New(mrand.NewPCG(5, 6))
	var valid, refused int
	for i := range n {
		k := keys[i%len(keys)]
		msg := make([]byte, r.IntN(200))
		for j := range msg {
			msg[j] = byte(r.Uint32())
		}
		sig, err := SignSM2(k.priv, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !k.same(t, "valid", msg, sig) {
			t.Fatal("a fresh signature does not verify")
		}
		valid++
		// One bit flipped in the signature, then in the message.
		bad := append([]byte(nil), sig...)
		bad[r.IntN(len(bad))] ^= 1 << r.IntN(8)
		if k.same(t, "signature bit", msg, bad) {
			valid++
		} else {
			refused++
		}
		if len(msg) > 0 {
			m2 := append([]byte(nil), msg...)
			m2[r.IntN(len(m2))] ^= 1 << r.IntN(8)
			k.same(t, "message bit", m2, sig)
			refused++
		}
		// Another key's valid signature.
		other := keys[(i+1)%len(keys)]
		osig, _ := SignSM2(other.priv, msg)
		k.same(t, "other key", msg, osig)
		// Random (r, s), including out of range.
		k.same(t, "random", msg, derSig(randScalar(r, sm2P), randScalar(r, sm2P)))
	}
	t.Logf("%d cases per kind over %d keys: %d valid, %d refused, fixed and generic agree", n, len(keys), valid, refused)
}

// Inputs a forger would try: r or s at and around 0 and n, t = r + s = n,
// a signature whose s·G + t·Q is the point at infinity, malformed DER.
func TestFixedKeyVerifyAdversarial(t *testing.T) {
	k := newDiffKey(t)
	msg := []byte("hcx adversarial")
	sig, _ := SignSM2(k.priv, msg)
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &rs); err != nil {
		t.Fatal(err)
	}
	one := big.NewInt(1)
	nm1 := new(big.Int).Sub(sm2N, one)
	np1 := new(big.Int).Add(sm2N, one)
	vals := []*big.Int{big.NewInt(0), one, nm1, sm2N, np1, sm2P, new(big.Int).Lsh(one, 256), new(big.Int).Sub(new(big.Int).Lsh(one, 256), one), rs.R, rs.S}
	for _, a := range vals {
		for _, b := range vals {
			k.same(t, fmt.Sprintf("r=%x s=%x", a, b), msg, derSig(a, b))
		}
	}
	// t = r + s ≡ 0.
	k.same(t, "t=0", msg, derSig(rs.R, new(big.Int).Sub(sm2N, rs.R)))
	// s·G + (r+s)·Q = O: s(1 + d) ≡ −r·d.
	d := k.priv.D
	inv := new(big.Int).ModInverse(new(big.Int).Add(d, one), sm2N)
	for _, rr := range []*big.Int{rs.R, one, big.NewInt(12345), nm1} {
		s := new(big.Int).Mul(new(big.Int).Neg(rr), d)
		s.Mul(s, inv).Mod(s, sm2N)
		if k.same(t, "infinity", msg, derSig(rr, s)) {
			t.Fatal("a signature summing to the point at infinity verified")
		}
	}
	// A negative r, a non-minimal encoding, trailing bytes, a truncation.
	neg := append([]byte(nil), sig...)
	neg[4] |= 0x80
	k.same(t, "negative r", msg, neg)
	k.same(t, "trailing byte", msg, append(append([]byte(nil), sig...), 0))
	k.same(t, "truncated", msg, sig[:len(sig)-1])
	k.same(t, "empty", msg, nil)
	padded := derSig(rs.R, rs.S)
	long := []byte{0x30, byte(len(padded) - 2 + 1), 0x02, padded[3] + 1, 0x00}
	long = append(long, padded[4:]...)
	k.same(t, "leading zero on r", msg, long)
}

// xMatches takes x in [n, p) as x − n: find such a point (about half the x
// in that range are on the curve) and check it at a random Z.
func TestFixedKeyXAboveOrder(t *testing.T) {
	curve := sm2.P256()
	three := big.NewInt(3)
	for x := new(big.Int).Add(sm2N, big.NewInt(7)); x.Cmp(sm2P) < 0; x.Add(x, big.NewInt(1)) {
		rhs := new(big.Int).Exp(x, three, sm2P)
		rhs.Sub(rhs, new(big.Int).Mul(three, x)).Add(rhs, sm2B).Mod(rhs, sm2P)
		y := new(big.Int).ModSqrt(rhs, sm2P)
		if y == nil {
			continue
		}
		if !curve.IsOnCurve(x, y) {
			t.Fatal("constructed point is not on the curve")
		}
		var p jacPoint
		var xm, ym, z, z2, z3 fe
		feToMont(&xm, x)
		feToMont(&ym, y)
		feToMont(&z, big.NewInt(987654321))
		feSqr(&z2, &z)
		feMul(&z3, &z2, &z)
		feMul(&p.X, &xm, &z2)
		feMul(&p.Y, &ym, &z3)
		p.Z = z
		e := big.NewInt(42)
		r := new(big.Int).Add(x, e)
		r.Mod(r, sm2N)
		if !xMatches(&p, r, e) {
			t.Fatalf("x = %x ≥ n: (x + e) mod n = r not recognised", x)
		}
		if xMatches(&p, new(big.Int).Add(r, big.NewInt(1)), e) {
			t.Fatal("a wrong r matched")
		}
		return
	}
	t.Fatal("no curve point with x in [n, p) found")
}

func hasFixedKey(pub *ecdsa.PublicKey) bool {
	fixedKeys.Lock()
	defer fixedKeys.Unlock()
	_, ok := fixedKeys.m[string(MarshalPublicKey(pub))]
	return ok
}

// The trust store checks province signatures with the key's table, built
// once; a checkpoint device's key (there are many) is checked generically.
func TestTrustStoreUsesFixedKeysForProvinces(t *testing.T) {
	p := newPKI(t)
	dev, err := Issue(p.root, IssueRequest{Role: RoleCheckpoint, Province: "440000", Name: "gate-9", NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ts.Add(dev.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	tok, err := p.gd.SignJWS("hcx-code+jws", []byte(`{"iss":"440000"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ts.VerifyJWS(tok); err != nil {
		t.Fatal(err)
	}
	if !hasFixedKey(p.gd.Public()) {
		t.Fatal("a province signature was verified without the province key's table")
	}
	k := fixedKeyFor(p.gd.Public())
	if k == nil || k != fixedKeyFor(p.gd.Public()) {
		t.Fatal("the table for a key is not built once and kept")
	}
	bad := []byte(tok)
	bad[len(bad)-5] ^= 0x01
	if _, err := p.ts.VerifyJWS(string(bad)); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("a changed signature: %v", err)
	}
	dtok, err := dev.SignJWS("hcx-req+jws", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ts.VerifyJWS(dtok); err != nil {
		t.Fatal(err)
	}
	if hasFixedKey(dev.Public()) {
		t.Fatal("a checkpoint device's key got a table")
	}
}

func FuzzFixedKeyVerify(f *testing.F) {
	k := newDiffKey(f)
	msg := []byte("seed")
	sig, _ := SignSM2(k.priv, msg)
	f.Add(msg, sig)
	f.Add([]byte{}, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add(msg, derSig(sm2N, big.NewInt(1)))
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		k.same(t, "fuzz", msg, sig)
	})
}

// BenchmarkFixedKeyVerify: one code-sized signature checked with the
// key's table and generically (gmsm), interleaved in the same run so that
// load on the machine falls on both; speedup = generic time / fixed time.
//
//	go test ./certs -run '^$' -bench FixedKeyVerify -benchtime 5000x -count 3
func BenchmarkFixedKeyVerify(b *testing.B) {
	k := newDiffKey(b)
	msg := []byte(`{"iss":"440000","sub":"abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst","skv":1,"col":"green","nm":"张*","idt":"0014","vax":true,"iat":1763780000,"exp":1763866400}`)
	sig, _ := SignSM2(k.priv, msg)
	var fixed, generic time.Duration
	for b.Loop() {
		t0 := time.Now()
		if !k.fk.verify(msg, sig) {
			b.Fatal("fixed-key verify refused a valid signature")
		}
		t1 := time.Now()
		if !VerifySM2(k.pub, msg, sig) {
			b.Fatal("generic verify refused a valid signature")
		}
		fixed += t1.Sub(t0)
		generic += time.Since(t1)
	}
	b.ReportMetric(float64(fixed.Nanoseconds())/float64(b.N), "fixed-ns/verify")
	b.ReportMetric(float64(generic.Nanoseconds())/float64(b.N), "generic-ns/verify")
	b.ReportMetric(float64(generic)/float64(fixed), "speedup")
}
