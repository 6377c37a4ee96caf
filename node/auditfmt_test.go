package node

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// feedLabEntry is what a lab feed's result through the API records: a
// certificate's kid as actor, a random request id, no reason.
func feedLabEntry() AuditEntry {
	return AuditEntry{At: time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC), Actor: "cert:3q2-7wAAAAAAAAAAAAAAAA",
		Role: auth.RoleFeed, Province: "440000", Method: auth.MethodRequestToken, Action: ActionLabPost,
		Subject: "abcdefghijklmnopqrstuvwxya", RequestID: "0123456789abcdef01234567"}
}

func TestAStoredFeedEntryIsSmallAndDecodesToTheSameJSON(t *testing.T) {
	e := feedLabEntry()
	b, err := encodeAuditEntry(&e, 2, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(&e)
	t.Logf("stored %d bytes (canonical JSON without seq and prev: %d)", len(b), len(j))
	if len(b) < 40 || len(b) > 70 {
		t.Errorf("a feed's lab.post entry takes %d bytes, want 40 to 70", len(b))
	}
	if b[1]&(auditFlagCertActor|auditFlagRawSubject|auditFlagHexReqID) != auditFlagCertActor|auditFlagRawSubject|auditFlagHexReqID {
		t.Errorf("flags %#x: actor, subject and request id should be stored raw", b[1])
	}
	got, err := decodeAuditEntry(2, b)
	if err != nil {
		t.Fatal(err)
	}
	e.Seq = 2
	if g, _ := json.Marshal(&got); string(g) != func() string { w, _ := json.Marshal(&e); return string(w) }() {
		t.Errorf("decoded %s, want %s", g, j)
	}
}

func TestAuditEntryDecoderRefusesCorruptRecordsNamingTheSeq(t *testing.T) {
	e := feedLabEntry()
	good, err := encodeAuditEntry(&e, 7, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":              {},
		"version 2":          append([]byte{2}, good[1:]...),
		"unknown flag":       append([]byte{good[0], good[1] | 0x80}, good[2:]...),
		"prev on non-anchor": append([]byte{good[0], good[1] | auditFlagPrev}, good[2:]...),
		"truncated":          good[:len(good)-1],
		"trailing byte":      append(append([]byte{}, good...), 0),
		"unknown role":       append(append(append([]byte{}, good[:10]...), 0x40), good[11:]...),
		"huge length":        append(append([]byte{}, good[:13]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"non-minimal len":    append(append(append([]byte{}, good[:13]...), 0x9b, 0x00), good[14:]...),
	}
	// An action in the table must be stored by its code.
	esc := append(append([]byte{}, good[:12]...), append([]byte{auditEscape, 8}, "lab.post"...)...)
	cases["escaped known"] = append(esc, good[13:]...)
	for name, b := range cases {
		_, err := decodeAuditEntry(7, b)
		if err == nil {
			t.Errorf("%s: decoded", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "audit entry 7: ") {
			t.Errorf("%s: error %q does not name the entry", name, err)
		}
	}
}

func TestUnknownCodesAndInexactTextsRoundTrip(t *testing.T) {
	for _, e := range []AuditEntry{
		{Role: "robot", Method: "carrier-pigeon", Action: "lab.retract", Actor: "oidc:https://idp.test#op-1"},
		{Actor: "cert:not base64!", Subject: "ABCDEFGHIJKLMNOPQRSTUVWXYZ", RequestID: "0123ABCD"},
		{Actor: "cert:", Subject: "abcdefghijklmnopqrstuvwxyz", RequestID: "abc", Why: "日本\x00\xff", Note: "policy a -> b"},
	} {
		e.At = time.Unix(0, 1).UTC()
		b, err := encodeAuditEntry(&e, auditAnchorEvery+1, [32]byte{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeAuditEntry(auditAnchorEvery+1, b)
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.Prev != "0102030000000000000000000000000000000000000000000000000000000000" {
			t.Errorf("anchor prev %q", got.Prev)
		}
		got.Prev, got.Seq = "", 0
		if !reflect.DeepEqual(got, e) {
			t.Errorf("decoded %+v, want %+v", got, e)
		}
	}
}

// FuzzAuditEntryRoundTrip: whatever an entry holds, decoding its stored form
// gives it back, and so the same canonical JSON.
func FuzzAuditEntryRoundTrip(f *testing.F) {
	e := feedLabEntry()
	f.Add(uint64(2), e.At.UnixNano(), e.Actor, string(e.Role), string(e.Province), string(e.Method), e.Action, string(e.Subject), "", "", e.RequestID)
	f.Add(uint64(1), int64(-5), "system:reload", "", "", "", ActionRulesReload, "", "why", "policy x -> y", "")
	f.Fuzz(func(t *testing.T, seq uint64, at int64, actor, role, prov, method, action, sub, why, note, req string) {
		e := AuditEntry{At: time.Unix(0, at).UTC(), Actor: actor, Role: auth.Role(role), Province: hcx.ProvinceCode(prov),
			Method: auth.Method(method), Action: action, Subject: hcx.Subject(sub), Why: why, Note: note, RequestID: req}
		b, err := encodeAuditEntry(&e, seq, [32]byte{9})
		if err != nil {
			for _, s := range []string{actor, role, prov, method, action, sub, why, note, req} {
				if len(s) > auditMaxString {
					return
				}
			}
			t.Fatal(err)
		}
		got, err := decodeAuditEntry(seq, b)
		if err != nil {
			t.Fatalf("decode of encode: %v", err)
		}
		got.Prev, e.Prev, e.Seq = "", "", seq
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("decoded %+v, want %+v", got, e)
		}
	})
}

// FuzzAuditEntryDecode: any bytes either fail to decode with an error or
// are the one canonical stored form of what they decode to; never a panic.
func FuzzAuditEntryDecode(f *testing.F) {
	e := feedLabEntry()
	for _, seq := range []uint64{1, 2} {
		b, _ := encodeAuditEntry(&e, seq, [32]byte{})
		f.Add(seq, b)
	}
	f.Add(uint64(3), []byte{1, 0})
	f.Fuzz(func(t *testing.T, seq uint64, b []byte) {
		got, err := decodeAuditEntry(seq, b)
		if err != nil {
			return
		}
		var prev [32]byte
		if got.Prev != "" {
			copy(prev[:], mustHex(t, got.Prev))
		}
		again, err := encodeAuditEntry(&got, seq, prev)
		if err != nil || string(again) != string(b) {
			t.Fatalf("decoded %x to %+v, which encodes to %x (%v)", b, got, again, err)
		}
	})
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hexText.decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
