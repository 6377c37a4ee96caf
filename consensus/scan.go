package consensus

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/hcxfed/hcx/certs"
)

// The FSM reads every batch on every member, so it does not run
// encoding/json's reflection over 150 KB payloads (that was a third of the
// cluster's CPU). scanPayload walks the payload once and picks out what the
// FSM needs: the envelope's typ, iss and at, a batch's seq, and for each
// attestation its subject, its n and its exact bytes (stored as they are
// for subject lookups). The leader has already decoded and validated the
// batch with encoding/json before proposing it.

type attRef struct {
	sub      string
	n        uint64
	off, len uint32 // the attestation's bytes in the decoded payload
}

type payloadInfo struct {
	typ, iss string
	at       int64
	seq      uint64
	atts     []attRef
}

type jscan struct {
	b []byte
	i int
}

func (s *jscan) errf(format string, args ...any) error {
	return fmt.Errorf("%w: payload at byte %d: %s", certs.ErrMalformed, s.i, fmt.Sprintf(format, args...))
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jscan) expect(c byte) error {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != c {
		return s.errf("want %q", c)
	}
	s.i++
	return nil
}

// str reads a JSON string.
func (s *jscan) str() (string, error) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", s.errf("want a string")
	}
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '\\':
			escaped = true
			s.i += 2
			continue
		case c == '"':
			s.i++
			if !escaped {
				return string(s.b[start+1 : s.i-1]), nil
			}
			var out string
			if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
				return "", s.errf("bad string: %v", err)
			}
			return out, nil
		case c < 0x20:
			return "", s.errf("control character in string")
		}
		s.i++
	}
	return "", s.errf("unterminated string")
}

// number reads a JSON number's text.
func (s *jscan) number() ([]byte, error) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	if s.i == start {
		return nil, s.errf("want a number")
	}
	return s.b[start:s.i], nil
}

func (s *jscan) uint() (uint64, error) {
	t, err := s.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(t), 10, 64)
	if err != nil {
		return 0, s.errf("want an unsigned integer, got %s", t)
	}
	return n, nil
}

// skip skips one value of any kind.
func (s *jscan) skip() error {
	s.ws()
	if s.i >= len(s.b) {
		return s.errf("want a value")
	}
	switch c := s.b[s.i]; c {
	case '"':
		_, err := s.str()
		return err
	case '{', '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == close {
			s.i++
			return nil
		}
		for {
			if c == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				if err := s.expect(':'); err != nil {
					return err
				}
			}
			if err := s.skip(); err != nil {
				return err
			}
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == ',' {
				s.i++
				continue
			}
			return s.expect(close)
		}
	case 't', 'f', 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return nil
			}
		}
		return s.errf("bad literal")
	}
	_, err := s.number()
	return err
}

// object calls field for each key of an object, positioned at its value;
// field must consume the value.
func (s *jscan) object(field func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		k, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(k); err != nil {
			return err
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
			continue
		}
		return s.expect('}')
	}
}

func scanPayload(b []byte) (payloadInfo, error) {
	var p payloadInfo
	s := &jscan{b: b}
	err := s.object(func(k string) error {
		var err error
		switch k {
		case "typ":
			p.typ, err = s.str()
		case "iss":
			p.iss, err = s.str()
		case "at":
			var t []byte
			if t, err = s.number(); err == nil {
				if p.at, err = strconv.ParseInt(string(t), 10, 64); err != nil {
					err = s.errf("at is not an integer")
				}
			}
		case "seq":
			p.seq, err = s.uint()
		case "atts":
			p.atts = p.atts[:0]
			if err = s.expect('['); err != nil {
				return err
			}
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == ']' {
				s.i++
				return nil
			}
			for {
				s.ws()
				start := s.i
				var a attRef
				if err := s.object(func(k string) error {
					var err error
					switch k {
					case "sub":
						a.sub, err = s.str()
					case "n":
						a.n, err = s.uint()
					default:
						err = s.skip()
					}
					return err
				}); err != nil {
					return err
				}
				a.off, a.len = uint32(start), uint32(s.i-start)
				p.atts = append(p.atts, a)
				s.ws()
				if s.i < len(s.b) && s.b[s.i] == ',' {
					s.i++
					continue
				}
				return s.expect(']')
			}
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return p, err
	}
	s.ws()
	if s.i != len(b) {
		return p, s.errf("trailing bytes after the payload")
	}
	return p, nil
}
