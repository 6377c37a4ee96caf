package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjsm3 "github.com/tjfoc/gmsm/sm3"
	tjsm4 "github.com/tjfoc/gmsm/sm4"
	tjx509 "github.com/tjfoc/gmsm/x509"
)

// tjPublic rebuilds a tjfoc SM2 public key from any key with X and Y.
// tjfoc's x509 hands back an SM2 key from an emmansun certificate as an
// *ecdsa.PublicKey on tjfoc's curve (DESIGN.md §9): only X and Y carry over.
func tjPublic(x, y *big.Int) *tjsm2.PublicKey {
	return &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: x, Y: y}
}

// ourPublic rebuilds an emmansun SM2 public key from X and Y.
func ourPublic(x, y *big.Int) *ecdsa.PublicKey {
	return &ecdsa.PublicKey{Curve: sm2.P256(), X: x, Y: y}
}

func TestInteropWithTjfoc(t *testing.T) {
	msg := []byte(`{"typ":"hcx.batch.v1","iss":"440000","seq":1}`)
	p := newPKI(t)

	t.Run("sm3-agrees", func(t *testing.T) {
		ours := SM3(msg)
		if theirs := tjsm3.Sm3Sum(msg); string(theirs) != string(ours[:]) {
			t.Errorf("SM3: ours %x, tjfoc %x", ours, theirs)
		}
	})
	t.Run("sm4-gcm-keystream-agrees-tag-does-not", func(t *testing.T) {
		// tjfoc v1.4.1's Sm4GCM produces the same counter-mode ciphertext as
		// standard GCM over SM4 (ours: crypto/cipher's GCM on emmansun's
		// SM4) but a different tag, so the two do not interoperate on
		// sealed fields. Ours is the standard construction (RFC 8998).
		key := []byte("0123456789abcdef")
		fc, err := NewFieldCipher(3, map[int][]byte{3: key})
		if err != nil {
			t.Fatal(err)
		}
		aad, pt := []byte("resident/42"), []byte("张三 110105194912310021")
		// tjfoc's counter increment also treats any 0xff byte of the nonce
		// as a carry (its inc is not inc32), so its keystream departs from
		// the standard one for about 1 nonce in 20; compare on a nonce
		// without 0xff.
		sealed := fc.Seal(pt, aad)
		for bytes.IndexByte(sealed[1:13], 0xff) >= 0 {
			sealed = fc.Seal(pt, aad)
		}
		// Copies: tjfoc appends the counter to the IV slice it is given,
		// which would overwrite the ciphertext after it.
		nonce, body := append([]byte(nil), sealed[1:13]...), append([]byte(nil), sealed[13:]...)
		ct, tag, err := tjsm4.Sm4GCM(key, nonce, pt, aad, true)
		if err != nil {
			t.Fatal(err)
		}
		if string(ct) != string(body[:len(pt)]) {
			t.Errorf("ciphertext: ours %x, tjfoc %x", body[:len(pt)], ct)
		}
		if string(tag) == string(body[len(pt):]) {
			t.Log("tjfoc's GCM tag now matches the standard one; field values interoperate")
		}
	})
	t.Run("our-signature-verifies-with-tjfoc", func(t *testing.T) {
		sig, err := SignSM2(p.gd.Key, msg)
		if err != nil {
			t.Fatal(err)
		}
		pub := p.gd.Public()
		if !tjPublic(pub.X, pub.Y).Verify(msg, sig) {
			t.Error("tjfoc rejects our signature")
		}
		if tjPublic(pub.X, pub.Y).Verify(append(msg, '!'), sig) {
			t.Error("tjfoc accepts our signature on another message")
		}
	})
	t.Run("tjfoc-signature-verifies-with-ours", func(t *testing.T) {
		key, err := tjsm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := key.Sign(rand.Reader, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !VerifySM2(ourPublic(key.X, key.Y), msg, sig) {
			t.Error("we reject tjfoc's signature")
		}
		if VerifySM2(ourPublic(key.X, key.Y), append(msg, '!'), sig) {
			t.Error("we accept tjfoc's signature on another message")
		}
	})
	t.Run("our-certificate-parses-and-verifies-with-tjfoc", func(t *testing.T) {
		root, err := tjx509.ParseCertificate(p.root.Cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := tjx509.ParseCertificate(p.gd.Cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := leaf.CheckSignatureFrom(root); err != nil {
			t.Errorf("tjfoc: our certificate's signature: %v", err)
		}
		if leaf.Subject.Province[0] != "440000" || leaf.Subject.OrganizationalUnit[0] != "hcx-province" {
			t.Errorf("tjfoc reads subject %v", leaf.Subject)
		}
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			t.Fatalf("tjfoc public key is %T", leaf.PublicKey)
		}
		tok, err := p.gd.SignJWS("hcx-batch+jws", msg)
		if err != nil {
			t.Fatal(err)
		}
		input, sig := splitJWS(t, tok)
		if !tjPublic(pub.X, pub.Y).Verify(input, sig) {
			t.Error("tjfoc, with the key from our certificate, rejects our JWS signature")
		}
	})
	t.Run("tjfoc-certificate-parses-verifies-and-is-trusted-by-ours", func(t *testing.T) {
		rootKey, err := tjsm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		rootTmpl := &tjx509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tjfoc root", OrganizationalUnit: []string{"hcx-root"}},
			NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(24 * time.Hour),
			KeyUsage: tjx509.KeyUsageCertSign | tjx509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
			SubjectKeyId: []byte{1, 2, 3, 4},
			// Without this tjfoc hashes the TBS with SM3 and then signs the
			// digest, SM3 applied twice, which no standard verifier accepts.
			SignatureAlgorithm: tjx509.SM2WithSM3,
		}
		rootDER, err := tjx509.CreateCertificate(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		leafKey, err := tjsm2.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		parent, err := tjx509.ParseCertificate(rootDER)
		if err != nil {
			t.Fatal(err)
		}
		leafTmpl := &tjx509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "tjfoc gd", OrganizationalUnit: []string{"hcx-province"}, Province: []string{"440000"}},
			NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour), KeyUsage: tjx509.KeyUsageDigitalSignature,
			UnknownExtKeyUsage: []asn1.ObjectIdentifier{OIDProvinceSigning}, BasicConstraintsValid: true,
			SignatureAlgorithm: tjx509.SM2WithSM3, // see above
		}
		leafDER, err := tjx509.CreateCertificate(leafTmpl, parent, &leafKey.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		ourRoot, err := smx509.ParseCertificate(rootDER)
		if err != nil {
			t.Fatal(err)
		}
		ourLeaf, err := smx509.ParseCertificate(leafDER)
		if err != nil {
			t.Fatal(err)
		}
		if err := ourLeaf.CheckSignatureFrom(ourRoot); err != nil {
			t.Fatalf("emmansun: tjfoc certificate's signature: %v", err)
		}
		ts, err := NewTrustStore(ourRoot)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ts.Add(leafDER)
		if err != nil {
			t.Fatalf("our trust store refuses a tjfoc-made province certificate: %v", err)
		}
		if e.Province != "440000" || e.Role != RoleProvince {
			t.Errorf("entry %s %s", e.Role, e.Province)
		}
		// A JWS signed by tjfoc with that key verifies through our store.
		header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"SM2","kid":"` + e.KID + `","typ":"hcx-batch+jws"}`))
		input := header + "." + base64.RawURLEncoding.EncodeToString(msg)
		sig, err := leafKey.Sign(rand.Reader, []byte(input), nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ts.VerifyJWS(input + "." + base64.RawURLEncoding.EncodeToString(sig))
		if err != nil {
			t.Fatalf("our store rejects a tjfoc JWS: %v", err)
		}
		if string(v.Payload) != string(msg) {
			t.Errorf("payload %s", v.Payload)
		}
	})
}

func splitJWS(t *testing.T, tok string) (input, sig []byte) {
	t.Helper()
	i := len(tok) - 1
	for tok[i] != '.' {
		i--
	}
	s, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(tok[:i]), s
}
