package exchange

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"

	"github.com/hcxfed/hcx/certs"
)

// The hub's FSM reads every batch on every member, so it does not run the
// reflective reference reader (DecodeStrict) over 150 KB payloads. ScanBatch
// is a hand-written reader of exactly the same language, the Batch schema
// under hcx.UnmarshalStrict's rules, that walks the payload once and picks out
// what the FSM needs. FuzzScanBatchAgreesWithTheReference proves that it
// accepts exactly the inputs the reference accepts, with the same values.

// AttRef is one attestation of a scanned batch: its subject, its n and its
// exact bytes in the decoded payload (the hub stores the range and serves the
// bytes for subject lookups).
type AttRef struct {
	Sub      string
	N        uint64
	Off, Len uint32
}

// BatchInfo is what ScanBatch reads from a batch payload.
type BatchInfo struct {
	Typ  string
	Iss  string
	At   int64
	Seq  uint64
	Atts []AttRef
}

// LeafInfo is what the hub's FSM reads from a log leaf without verifying its
// signature again (the hub verified it before proposing): the signer's kid,
// the envelope's typ, iss and at, for a batch its seq and attestations, and
// for a trail head the head.
type LeafInfo struct {
	Kid string
	BatchInfo
	Head *AuditHead // a trail head's payload, nil for other kinds
}

var b64u = base64.RawURLEncoding.Strict()

// ReadLeaf reads a log leaf strictly, as Open would but without the
// signature: the header with certs' strict header reader, the payload with
// ScanBatch for a batch and with the reference reader for every other kind.
// It checks shape, not content. Errors wrap certs.ErrMalformed.
func ReadLeaf(raw []byte) (LeafInfo, error) {
	var li LeafInfo
	d1 := bytes.IndexByte(raw, '.')
	d2 := bytes.LastIndexByte(raw, '.')
	if d1 <= 0 || d2 == d1 || bytes.IndexByte(raw[d1+1:d2], '.') >= 0 {
		return li, fmt.Errorf("%w: want three base64url parts separated by dots", certs.ErrMalformed)
	}
	h, err := certs.ParseHeader(string(raw[:d1]) + "..") // the header alone, not a copy of the whole leaf
	if err != nil {
		return li, err
	}
	pb := make([]byte, b64u.DecodedLen(d2-d1-1))
	n, err := b64u.Decode(pb, raw[d1+1:d2])
	if err != nil {
		return li, fmt.Errorf("%w: payload is not canonical base64url: %v", certs.ErrMalformed, err)
	}
	pb = pb[:n]
	li.Kid = h.Kid
	if h.Typ == HdrBatch {
		if li.BatchInfo, err = ScanBatch(pb); err != nil {
			return li, err
		}
		if li.Typ != TypBatch {
			return li, malformed("typ", "payload typ %q does not match header typ %q (want %q)", li.Typ, h.Typ, TypBatch)
		}
		return li, nil
	}
	body, c, err := decodeBody(h.Typ, pb)
	if err != nil {
		return li, err
	}
	li.Typ, li.Iss, li.At = c.Typ, c.Iss, c.At
	li.Head, _ = body.(*AuditHead)
	return li, nil
}

type scanner struct {
	b []byte
	i int
}

// place names where in a batch the scanner is, without building strings on
// the path that succeeds: a top-level member, the element of its array, the
// member inside that element, the element of that member's array.
type place struct {
	m1 string
	i1 int
	m2 string
	i2 int
}

var top = place{i1: -1, i2: -1}

func (p place) member(m string) place {
	if p.m1 == "" {
		p.m1 = m
	} else {
		p.m2 = m
	}
	return p
}

func (p place) elem(n int) place {
	if p.m2 == "" {
		p.i1 = n
	} else {
		p.i2 = n
	}
	return p
}

func (p place) String() string {
	f := p.m1
	if p.i1 >= 0 {
		f += "[" + strconv.Itoa(p.i1) + "]"
	}
	if p.m2 != "" {
		f += "." + p.m2
	}
	if p.i2 >= 0 {
		f += "[" + strconv.Itoa(p.i2) + "]"
	}
	return f
}

func (s *scanner) fail(at place, format string, args ...any) error {
	return malformed(at.String(), "signed JSON at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string, returning its value when keep is set. Plain ASCII
// strings are sliced out directly; anything with an escape, a control
// character or a non-ASCII byte is handed to the reference reader, so both
// readers agree on every string by construction.
func (s *scanner) str(at place, keep bool) (string, error) {
	if s.peek() != '"' {
		return "", s.fail(at, "want a string")
	}
	start := s.i
	s.i++
	plain := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if plain {
				if !keep {
					return "", nil
				}
				return string(s.b[start+1 : s.i-1]), nil
			}
			var out string
			if err := DecodeStrict(s.b[start:s.i], &out); err != nil {
				return "", s.fail(at, "bad string: %v", err)
			}
			return out, nil
		case c == '\\':
			plain = false
			s.i += 2
		case c < 0x20 || c >= 0x80:
			plain = false
			s.i++
		default:
			s.i++
		}
	}
	return "", s.fail(at, "unterminated string")
}

// name reads a member name and the colon after it and returns the name's
// index in names. Names are plain: escaped or non-ASCII names never match.
func (s *scanner) name(at place, names []string) (int, error) {
	start := s.i
	if s.peek() != '"' {
		return 0, s.fail(at, "want a member name")
	}
	s.i++
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			n := s.b[start+1 : s.i]
			s.i++
			for k, m := range names {
				if string(n) == m {
					if s.peek() != ':' {
						return 0, s.fail(at.member(m), "want ':' after the member name")
					}
					s.i++
					return k, nil
				}
			}
			s.i = start
			return 0, s.fail(at.member(string(n)), "unknown member %q (names are case-sensitive)", n)
		case c == '\\' || c < 0x20 || c >= 0x80:
			s.i = start
			return 0, s.fail(at, "member name is not a plain known name")
		}
		s.i++
	}
	return 0, s.fail(at, "unterminated member name")
}

