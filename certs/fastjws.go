package certs

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// The direct compact-JWS path (issue 12). Codes are verified at the rate of
// SM2 itself, so the JWS layer around the signature must cost next to
// nothing: the three parts are split by hand, the header is read by the same
// strict ParseHeader as before, and SM2 is checked with gmsm directly. It
// accepts exactly what the jwx path (verifyJWSWithKeyJWX) accepted, with the
// same errors; fastjws_test.go holds the two paths to the same verdict on
// valid, tampered and hostile tokens, and FuzzDirectJWS on anything else.

// SignJWS signs payload as a compact JWS with the protected header
// {"alg":"SM2","kid":<the signer's kid>,"typ":typ}, byte for byte the header
// jwx wrote (its members in name order, no whitespace).
func (s *Signer) SignJWS(typ string, payload []byte) (string, error) {
	hdr, err := json.Marshal(Header{Alg: string(AlgSM2), Kid: s.KID, Typ: typ})
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", typ, err)
	}
	enc := base64.RawURLEncoding
	hl, pl := enc.EncodedLen(len(hdr)), enc.EncodedLen(len(payload))
	// One buffer: header.payload, then the signature appended in place.
	buf := make([]byte, hl+1+pl, hl+1+pl+1+enc.EncodedLen(80))
	enc.Encode(buf, hdr)
	buf[hl] = '.'
	enc.Encode(buf[hl+1:], payload)
	sig, err := SignSM2(s.Key, buf)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", typ, err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// VerifyJWSWithKey checks a compact JWS against pub and returns its payload.
// The header is read by ParseHeader. Errors wrap ErrMalformed or
// ErrSignature.
func VerifyJWSWithKey(compact string, pub *ecdsa.PublicKey) ([]byte, error) {
	if _, err := ParseHeader(compact); err != nil {
		return nil, err
	}
	return verifyCompact(compact, pub)
}

// verifyCompact is VerifyJWSWithKey after ParseHeader accepted the header.
func verifyCompact(compact string, pub *ecdsa.PublicKey) ([]byte, error) {
	return verifyCompactWith(compact, func(msg, sig []byte) bool { return VerifySM2(pub, msg, sig) })
}

// verifyEntry is verifyCompact for a trusted certificate: the keys that
// sign codes and envelopes (province and hub certificates, few and fixed)
// are checked with their precomputed tables (sm2fixed.go), others
// generically.
func verifyEntry(compact string, e *Entry) ([]byte, error) {
	if e.Role == RoleProvince || e.Role == RoleHub {
		if k := fixedKeyFor(e.PublicKey()); k != nil {
			return verifyCompactWith(compact, k.verify)
		}
	}
	return verifyCompact(compact, e.PublicKey())
}

// byKey adapts a check by public key to verifyParsed's check by entry.
func byKey(verify func(string, *ecdsa.PublicKey) ([]byte, error)) func(string, *Entry) ([]byte, error) {
	return func(compact string, e *Entry) ([]byte, error) { return verify(compact, e.PublicKey()) }
}

// verifyCompactWith checks the compact JWS's SM2 signature with check.
func verifyCompactWith(compact string, check func(msg, sig []byte) bool) ([]byte, error) {
	d1, d2 := strings.IndexByte(compact, '.'), strings.LastIndexByte(compact, '.')
	// The payload we hand on is the one canonical reading of the signed
	// bytes.
	if d1 < 0 || d2 == d1 || !canonicalB64u(compact[d1+1:d2]) {
		return nil, fmt.Errorf("%w: payload is not canonical base64url", ErrMalformed)
	}
	hseg := compact[:d1]
	hdr, err := jwxB64Decode(hseg)
	if err != nil {
		return nil, fmt.Errorf("%w: failed to parse jws: failed to decode protected headers: %v", ErrMalformed, err)
	}
	// jwx signed over the header as it re-encodes it; for the canonical
	// spelling ParseHeader insists on, that is the segment itself, except
	// for the CR and LF base64 decoders skip.
	if strings.ContainsAny(hseg, "\r\n") || !canonicalB64u(hseg) {
		hseg = base64.RawURLEncoding.EncodeToString(hdr)
	}
	payload, err := b64u.DecodeString(compact[d1+1 : d2])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	sig, err := jwxB64Decode(compact[d2+1:])
	if err != nil {
		return nil, fmt.Errorf("%w: failed to parse jws: failed to decode signature: %v", ErrMalformed, err)
	}
	var msg []byte
	if hseg == compact[:d1] {
		msg = []byte(compact[:d2])
	} else {
		msg = make([]byte, 0, len(hseg)+1+d2-d1-1)
		msg = append(append(append(msg, hseg...), '.'), compact[d1+1:d2]...)
	}
	if !check(msg, sig) {
		return nil, fmt.Errorf("%w: could not verify message using any of the signatures or keys", ErrSignature)
	}
	return payload, nil
}

// jwxB64Decode reads base64 as jwx does for the header and signature parts:
// the alphabet guessed from the text (padding '=' at the end, '+' or '/'
// anywhere), the standard library's lenient decoding (CR and LF skipped,
// non-zero trailing bits allowed). Tolerant, but it must stay so: a
// signature jwx accepted is still accepted. The payload is held to the one
// canonical spelling (canonicalB64u), the header by ParseHeader.
func jwxB64Decode(s string) ([]byte, error) {
	raw := !strings.HasSuffix(s, "=")
	url := !strings.ContainsAny(s, "+/")
	enc := base64.StdEncoding
	switch {
	case raw && url:
		enc = base64.RawURLEncoding
	case url:
		enc = base64.URLEncoding
	case raw:
		enc = base64.RawStdEncoding
	}
	n, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("failed to decode source: %w", err)
	}
	return n, nil
}
