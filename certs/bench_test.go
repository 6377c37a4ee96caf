package certs

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	tjsm3 "github.com/tjfoc/gmsm/sm3"
	tjsm4 "github.com/tjfoc/gmsm/sm4"
)

// Each benchmark measures one operation three ways in the same run: through
// our layer ("hcx"), with the raw emmansun primitive it is built on
// ("emmansun"), and with tjfoc/gmsm ("tjfoc"). The ratios in
// docs/benchmarks.md come from TestBenchmarkTable (see there).

type benchSet struct {
	name, what           string
	hcx, emmansun, tjfoc func(b *testing.B)
}

func benchSets(tb testing.TB) []benchSet {
	now := time.Now()
	root, err := NewRoot("bench root", now, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	gd, err := Issue(root, IssueRequest{Role: RoleProvince, Province: "440000", Name: "gd", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := NewTrustStore(root.Cert)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := ts.Add(gd.Cert.Raw); err != nil {
		tb.Fatal(err)
	}
	tjKey, err := tjsm2.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}

	msg := []byte(strings.Repeat("hcx batch payload ", 14)) // 252 bytes
	sig, _ := gd.Sign(msg)
	tjSig, _ := tjKey.Sign(rand.Reader, msg, nil)

	// A JWS carrying ten attestations, about the size of a small batch.
	att := `{"sub":"abcdefghijklmnopqrstuvwxyz","col":"red","rsn":["lab.positive"],"eff":1763779990,"exp":1764384790,"pol":"00112233445566778899aabbccddeeff","n":42}`
	payload := []byte(`{"typ":"hcx.batch.v1","iss":"440000","seq":17,"at":1763780000,"skv":1,"atts":[` + strings.TrimSuffix(strings.Repeat(att+",", 10), ",") + `]}`)
	tok, err := gd.SignJWS("hcx-batch+jws", payload)
	if err != nil {
		tb.Fatal(err)
	}
	input := []byte(tok[:strings.LastIndexByte(tok, '.')])
	jwsSig, _ := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
	tjJWSSig, _ := tjKey.Sign(rand.Reader, input, nil)

	fieldKey := []byte("0123456789abcdef")
	fc, err := NewFieldCipher(1, map[int][]byte{1: fieldKey})
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := sm4.NewCipher(fieldKey)
	gcm, _ := cipher.NewGCM(block)
	field := []byte("张三丰 110105194912310021 13800138000 北京市东城区") // ~64 bytes of identity fields
	aad := []byte("resident/42")
	nonce := make([]byte, 12)
	dst := make([]byte, 0, len(field)+16)

	sk := SubjectKey{Version: 1, Key: []byte("0123456789abcdef0123456789abcdef")}
	pseudoInput := []byte("hcx-subject-v1\x00CN-ID\x0011010519491231002X")
	kb := make([]byte, 1024)

	return []benchSet{
		{"SM2Sign", "SM2 sign, 252-byte message",
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := gd.Sign(msg); err != nil {
						b.Fatal(err)
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := sm2.SignASN1(rand.Reader, gd.Key, msg, sm2.DefaultSM2SignerOpts); err != nil {
						b.Fatal(err)
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := tjKey.Sign(rand.Reader, msg, nil); err != nil {
						b.Fatal(err)
					}
				}
			}},
		{"SM2Verify", "SM2 verify, 252-byte message",
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if !VerifySM2(gd.Public(), msg, sig) {
						b.Fatal("verify")
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if !sm2.VerifyASN1WithSM2(gd.Public(), nil, msg, sig) {
						b.Fatal("verify")
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if !tjKey.PublicKey.Verify(msg, tjSig) {
						b.Fatal("verify")
					}
				}
			}},
		{"JWSSign", fmt.Sprintf("JWS sign, %d-byte batch payload (raw: SM2 over the signing input)", len(payload)),
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := gd.SignJWS("hcx-batch+jws", payload); err != nil {
						b.Fatal(err)
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := sm2.SignASN1(rand.Reader, gd.Key, input, sm2.DefaultSM2SignerOpts); err != nil {
						b.Fatal(err)
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := tjKey.Sign(rand.Reader, input, nil); err != nil {
						b.Fatal(err)
					}
				}
			}},
		{"JWSVerify", "JWS verify through the trust store (kid lookup, header, jwx) vs SM2 verify of the signing input",
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := ts.VerifyJWS(tok); err != nil {
						b.Fatal(err)
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if !sm2.VerifyASN1WithSM2(gd.Public(), nil, input, jwsSig) {
						b.Fatal("verify")
					}
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if !tjKey.PublicKey.Verify(input, tjJWSSig) {
						b.Fatal("verify")
					}
				}
			}},
		{"SM4GCMSeal", fmt.Sprintf("SM4-GCM seal, %d-byte identity fields", len(field)),
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					fc.Seal(field, aad)
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					gcm.Seal(dst[:0], nonce, field, aad)
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, _, err := tjsm4.Sm4GCM(fieldKey, nonce, field, aad, true); err != nil {
						b.Fatal(err)
					}
				}
			}},
		{"Pseudonym", "subject pseudonym (HMAC-SM3, truncate, base32)",
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					sk.Subject("CN-ID", "11010519491231002X")
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					m := hmac.New(sm3.New, sk.Key)
					m.Write(pseudoInput)
					m.Sum(nil)
				}
			},
			func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					m := hmac.New(tjsm3.New, sk.Key)
					m.Write(pseudoInput)
					m.Sum(nil)
				}
			}},
		{"SM3", "SM3 of 1 KiB",
			func(b *testing.B) {
				b.SetBytes(1024)
				for i := 0; i < b.N; i++ {
					SM3(kb)
				}
			},
			func(b *testing.B) {
				b.SetBytes(1024)
				for i := 0; i < b.N; i++ {
					sm3.Sum(kb)
				}
			},
			func(b *testing.B) {
				b.SetBytes(1024)
				for i := 0; i < b.N; i++ {
					tjsm3.Sm3Sum(kb)
				}
			}},
	}
}

