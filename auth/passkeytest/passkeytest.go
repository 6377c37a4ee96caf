// Package passkeytest is a software WebAuthn authenticator for tests: it
// answers a relying party's creation options with a "none" attestation and
// its request options with an assertion, as a browser and a platform
// authenticator would together, so that tests in any package can register
// passkeys and log residents in over real HTTP with real signatures.
//
// It is written from the WebAuthn Level 3 specification (§6.1 authenticator
// data, §6.5.4 attestation object, §8.7 none attestation, §5.8.1 client
// data), not from the relying party library it is tested against, so that
// it checks that library rather than agreeing with it.
package passkeytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator flags (WebAuthn §6.1).
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagAT = 0x40 // attested credential data included
)

// Credential is one passkey the authenticator holds. Tests may change
// Counter (to replay an old one) before an assertion.
type Credential struct {
	ID         []byte
	RPID       string
	UserHandle []byte
	Key        *ecdsa.PrivateKey
	Counter    uint32
}

// Authenticator holds passkeys and plays the browser: Origin is the origin
// it puts in the client data (tests change it to pose as another site).
type Authenticator struct {
	Origin string

	mu    sync.Mutex
	creds []*Credential
}

// New returns an authenticator for pages at origin (such as
// "http://localhost:8080").
func New(origin string) *Authenticator { return &Authenticator{Origin: origin} }

// Credentials lists the passkeys held, oldest first.
func (a *Authenticator) Credentials() []*Credential {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*Credential(nil), a.creds...)
}

// b64 is base64url without padding, as WebAuthn's JSON forms use; it
// accepts padded input too, as relying parties may send it.
type b64 []byte

