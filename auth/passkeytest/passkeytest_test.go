package passkeytest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

const options = `{"publicKey":{"challenge":"Y2hhbGxlbmdlLTEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI","rp":{"id":"localhost","name":"hcx"},
 "user":{"id":"dXNlci1oYW5kbGU","name":"hcx resident","displayName":"hcx resident"},
 "pubKeyCredParams":[{"type":"public-key","alg":-7}]}}`

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The registration and the assertion have the layout of WebAuthn §6.1 and
// §6.5.4, and the assertion's signature verifies with the key in the
// attestation, checked here by hand rather than by a relying party library.
func TestCreateAndGetFollowTheSpecification(t *testing.T) {
	a := New("http://localhost:8441")
	raw, cred, err := a.Create([]byte(options))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		ID       string `json:"id"`
		Response struct {
			ClientDataJSON    string `json:"clientDataJSON"`
			AttestationObject string `json:"attestationObject"`
		} `json:"response"`
	}
	if err := json.Unmarshal(raw, &reg); err != nil {
		t.Fatal(err)
	}
	var cd struct{ Type, Challenge, Origin string }
	json.Unmarshal(unb64(t, reg.Response.ClientDataJSON), &cd)
	if cd.Type != "webauthn.create" || cd.Challenge != "Y2hhbGxlbmdlLTEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI" || cd.Origin != "http://localhost:8441" {
		t.Fatalf("client data %+v", cd)
	}
	var att struct {
		Fmt      string         `cbor:"fmt"`
		AttStmt  map[string]any `cbor:"attStmt"`
		AuthData []byte         `cbor:"authData"`
	}
	if err := cbor.Unmarshal(unb64(t, reg.Response.AttestationObject), &att); err != nil {
		t.Fatal(err)
	}
	ad := att.AuthData
	rp := sha256.Sum256([]byte("localhost"))
	if att.Fmt != "none" || len(att.AttStmt) != 0 || string(ad[:32]) != string(rp[:]) || ad[32] != flagUP|flagUV|flagAT {
		t.Fatalf("attestation fmt %q, flags %#x", att.Fmt, ad[32])
	}
	idLen := int(binary.BigEndian.Uint16(ad[53:55]))
	if string(ad[55:55+idLen]) != string(cred.ID) || reg.ID != base64.RawURLEncoding.EncodeToString(cred.ID) {
		t.Fatal("credential id differs between the response and the authenticator data")
	}
	var key map[int]any
	if err := cbor.Unmarshal(ad[55+idLen:], &key); err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(cred.Key.Curve, append(append([]byte{4}, key[-2].([]byte)...), key[-3].([]byte)...))
	if err != nil {
		t.Fatal(err)
	}

	for want := uint32(1); want <= 2; want++ {
		raw, err = a.Get([]byte(`{"publicKey":{"challenge":"AAAA","rpId":"localhost"}}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		var as struct {
			Response struct {
				ClientDataJSON    string `json:"clientDataJSON"`
				AuthenticatorData string `json:"authenticatorData"`
				Signature         string `json:"signature"`
				UserHandle        string `json:"userHandle"`
			} `json:"response"`
		}
		json.Unmarshal(raw, &as)
		authData, cdj := unb64(t, as.Response.AuthenticatorData), unb64(t, as.Response.ClientDataJSON)
		if got := binary.BigEndian.Uint32(authData[33:37]); got != want || authData[32] != flagUP|flagUV {
			t.Fatalf("counter %d flags %#x, want counter %d", got, authData[32], want)
		}
		if string(unb64(t, as.Response.UserHandle)) != "user-handle" {
			t.Fatal("user handle not returned")
		}
		h := sha256.Sum256(cdj)
		digest := sha256.Sum256(append(authData, h[:]...))
		if !ecdsa.VerifyASN1(pub, digest[:], unb64(t, as.Response.Signature)) {
			t.Fatal("the assertion's signature does not verify with the registered key")
		}
	}
	if _, err := a.Get([]byte(`{"publicKey":{"challenge":"AAAA","rpId":"other.example"}}`), nil); err == nil {
		t.Fatal("answered for another RP ID")
	}
}
