package exchange

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

func TestLogHasherIsRFC6962OverSM3(t *testing.T) {
	var h LogHasher
	empty := certs.SM3(nil)
	if !bytes.Equal(h.EmptyRoot(), empty[:]) {
		t.Error("empty root is not SM3 of the empty string")
	}
	leaf := certs.SM3([]byte("\x00leaf"))
	if !bytes.Equal(h.HashLeaf([]byte("leaf")), leaf[:]) {
		t.Error("leaf hash is not SM3(0x00 || leaf)")
	}
	l, r := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	node := certs.SM3(append(append([]byte{1}, l...), r...))
	if !bytes.Equal(h.HashChildren(l, r), node[:]) {
		t.Error("node hash is not SM3(0x01 || left || right)")
	}
}

func TestCheckpointVerifiesOnlyWithAHubKeyOfTheTrustList(t *testing.T) {
	f := newFederationCA(t)
	root := bytes.Repeat([]byte{0xab}, 32)
	note, err := SignCheckpoint(f.hub, 42, root, f.start.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ts := f.emptyStore(t)
	if _, err := VerifyCheckpoint(ts, note); !errors.Is(err, ErrCheckpointSignature) {
		t.Fatalf("before the trust list names the hub: err = %v, want ErrCheckpointSignature", err)
	}
	_, list := f.sealedList(t, f.start)
	if _, err := ApplyTrustList(ts, list); err != nil {
		t.Fatal(err)
	}
	cp, err := VerifyCheckpoint(ts, note)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 42 || !bytes.Equal(cp.Root, root) || !cp.Time.Equal(f.start.Add(time.Hour)) {
		t.Errorf("checkpoint = size %d root %x time %v", cp.Size, cp.Root, cp.Time)
	}
	// A province key is in the trust list too, but it is not a hub key.
	byProvince, err := SignCheckpoint(f.sc, 42, root, f.start)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCheckpoint(ts, byProvince); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("checkpoint signed by a province: err = %v, want ErrCheckpointSignature", err)
	}
	// A changed body no longer verifies.
	altered := bytes.Replace(note, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := VerifyCheckpoint(ts, altered); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("altered size: err = %v, want ErrCheckpointSignature", err)
	}
	// Once the hub key is revoked, a checkpoint it signs after that is refused.
	if err := f.ca.Revoke(f.hub.KID, f.start.Add(30*time.Minute), "key compromise"); err != nil {
		t.Fatal(err)
	}
	_, list2 := f.sealedList(t, f.start.Add(40*time.Minute))
	if _, err := ApplyTrustList(ts, list2); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCheckpoint(ts, note); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("checkpoint by a revoked hub key: err = %v, want ErrCheckpointSignature", err)
	}
}

func TestParseCheckpointAcceptsOnlyTheCanonicalForm(t *testing.T) {
	f := newFederationCA(t)
	good, err := SignCheckpoint(f.hub, 7, bytes.Repeat([]byte{1}, 32), f.start)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCheckpoint(good); err != nil {
		t.Fatalf("the hub's own note: %v", err)
	}
	body, sigs, _ := strings.Cut(string(good), "\n\n")
	rootB64 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	withBody := func(b string) []byte { return []byte(b + "\n\n" + sigs) }
	for _, tc := range []struct {
		name string
		note []byte
		want string
	}{
		{"reject/other-origin", []byte(strings.Replace(string(good), CheckpointOrigin, "example.org/log", 1)), "origin"},
		{"reject/leading-zero-size", withBody(strings.Replace(body, "\n7\n", "\n07\n", 1)), "size line"},
		{"reject/signed-size", withBody(strings.Replace(body, "\n7\n", "\n+7\n", 1)), "size line"},
		{"reject/short-root", withBody(strings.Replace(body, rootB64, base64.StdEncoding.EncodeToString([]byte{1, 2}), 1)), "root line"},
		{"reject/unpadded-root", withBody(strings.Replace(body, rootB64, strings.TrimRight(rootB64, "="), 1)), "root line"},
		{"reject/two-time-lines", withBody(body + "\ntime 5"), "more than one time line"},
		{"reject/negative-time", withBody(strings.Replace(body, "time "+strconv.FormatInt(f.start.Unix(), 10), "time -5", 1)), "time line"},
		{"reject/no-blank-line", []byte(body + "\n" + sigs), "no blank line"},
		{"reject/no-signature", withBody(body)[:len(body)+2], "no signature line"},
		{"reject/signature-without-newline", bytes.TrimSuffix(good, []byte("\n")), "does not end with a newline"},
		{"reject/only-a-cosigner", []byte(body + "\n\n— witness.example " + base64.StdEncoding.EncodeToString(make([]byte, 12)) + "\n"), "no signature line"},
		{"reject/too-large", append(bytes.Repeat([]byte("x"), MaxCheckpointBytes), good...), "more than"},
		{"reject/not-utf8", append([]byte{0xff}, good...), "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCheckpoint(tc.note)
			if !errors.Is(err, ErrMalformedCheckpoint) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a malformed-note error mentioning %q", err, tc.want)
			}
		})
	}
	// Another key's cosignature line is signed text we skip, not an error.
	cosigned := append(append([]byte{}, good...), []byte("— witness.example "+base64.StdEncoding.EncodeToString(make([]byte, 12))+"\n")...)
	if _, err := ParseCheckpoint(cosigned); err != nil {
		t.Errorf("note with a cosignature: %v", err)
	}
}

// FuzzParseCheckpoint checks the note parser on any input: it never panics,
// it reads the same bytes the same way twice, what it accepts is canonical
// (the size and root lines are exactly what it returns), and a note it
// accepts verifies under the fuzzer's hub key only if its body is one that
// key signed.
func FuzzParseCheckpoint(f *testing.F) {
	hub, err := certs.NewRoot("fuzz hub key", time.Unix(1763780000, 0), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	signed := map[string]bool{}
	for _, size := range []uint64{0, 1, 1000, 1<<63 + 5} {
		note, err := SignCheckpoint(hub, size, bytes.Repeat([]byte{byte(size)}, 32), time.Unix(1763780000+int64(size%1000), 0))
		if err != nil {
			f.Fatal(err)
		}
		body, _, _ := bytes.Cut(note, []byte("\n\n"))
		signed[string(body)+"\n"] = true
		f.Add(note)
	}
	f.Fuzz(func(t *testing.T, note []byte) {
		cp, err := ParseCheckpoint(note)
		if err != nil {
			if !errors.Is(err, ErrMalformedCheckpoint) {
				t.Fatalf("error %v does not wrap ErrMalformedCheckpoint", err)
			}
			return
		}
		again, err := ParseCheckpoint(note)
		if err != nil || again.Size != cp.Size || !bytes.Equal(again.Root, cp.Root) || !again.Time.Equal(cp.Time) {
			t.Fatalf("the same note read twice differs: %+v, %+v, %v", cp, again, err)
		}
		lines := strings.Split(string(cp.Body), "\n")
		if lines[1] != strconv.FormatUint(cp.Size, 10) || lines[2] != base64.StdEncoding.EncodeToString(cp.Root) {
			t.Fatalf("accepted non-canonical size or root lines %q, %q", lines[1], lines[2])
		}
		if !bytes.HasPrefix(note, cp.Body) || len(cp.Sigs) == 0 {
			t.Fatal("body is not the note's prefix, or no signature kept")
		}
		if cp.Verify(hub.Public()) == nil && !signed[string(cp.Body)] {
			t.Fatalf("a body the key never signed verifies: %q", cp.Body)
		}
	})
}
