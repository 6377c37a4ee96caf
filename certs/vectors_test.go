package certs

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm4"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Published vectors: GB/T 32905-2016 Appendix A (SM3), GB/T 32907-2016
// Appendix A (SM4), GM/T 0042-2015 Appendix D.3 and Bouncy Castle's HMacTest
// (HMAC-SM3).
func TestPublishedVectors(t *testing.T) {
	t.Run("sm3/abc", func(t *testing.T) {
		got := SM3([]byte("abc"))
		if want := "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"; hex.EncodeToString(got[:]) != want {
			t.Errorf("SM3(abc) = %x, want %s", got, want)
		}
	})
	t.Run("sm3/abcd-times-16", func(t *testing.T) {
		h := NewSM3() // through the streaming interface, in two writes
		h.Write([]byte(strings.Repeat("abcd", 7)))
		h.Write([]byte(strings.Repeat("abcd", 9)))
		if got, want := hex.EncodeToString(h.Sum(nil)), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"; got != want {
			t.Errorf("SM3(abcd*16) = %s, want %s", got, want)
		}
	})
	t.Run("sm4/gbt32907-example-1", func(t *testing.T) {
		key := unhex(t, "0123456789abcdeffedcba9876543210")
		c, err := sm4.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 16)
		c.Encrypt(out, key) // the plaintext is the key
		if want := unhex(t, "681edf34d206965e86b3e94f536e4246"); !bytes.Equal(out, want) {
			t.Errorf("SM4 = %x, want %x", out, want)
		}
		c.Decrypt(out, out)
		if !bytes.Equal(out, key) {
			t.Errorf("SM4 decrypt = %x, want %x", out, key)
		}
	})
	t.Run("sm4/gbt32907-example-2-million-rounds", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a million block encryptions")
		}
		key := unhex(t, "0123456789abcdeffedcba9876543210")
		c, err := sm4.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		b := append([]byte(nil), key...)
		for i := 0; i < 1000000; i++ {
			c.Encrypt(b, b)
		}
		if want := unhex(t, "595298c7c6fd271f0402f804c33d3f66"); !bytes.Equal(b, want) {
			t.Errorf("SM4^1e6 = %x, want %x", b, want)
		}
	})
	for _, v := range []struct{ name, key, msg, want string }{
		{"hmac-sm3/gmt0042-d3-count-1", "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
			hex.EncodeToString([]byte(strings.Repeat("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 2))),
			"ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a"},
		{"hmac-sm3/bouncycastle-hi-there", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", hex.EncodeToString([]byte("Hi There")),
			"51b00d1fb49832bfb01c3ce27848e59f871d9ba938dc563b338ca964755cce70"},
	} {
		t.Run(v.name, func(t *testing.T) {
			if got := hex.EncodeToString(HMACSM3(unhex(t, v.key), unhex(t, v.msg))); got != v.want {
				t.Errorf("HMAC-SM3 = %s, want %s", got, v.want)
			}
		})
	}
}

// TestSubjectIsTheProtocolFormula recomputes a pseudonym from PROTOCOL.md §1
// with HMACSM3 and checks SubjectKey.Subject agrees, and that the key
// version matters.
func TestSubjectIsTheProtocolFormula(t *testing.T) {
	k1 := SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)}
	k2 := SubjectKey{Version: 2, Key: bytes.Repeat([]byte{8}, 32)}
	mac := HMACSM3(k1.Key, []byte("hcx-subject-v1\x00CN-ID\x0011010519491231002X"))
	want := strings.ToLower(subjectB32.EncodeToString(mac[:16]))
	got := k1.Subject("CN-ID", "11010519491231002X")
	if string(got) != want || len(got) != 26 {
		t.Errorf("subject = %s, want %s", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
	if k2.Subject("CN-ID", "11010519491231002X") == got {
		t.Error("a new key version gave the same pseudonym")
	}
}

func TestFieldCipherCarriesItsKeyVersion(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)
	old, err := NewFieldCipher(1, map[int][]byte{1: k1})
	if err != nil {
		t.Fatal(err)
	}
	sealed := old.Seal([]byte("张三"), []byte("resident/42"))
	if sealed[0] != 1 {
		t.Errorf("version byte %d, want 1", sealed[0])
	}
	rotated, err := NewFieldCipher(2, map[int][]byte{1: k1, 2: k2})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := rotated.Open(sealed, []byte("resident/42")); err != nil || string(pt) != "张三" {
		t.Errorf("open an old value after rotation: %q, %v", pt, err)
	}
	fresh := rotated.Seal([]byte("李四"), nil)
	if fresh[0] != 2 {
		t.Errorf("new values use version %d, want 2", fresh[0])
	}
	for name, tc := range map[string]struct {
		sealed, aad []byte
	}{
		"reject/other-record":    {sealed, []byte("resident/43")},
		"reject/flipped-bit":     {append(append([]byte(nil), sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), []byte("resident/42")},
		"reject/unknown-version": {append([]byte{9}, sealed[1:]...), []byte("resident/42")},
		"reject/truncated":       {sealed[:10], []byte("resident/42")},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := rotated.Open(tc.sealed, tc.aad); err == nil {
				t.Error("opened")
			}
		})
	}
	if _, err := old.Open(fresh, nil); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("old cipher opening a version-2 value: err = %v, want no key for version 2", err)
	}
}
