package exchange

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// BenchmarkReceipts seals and opens a batch of 1000 receipts (JSON, padded
// to its bucket, SM2-wrapped SM4 key, SM4-GCM, the envelope's SM2
// signature; open: strict read and validation of every receipt), against
// raw SM4-GCM over the same padded bytes.
//
//	go test ./exchange -run '^$' -bench Receipts -benchtime 2s
func BenchmarkReceipts(b *testing.B) {
	f, _ := trustedFederation(b)
	at := f.start.Unix()
	k, _ := certs.GenerateBoxKey()
	rs := make([]Receipt, MaxReceipts)
	for i := range rs {
		rs[i] = Receipt{Sub: hcx.Subject(strings.Map(func(r rune) rune { return r - '0' + 'a' }, fmt.Sprintf("%026d", i))), At: at, Unit: "成都东站 checkpoint gate 3", Role: "checkpoint", Colour: hcx.Green}
	}
	jws, err := SealReceipts(f.sc, "440000", at, k.KID(), k.Public(), rs)
	if err != nil {
		b.Fatal(err)
	}
	env := &Envelope{Typ: TypReceipts, Payload: mustPayload(b, jws)}
	r, err := DecodeReceipts(env)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("seal-1000", func(b *testing.B) {
		for b.Loop() {
			if _, err := SealReceipts(f.sc, "440000", at, k.KID(), k.Public(), rs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open-1000", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Open(k); err != nil {
				b.Fatal(err)
			}
		}
	})
	plain := make([]byte, 128<<10) // the bucket of these 1000 receipts
	key := make([]byte, 16)
	rand.Read(key)
	// Raw SM4-GCM through certs (the only gmsm importer): FieldCipher is
	// SM4-GCM with a fresh nonce, nothing else.
	aead, err := certs.NewFieldCipher(1, map[int][]byte{1: key})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw-sm4gcm-128KiB", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			aead.Seal(plain, nil)
		}
	})
	b.ReportMetric(float64(len(jws)), "envelope-bytes")
}