func runSet(b *testing.B, name string) {
	for _, s := range benchSets(b) {
		if s.name == name {
			b.Run("hcx", s.hcx)
			b.Run("emmansun", s.emmansun)
			b.Run("tjfoc", s.tjfoc)
			return
		}
	}
	b.Fatalf("no benchmark set %s", name)
}

func BenchmarkSM2Sign(b *testing.B)    { runSet(b, "SM2Sign") }
func BenchmarkSM2Verify(b *testing.B)  { runSet(b, "SM2Verify") }
func BenchmarkJWSSign(b *testing.B)    { runSet(b, "JWSSign") }
func BenchmarkJWSVerify(b *testing.B)  { runSet(b, "JWSVerify") }
func BenchmarkSM4GCMSeal(b *testing.B) { runSet(b, "SM4GCMSeal") }
func BenchmarkPseudonym(b *testing.B)  { runSet(b, "Pseudonym") }
func BenchmarkSM3(b *testing.B)        { runSet(b, "SM3") }

// TestBenchmarkTable prints the table of docs/benchmarks.md: every set run
// three ways in the same process, with ratios. It takes about a minute, so it
// runs only with HCX_BENCH_TABLE=1:
//
//	HCX_BENCH_TABLE=1 go test ./certs -run TestBenchmarkTable -v
func TestBenchmarkTable(t *testing.T) {
	if os.Getenv("HCX_BENCH_TABLE") == "" {
		t.Skip("set HCX_BENCH_TABLE=1 to measure (about a minute)")
	}
	ns := func(f func(*testing.B)) float64 {
		r := testing.Benchmark(f)
		return float64(r.T.Nanoseconds()) / float64(r.N)
	}
	var sb strings.Builder
	sb.WriteString("| operation | hcx | emmansun raw | tjfoc | hcx / emmansun | hcx / tjfoc |\n|---|---:|---:|---:|---:|---:|\n")
	for _, s := range benchSets(t) {
		h, e, j := ns(s.hcx), ns(s.emmansun), ns(s.tjfoc)
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %.2f | %.3f |\n", s.what, dur(h), dur(e), dur(j), h/e, h/j)
	}
	t.Log("\n" + sb.String())
}

func dur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}
