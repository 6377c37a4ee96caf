package exchange

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// A record encodes to exactly BundleRecordSize bytes and back; times that
// do not fit u32 seconds and unknown colours are refused naming the field,
// never wrapped.
func TestBundleRecordRoundTripAndRefusals(t *testing.T) {
	r := BundleRecord{Key: BundleKey("subject-1"), Issuer: 3, Colour: hcx.Yellow, Reasons: 513, Eff: 1 << 31, Exp: 1<<32 - 1}
	b, err := AppendBundleRecord(nil, r)
	if err != nil || len(b) != BundleRecordSize {
		t.Fatalf("encode: %d bytes, %v", len(b), err)
	}
	got, err := DecodeBundleRecord(b)
	if err != nil || got != r {
		t.Fatalf("decode: %+v, %v, want %+v", got, err, r)
	}
	for _, c := range []struct {
		field string
		r     BundleRecord
	}{
		{"eff/exp", BundleRecord{Colour: hcx.Red, Eff: 1, Exp: 1 << 32}},
		{"eff/exp", BundleRecord{Colour: hcx.Red, Eff: -1, Exp: 5}},
		{"colour", BundleRecord{Colour: "blue", Eff: 1, Exp: 5}},
	} {
		out, err := AppendBundleRecord([]byte("x"), c.r)
		if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), c.field) || !bytes.Equal(out, []byte("x")) {
			t.Errorf("%+v: %q, %v; want a refusal naming %s that appends nothing", c.r, out, err, c.field)
		}
	}
	b[18] = 3
	if _, err := DecodeBundleRecord(b); !errors.Is(err, ErrBadBundle) {
		t.Errorf("colour byte 3: err = %v, want a bad bundle", err)
	}
	if _, err := DecodeBundleRecord(b[:BundleRecordSize-1]); !errors.Is(err, ErrBadBundle) {
		t.Errorf("short record: err = %v, want a bad bundle", err)
	}
}

// Only attestations that can change an answer, in force after the
// checkpoint, go into a bundle.
func TestBundleCountsOnlyAttestationsThatCanChangeAnAnswer(t *testing.T) {
	cp := int64(1_800_000_000)
	for _, c := range []struct {
		a    hcx.Attestation
		want bool
	}{
		{hcx.Attestation{Colour: hcx.Green, Exp: cp + 1}, false},
		{hcx.Attestation{Colour: hcx.Green, Reasons: []hcx.Reason{hcx.ReasonClear}, Exp: cp + 1}, true},
		{hcx.Attestation{Colour: hcx.Red, Exp: cp + 1}, true},
		{hcx.Attestation{Colour: hcx.Red, Exp: cp}, false},
	} {
		if got := BundleCounts(&c.a, time.Unix(cp, 0)); got != c.want {
			t.Errorf("%+v: %v, want %v", c.a, got, c.want)
		}
	}
}
