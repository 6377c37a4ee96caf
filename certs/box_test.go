package certs

import (
	"bytes"
	"errors"
	"testing"
)

func TestBoxSealOpen(t *testing.T) {
	k, err := GenerateBoxKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateBoxKey()
	pt := bytes.Repeat([]byte("receipt "), 100)
	aad := []byte("510000|440000|1700000000|kid")
	box, err := SealBox(k.Public(), pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(box) != len(pt)+BoxOverhead {
		t.Errorf("box of %d bytes for %d, want overhead %d", len(box), len(pt), BoxOverhead)
	}
	if bytes.Contains(box, []byte("receipt")) {
		t.Error("plaintext in the box")
	}
	got, err := k.Open(box, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %v", err)
	}
	// The private half survives a round trip through Bytes.
	k2, err := ParseBoxKey(k.Bytes())
	if err != nil || k2.KID() != k.KID() || len(k.KID()) != 32 {
		t.Fatalf("parse: %v %s %s", err, k2.KID(), k.KID())
	}
	if got, err := k2.Open(box, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open with the parsed key: %v", err)
	}
	flip := func(i int) []byte { b := bytes.Clone(box); b[i] ^= 1; return b }
	for name, tc := range map[string]struct {
		k   *BoxKey
		box []byte
		aad []byte
	}{
		"wrong key":       {other, box, aad},
		"tampered aad":    {k, box, []byte("510000|440000|1700000001|kid")},
		"tampered body":   {k, flip(len(box) - 20), aad},
		"tampered tag":    {k, flip(len(box) - 1), aad},
		"tampered wrap":   {k, flip(2 + 70), aad},
		"tampered C1":     {k, flip(2 + 10), aad},
		"tampered nonce":  {k, flip(2 + boxWrapLen + 1), aad},
		"tampered length": {k, flip(1), aad},
		"truncated":       {k, box[:BoxOverhead-1], aad},
		"empty":           {k, nil, aad},
	} {
		if _, err := tc.k.Open(tc.box, tc.aad); !errors.Is(err, ErrBoxOpen) {
			t.Errorf("%s: %v, want ErrBoxOpen", name, err)
		}
	}
	if err := CheckBoxPublic(k.Public()); err != nil {
		t.Error(err)
	}
	bad := k.Public()
	bad[64] ^= 1
	if err := CheckBoxPublic(bad); err == nil {
		t.Error("a point off the curve passed")
	}
	if _, err := SealBox(bad, pt, aad); err == nil {
		t.Error("sealed to a point off the curve")
	}
	if err := CheckBoxPublic(k.Public()[:33]); err == nil {
		t.Error("a short key passed")
	}
}