// digits reads an unsigned integer's digits with the reference's grammar.
func (s *scanner) digits(at place, neg bool, start int) (uint64, error) {
	d := s.i
	var v uint64
	over := false
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		x := uint64(s.b[s.i] - '0')
		if v > (math.MaxUint64-x)/10 {
			over = true
		}
		v = v*10 + x
		s.i++
	}
	switch {
	case s.i == d:
		s.i = start
		return 0, s.fail(at, "want an integer")
	case s.b[d] == '0' && s.i-d > 1:
		return 0, s.fail(at, "integer with a leading zero")
	case s.b[d] == '0' && neg:
		return 0, s.fail(at, "-0 is not an integer here")
	}
	switch s.peek() {
	case '.', 'e', 'E':
		return 0, s.fail(at, "want an integer, not a fraction or exponent")
	}
	if over {
		return 0, s.fail(at, "integer is out of range")
	}
	return v, nil
}

func (s *scanner) uint64(at place) (uint64, error) {
	if s.peek() == '-' {
		return 0, s.fail(at, "want an unsigned integer")
	}
	return s.digits(at, false, s.i)
}

func (s *scanner) int64(at place, bits int) (int64, error) {
	start := s.i
	neg := s.peek() == '-'
	if neg {
		s.i++
	}
	v, err := s.digits(at, neg, start)
	if err != nil {
		return 0, err
	}
	lim := uint64(1) << (bits - 1) // |min|; max is lim-1
	if neg {
		if v > lim {
			return 0, s.fail(at, "integer is out of range")
		}
		return int64(-v), nil //nolint:gosec // v <= 2^63
	}
	if v >= lim {
		return 0, s.fail(at, "integer is out of range")
	}
	return int64(v), nil
}

// null reads "null" if it is there.
func (s *scanner) null() bool {
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// object reads an object whose members are names (each at most once, all
// required), calling member for each with its index in names.
func (s *scanner) object(at place, names []string, member func(k int, at place) error) error {
	if s.peek() != '{' {
		return s.fail(at, "want an object")
	}
	s.i++
	var seen uint32
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			start := s.i
			k, err := s.name(at, names)
			if err != nil {
				return err
			}
			if seen&(1<<k) != 0 {
				s.i = start
				return s.fail(at.member(names[k]), "member %q appears twice", names[k])
			}
			seen |= 1 << k
			if err := member(k, at.member(names[k])); err != nil {
				return err
			}
			if s.peek() == ',' {
				s.i++
				continue
			}
			if s.peek() == '}' {
				s.i++
				break
			}
			return s.fail(at, "want ',' or '}' in the object")
		}
	}
	for k, m := range names {
		if seen&(1<<k) == 0 {
			return s.fail(at.member(m), "member %q is missing", m)
		}
	}
	return nil
}

// array reads an array (or null) calling elem for each element.
func (s *scanner) array(at place, elem func(at place) error) error {
	if s.null() {
		return nil
	}
	if s.peek() != '[' {
		return s.fail(at, "want an array")
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		if err := elem(at.elem(n)); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.fail(at, "want ',' or ']' in the array")
		}
	}
}

// The members of Batch and hcx.Attestation, by json tag; the differential
// fuzz test fails if either type changes without this.
var (
	batchMembers = []string{"typ", "iss", "seq", "at", "skv", "atts"}
	attMembers   = []string{"sub", "col", "rsn", "eff", "exp", "pol", "n"}
)

// ScanBatch reads a batch payload exactly as DecodeStrict reads it into a
// Batch, returning what the hub's FSM needs. It checks shape, not content
// (Batch.Validate does that).
func ScanBatch(b []byte) (BatchInfo, error) {
	var p BatchInfo
	s := &scanner{b: b}
	err := s.object(top, batchMembers, func(k int, at place) error {
		var err error
		switch k {
		case 0:
			p.Typ, err = s.str(at, true)
		case 1:
			p.Iss, err = s.str(at, true)
		case 2:
			p.Seq, err = s.uint64(at)
		case 3:
			p.At, err = s.int64(at, 64)
		case 4:
			_, err = s.int64(at, strconv.IntSize)
		case 5:
			p.Atts = p.Atts[:0]
			err = s.array(at, func(at place) error {
				start := s.i
				var a AttRef
				if err := s.object(at, attMembers, func(k int, at place) error {
					var err error
					switch k {
					case 0:
						a.Sub, err = s.str(at, true)
					case 1, 5:
						_, err = s.str(at, false)
					case 2:
						err = s.array(at, func(at place) error {
							_, err := s.str(at, false)
							return err
						})
					case 3, 4:
						_, err = s.int64(at, 64)
					case 6:
						a.N, err = s.uint64(at)
					}
					return err
				}); err != nil {
					return err
				}
				a.Off, a.Len = uint32(start), uint32(s.i-start) //nolint:gosec // payloads are at most MaxEnvelopeBytes
				p.Atts = append(p.Atts, a)
				return nil
			})
		}
		return err
	})
	if err != nil {
		return BatchInfo{}, err
	}
	if s.i != len(b) {
		return BatchInfo{}, s.fail(top, "unexpected byte %q after the top-level value; signed JSON ends with its value", b[s.i])
	}
	return p, nil
}
