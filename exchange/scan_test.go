package exchange

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// sealedBatchPayload is a batch exactly as SealBatch writes it.
func sealedBatchPayload(t testing.TB, n int) []byte {
	t.Helper()
	now := time.Unix(1763780000, 0)
	b := &Batch{Typ: TypBatch, Iss: "440000", Seq: 17, At: now.Unix(), SKV: 1}
	for i := 0; i < n; i++ {
		b.Atts = append(b.Atts, hcx.Attestation{Subject: hcx.Subject(strings.Repeat("a", 25) + string(rune('a'+i%26))), Colour: hcx.Red,
			Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: now.Unix() - 10, Exp: now.Unix() + 3600, PolicyV: "00112233445566778899aabbccddeeff", N: uint64(i + 1)})
	}
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// agree checks that ScanBatch and the reference reader accept data alike and,
// when they accept, read the same values.
func agree(t *testing.T, data []byte) {
	var ref Batch
	refErr := DecodeStrict(data, &ref)
	got, err := ScanBatch(data)
	if (refErr == nil) != (err == nil) {
		t.Fatalf("reference says %v, scanner says %v, for %q", refErr, err, data)
	}
	if err != nil {
		if !certsMalformed(err) || !certsMalformed(refErr) {
			t.Fatalf("refusals must wrap certs.ErrMalformed: %v / %v", err, refErr)
		}
		return
	}
	if got.Typ != ref.Typ || got.Iss != string(ref.Iss) || got.At != ref.At || got.Seq != ref.Seq || len(got.Atts) != len(ref.Atts) {
		t.Fatalf("scanner read %+v, reference %+v, for %q", got, ref, data)
	}
	for i, a := range got.Atts {
		if a.Sub != string(ref.Atts[i].Subject) || a.N != ref.Atts[i].N {
			t.Fatalf("attestation %d: scanner %s/%d, reference %s/%d", i, a.Sub, a.N, ref.Atts[i].Subject, ref.Atts[i].N)
		}
		var back hcx.Attestation
		if err := DecodeStrict(data[a.Off:a.Off+a.Len], &back); err != nil {
			t.Fatalf("attestation %d: its range %d+%d does not read back: %v", i, a.Off, a.Len, err)
		}
		if !reflect.DeepEqual(back, ref.Atts[i]) {
			t.Fatalf("attestation %d: range reads %+v, reference %+v", i, back, ref.Atts[i])
		}
	}
}

func certsMalformed(err error) bool {
	var e *hcx.Error
	return errors.As(err, &e) && e.Class == hcx.EInvalid && errors.Is(err, certs.ErrMalformed)
}

// FuzzScanBatchAgreesWithTheReference is the proof that the hub's fast batch
// reader and the reference reader are one reading: same acceptance, same
// values, and each attestation's range reads back as the reference's.
func FuzzScanBatchAgreesWithTheReference(f *testing.F) {
	f.Add(sealedBatchPayload(f, 1))
	f.Add(sealedBatchPayload(f, 3))
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(agree)
}

// scanSeeds are the second readings the attack runs used, and the edges of
// the grammar; testdata/fuzz holds what fuzzing found on top.
var scanSeeds = []string{
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[],"ISS":"440000"}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[],"iss":"440000"}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[],"iſs":"440000"}`,
	`{"typ":"hcx.batch.v1","i\u0073s":"110000","seq":1,"at":1,"skv":1,"atts":[]}`,
	`{"typ":"hcx.batch.v1","iss":"1\u0031\ud83d\ude00","seq":1,"at":-9223372036854775808,"skv":1,"atts":null}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":18446744073709551616,"at":1,"skv":1,"atts":[]}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1.0,"at":1e0,"skv":1,"atts":[]}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[]} `,
	`{"typ": "hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[]}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":-0,"skv":01,"atts":[]}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[{"sub":"s","col":"red","rsn":null,"eff":1,"exp":2,"pol":"p","n":1,"n":2}]}`,
	`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":1,"skv":1,"atts":[{"sub":"\ud800","col":"red","rsn":["\"\\\/\b\f\n\r\t"],"eff":1,"exp":2,"pol":"p","n":1}]}`,
	"{\"typ\":\"hcx.batch.v1\",\"iss\":\"\xff\",\"seq\":1,\"at\":1,\"skv\":1,\"atts\":[]}",
	`{"typ":"hcx.batch.v1","iss":null,"seq":1,"at":1,"skv":1,"atts":[]}`,
	`{"typ":"hcx.batch.v1","seq":1,"at":1,"skv":1,"atts":[]}`,
	`{}`, `[]`, ``, `null`,
}

func TestScanBatchAgreesWithTheReferenceOnTheSeeds(t *testing.T) {
	agree(t, sealedBatchPayload(t, 30))
	for _, s := range scanSeeds {
		agree(t, []byte(s))
	}
}

func TestReadLeafReadsWhatOpenVerified(t *testing.T) {
	f, ts := trustedFederation(t)
	prov := f.gdOld
	p := sealedBatchPayload(t, 23)
	env, err := prov.SignJWS(HdrBatch, p)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := Open(ts, env)
	if err != nil {
		t.Fatal(err)
	}
	li, err := ReadLeaf([]byte(env))
	if err != nil {
		t.Fatal(err)
	}
	if li.Kid != prov.KID || li.Typ != opened.Typ || li.Iss != opened.Iss || li.At != opened.At || li.Seq != 17 || len(li.Atts) != 23 {
		t.Fatalf("ReadLeaf read %+v", li)
	}
	// A header typ that names another kind than the payload is refused.
	mixed, err := prov.SignJWS(HdrPolicy, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLeaf([]byte(mixed)); !certsMalformed(err) {
		t.Fatalf("batch payload under a policy header: got %v", err)
	}
	if _, err := Open(ts, mixed); !errors.Is(err, certs.ErrMalformed) {
		t.Fatalf("Open of a batch payload under a policy header: got %v", err)
	}
}

// BenchmarkReadBatch compares the hub's fast batch reader with the reference
// reader and plain encoding/json on a batch of 1000 attestations.
func BenchmarkReadBatch(b *testing.B) {
	p := sealedBatchPayload(b, 1000)
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := ScanBatch(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			var x Batch
			if err := DecodeStrict(p, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			var x Batch
			if err := json.Unmarshal(p, &x); err != nil {
				b.Fatal(err)
			}
		}
	})
}