func (b b64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

func (b *b64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(trimPad(s))
	if err != nil {
		return fmt.Errorf("base64url: %w", err)
	}
	*b = raw
	return nil
}

func trimPad(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}

// creationOptions is the part of PublicKeyCredentialCreationOptions used.
type creationOptions struct {
	PublicKey struct {
		Challenge b64 `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID b64 `json:"id"`
		} `json:"user"`
		PubKeyCredParams []struct {
			Type string `json:"type"`
			Alg  int    `json:"alg"`
		} `json:"pubKeyCredParams"`
	} `json:"publicKey"`
}

// requestOptions is the part of PublicKeyCredentialRequestOptions used.
type requestOptions struct {
	PublicKey struct {
		Challenge        b64    `json:"challenge"`
		RPID             string `json:"rpId"`
		AllowCredentials []struct {
			ID b64 `json:"id"`
		} `json:"allowCredentials"`
	} `json:"publicKey"`
}

// Create answers creation options (a JSON object with a "publicKey" member,
// other members ignored) with a new ES256 credential and returns the
// registration response as PublicKeyCredential.toJSON() gives it.
func (a *Authenticator) Create(options []byte) ([]byte, *Credential, error) {
	var opt creationOptions
	if err := json.Unmarshal(options, &opt); err != nil {
		return nil, nil, fmt.Errorf("creation options: %w", err)
	}
	o := opt.PublicKey
	if len(o.Challenge) == 0 || o.RP.ID == "" || len(o.User.ID) == 0 {
		return nil, nil, errors.New("creation options lack a challenge, rp.id or user.id")
	}
	es256 := false
	for _, p := range o.PubKeyCredParams {
		es256 = es256 || (p.Type == "public-key" && p.Alg == -7)
	}
	if !es256 {
		return nil, nil, errors.New("the relying party does not accept ES256 (alg -7)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cred := &Credential{ID: make([]byte, 32), RPID: o.RP.ID, UserHandle: o.User.ID, Key: key}
	if _, err := rand.Read(cred.ID); err != nil {
		return nil, nil, err
	}
	cose, err := coseKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	// Attested credential data: AAGUID (zero for "none"), id length, id, key.
	var acd bytes.Buffer
	acd.Write(make([]byte, 16))
	_ = binary.Write(&acd, binary.BigEndian, uint16(len(cred.ID)))
	acd.Write(cred.ID)
	acd.Write(cose)
	authData := authenticatorData(cred.RPID, flagUP|flagUV|flagAT, 0, acd.Bytes())
	attObj, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	if err != nil {
		return nil, nil, err
	}
	cdj := a.clientData("webauthn.create", o.Challenge)
	resp, err := json.Marshal(map[string]any{
		"id": b64(cred.ID), "rawId": b64(cred.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64(cdj),
			"attestationObject": b64(attObj),
			"transports":        []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
	if err != nil {
		return nil, nil, err
	}
	a.mu.Lock()
	a.creds = append(a.creds, cred)
	a.mu.Unlock()
	return resp, cred, nil
}

// Get answers request options with an assertion by cred, or, if cred is
// nil, by the newest credential for the options' RP ID that the options
// allow (a discoverable login when they name none). The counter goes up by
// one first. It returns the authentication response as
// PublicKeyCredential.toJSON() gives it.
func (a *Authenticator) Get(options []byte, cred *Credential) ([]byte, error) {
	var opt requestOptions
	if err := json.Unmarshal(options, &opt); err != nil {
		return nil, fmt.Errorf("request options: %w", err)
	}
	o := opt.PublicKey
	if len(o.Challenge) == 0 || o.RPID == "" {
		return nil, errors.New("request options lack a challenge or rpId")
	}
	a.mu.Lock()
	if cred == nil {
		for i := len(a.creds) - 1; i >= 0 && cred == nil; i-- {
			c := a.creds[i]
			if c.RPID != o.RPID {
				continue
			}
			allowed := len(o.AllowCredentials) == 0
			for _, ac := range o.AllowCredentials {
				allowed = allowed || bytes.Equal(ac.ID, c.ID)
			}
			if allowed {
				cred = c
			}
		}
	}
	if cred == nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("no credential for RP ID %q", o.RPID)
	}
	cred.Counter++
	counter := cred.Counter
	a.mu.Unlock()
	return a.assert(cred, o.RPID, o.Challenge, counter)
}

// Replay answers request options with an assertion by cred at its current
// counter, without counting up: what a cloned authenticator would send.
func (a *Authenticator) Replay(options []byte, cred *Credential) ([]byte, error) {
	var opt requestOptions
	if err := json.Unmarshal(options, &opt); err != nil {
		return nil, fmt.Errorf("request options: %w", err)
	}
	a.mu.Lock()
	counter := cred.Counter
	a.mu.Unlock()
	return a.assert(cred, opt.PublicKey.RPID, opt.PublicKey.Challenge, counter)
}

func (a *Authenticator) assert(cred *Credential, rpID string, challenge []byte, counter uint32) ([]byte, error) {
	authData := authenticatorData(rpID, flagUP|flagUV, counter, nil)
	cdj := a.clientData("webauthn.get", challenge)
	cdHash := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte(nil), authData...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, cred.Key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64(cred.ID), "rawId": b64(cred.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64(cdj),
			"authenticatorData": b64(authData),
			"signature":         b64(sig),
			"userHandle":        b64(cred.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}

// clientData is the CollectedClientData a browser would serialise.
func (a *Authenticator) clientData(typ string, challenge []byte) []byte {
	b, _ := json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, base64.RawURLEncoding.EncodeToString(challenge), a.Origin, false})
	return b
}

// authenticatorData is rpIdHash || flags || signCount || extra (§6.1).
func authenticatorData(rpID string, flags byte, counter uint32, extra []byte) []byte {
	h := sha256.Sum256([]byte(rpID))
	b := append(h[:], flags)
	b = binary.BigEndian.AppendUint32(b, counter)
	return append(b, extra...)
}

// coseKey encodes an ES256 public key as a COSE_Key (RFC 9053: kty EC2,
// alg ES256, crv P-256, x, y).
func coseKey(pub *ecdsa.PublicKey) ([]byte, error) {
	raw, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, err
	}
	return cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: raw[1:33], -3: raw[33:65]})
}
