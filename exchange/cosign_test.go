package exchange

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/certs"
)

// cosignedFixture is a trust store naming a hub, two provinces and an
// auditor, and a hub checkpoint.
func cosignedFixture(t *testing.T) (*federationCA, *certs.Signer, *certs.TrustStore, []byte) {
	t.Helper()
	f := newFederationCA(t)
	aud, err := f.ca.Issue(certs.IssueRequest{Role: certs.RoleAuditor, Name: "auditor-1", NotBefore: f.start, NotAfter: f.start.Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ts := f.emptyStore(t)
	_, list := f.sealedList(t, f.start)
	if _, err := ApplyTrustList(ts, list); err != nil {
		t.Fatal(err)
	}
	note, err := SignCheckpoint(f.hub, 7, bytes.Repeat([]byte{7}, 32), f.start.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return f, aud, ts, note
}

func TestCosignaturesCountDistinctTrustedWitnesses(t *testing.T) {
	f, aud, ts, note := cosignedFixture(t)
	now := f.start.Add(2 * time.Minute)
	cp, err := ParseCheckpoint(note)
	if err != nil {
		t.Fatal(err)
	}
	ws := WitnessesOf(ts, now)
	// Provinces (3 keys) and the auditor witness; the hub does not.
	if len(ws) != 4 {
		t.Fatalf("witnesses = %d, want 4 (gdOld, gdNew, sc, auditor)", len(ws))
	}
	for _, w := range ws {
		if w.KID == f.hub.KID {
			t.Error("a hub key is listed as a witness")
		}
	}
	var lines []string
	for _, s := range []*certs.Signer{f.sc, aud, f.sc} { // sc twice: counted once
		l, err := Cosign(s, cp.Body, now)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	cosigned, err := AddCosignatures(note, lines...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(cosigned, note) {
		t.Errorf("the hub's note is not kept as it was:\n%s", cosigned)
	}
	got, err := VerifyCheckpoint(ts, cosigned)
	if err != nil {
		t.Fatalf("the hub signature no longer verifies with cosignatures added: %v", err)
	}
	if len(got.Cosigs) != 2 {
		t.Fatalf("cosignature lines = %d, want 2 (a name's second line replaces its first)", len(got.Cosigs))
	}
	valid, bad := got.VerifyCosignatures(ws, now)
	if len(valid) != 2 || len(bad) != 0 {
		t.Fatalf("valid %v, bad %v; want 2 valid", valid, bad)
	}
	if err := got.RequireCosignatures(ws, 2, now); err != nil {
		t.Errorf("2 of 2: %v", err)
	}
	err = got.RequireCosignatures(ws, 3, now)
	if !errors.Is(err, ErrTooFewCosignatures) || !strings.Contains(err.Error(), "2 valid of the 3 required") {
		t.Errorf("3 required: err = %v", err)
	}
	// Adding the same lines again gives the same bytes (hub members agree).
	again, err := AddCosignatures(cosigned, lines[1])
	if err != nil || !bytes.Equal(again, cosigned) {
		t.Errorf("adding a line already there changed the note (err %v)", err)
	}
	// A verifier that trusts only the auditor counts one.
	var onlyAud []Witness
	for _, w := range ws {
		if w.KID == aud.KID {
			onlyAud = append(onlyAud, w)
		}
	}
	if v, _ := got.VerifyCosignatures(onlyAud, now); len(v) != 1 || v[0] != WitnessName(aud.KID) {
		t.Errorf("auditor only: valid = %v", v)
	}
	// Once the province's key is revoked it is no witness from then on.
	revokedAt := now.Add(time.Minute)
	if err := f.ca.Revoke(f.sc.KID, revokedAt, "compromised"); err != nil {
		t.Fatal(err)
	}
	tl, err := BuildTrustList(f.ca, revokedAt, 1)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := SealTrustList(f.ca.Root(), tl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyTrustList(ts, sealed); err != nil {
		t.Fatal(err)
	}
	if v, _ := got.VerifyCosignatures(WitnessesOf(ts, revokedAt), revokedAt); len(v) != 1 || v[0] != WitnessName(aud.KID) {
		t.Errorf("after the province key's revocation: valid = %v, want the auditor only", v)
	}
	if v, _ := got.VerifyCosignatures(WitnessesOf(ts, now), now); len(v) != 2 {
		t.Errorf("before the revocation: valid = %v, want 2", v)
	}
}

func TestCosignaturesThatDoNotVerifyAreNamed(t *testing.T) {
	f, aud, ts, note := cosignedFixture(t)
	now := f.start.Add(2 * time.Minute)
	cp, _ := ParseCheckpoint(note)
	ws := WitnessesOf(ts, now)
	other, _ := SignCheckpoint(f.hub, 8, bytes.Repeat([]byte{8}, 32), f.start)
	ocp, _ := ParseCheckpoint(other)
	wrongBody, _ := Cosign(aud, ocp.Body, now)             // cosigns another checkpoint
	future, _ := Cosign(f.sc, cp.Body, now.Add(time.Hour)) // dated an hour ahead
	// A line by the auditor's name made with a province's key.
	forged, _ := Cosign(f.gdNew, cp.Body, now)
	forged = strings.Replace(forged, WitnessName(f.gdNew.KID), WitnessName(aud.KID), 1)
	for name, line := range map[string]string{"another checkpoint's": wrongBody, "future": future, "forged": forged} {
		t.Run(name, func(t *testing.T) {
			cosigned, err := AddCosignatures(note, line)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseCheckpoint(cosigned)
			if err != nil {
				t.Fatal(err)
			}
			valid, bad := got.VerifyCosignatures(ws, now)
			if len(valid) != 0 || len(bad) != 1 {
				t.Fatalf("valid %v, bad %d; want the line reported bad", valid, len(bad))
			}
			if err := got.RequireCosignatures(ws, 1, now); !errors.Is(err, ErrTooFewCosignatures) || !strings.Contains(err.Error(), "do not verify") {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestMalformedCosignatureLinesAreRefused(t *testing.T) {
	f, aud, _, note := cosignedFixture(t)
	cp, _ := ParseCheckpoint(note)
	good, _ := Cosign(aud, cp.Body, f.start)
	name := WitnessName(aud.KID)
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.Fields(good)[2], "\n"))
	enc := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	bigTime := append([]byte(nil), raw...)
	binary.BigEndian.PutUint64(bigTime[4:12], 1<<63)
	for what, line := range map[string]string{
		"short kid":     "— " + WitnessNamePrefix + "abc " + enc(raw),
		"bad kid chars": "— " + WitnessNamePrefix + strings.Repeat("*", 22) + " " + enc(raw),
		"too short":     "— " + name + " " + enc(raw[:15]),
		"too long":      "— " + name + " " + enc(append(append([]byte(nil), raw...), make([]byte, 80)...)),
		"huge time":     "— " + name + " " + enc(bigTime),
	} {
		bad := string(note) + line + "\n"
		if _, err := ParseCheckpoint([]byte(bad)); !errors.Is(err, ErrMalformedCheckpoint) {
			t.Errorf("%s: err = %v, want ErrMalformedCheckpoint", what, err)
		}
		if _, err := AddCosignatures(note, line); !errors.Is(err, ErrMalformedCheckpoint) {
			t.Errorf("%s: AddCosignatures err = %v", what, err)
		}
	}
	if _, err := AddCosignatures(note, "— "+CheckpointKeyName+" "+enc(raw)); !errors.Is(err, ErrMalformedCheckpoint) {
		t.Errorf("a hub line passed as a cosignature: err = %v", err)
	}
	// The bound on signature lines holds with cosignatures.
	lines := strings.Repeat(good, maxNoteSignatures)
	if _, err := ParseCheckpoint(append(append([]byte(nil), note...), lines...)); !errors.Is(err, ErrMalformedCheckpoint) {
		t.Errorf("%d signature lines: err = %v", maxNoteSignatures+1, err)
	}
}
