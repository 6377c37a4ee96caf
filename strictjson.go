package hcx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// UnmarshalStrict is the reference reader of signed JSON (PROTOCOL.md,
// conventions): it checks data against the schema of v's Go type and only then
// fills v with encoding/json, so that every reader that accepts the bytes
// reads the same values. It refuses
//   - a member name that is not exactly a json tag of the struct (names are
//     case-sensitive and written without escapes), a name given twice, and a
//     missing member unless its tag says omitempty;
//   - a value of the wrong JSON type, null except for pointers and slices
//     (Go's nil), integers with a sign they may not have, a fraction, an
//     exponent, leading zeros or out of range;
//   - strings that are not valid UTF-8, hold control characters or lone
//     surrogate escapes;
//   - insignificant whitespace anywhere, and any byte after the value.
//
// v must point to a struct, slice, string, bool or integer type (or nests of
// them). Errors are *Error of class EInvalid naming the offending field, such
// as "atts[3].n".
func UnmarshalStrict(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("UnmarshalStrict needs a non-nil pointer, got %T", v)
	}
	s := strictReader{b: data}
	if err := s.value(rv.Type().Elem(), ""); err != nil {
		return err
	}
	if s.i != len(s.b) {
		return s.fail("", "unexpected byte %q after the top-level value; signed JSON ends with its value", s.b[s.i])
	}
	if err := json.Unmarshal(data, v); err != nil {
		// Unreachable for the types the schema check allows; kept so a
		// mistake here cannot pass silently.
		return Invalidf("", "JSON does not fit %T: %v", v, err)
	}
	return nil
}

type strictReader struct {
	b []byte
	i int
}

func (s *strictReader) fail(field, format string, args ...any) error {
	return Invalidf(field, "signed JSON at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

// structField is one member of a struct's schema.
type structField struct {
	name     string
	typ      reflect.Type
	optional bool
}

var schemaCache sync.Map // reflect.Type -> []structField

func structSchema(t reflect.Type) []structField {
	if v, ok := schemaCache.Load(t); ok {
		return v.([]structField)
	}
	var fs []structField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		fs = append(fs, structField{name: name, typ: f.Type, optional: strings.Contains(","+opts+",", ",omitempty,")})
	}
	schemaCache.Store(t, fs)
	return fs
}

func memberNames(fs []structField) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

func join(field, member string) string {
	if field == "" {
		return member
	}
	return field + "." + member
}

func (s *strictReader) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *strictReader) literal(lit string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

func (s *strictReader) value(t reflect.Type, field string) error {
	if s.i >= len(s.b) {
		return s.fail(field, "the value is missing (end of input)")
	}
	if s.peek() == 'n' {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice:
			if s.literal("null") {
				return nil
			}
		}
		return s.fail(field, "null is not allowed here; want %s", jsonKind(t))
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.value(t.Elem(), field)
	case reflect.Struct:
		return s.object(t, field)
	case reflect.Slice:
		if s.peek() != '[' {
			return s.fail(field, "want an array")
		}
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for n := 0; ; n++ {
			if err := s.value(t.Elem(), fmt.Sprintf("%s[%d]", field, n)); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return s.fail(field, "want ',' or ']' in the array")
			}
		}
	case reflect.String:
		_, _, err := s.str(field)
		return err
	case reflect.Bool:
		if s.literal("true") || s.literal("false") {
			return nil
		}
		return s.fail(field, "want true or false")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		tok, err := s.integer(field, true)
		if err != nil {
			return err
		}
		if _, err := strconv.ParseInt(tok, 10, t.Bits()); err != nil {
			return s.fail(field, "integer %s is out of range", tok)
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		tok, err := s.integer(field, false)
		if err != nil {
			return err
		}
		if _, err := strconv.ParseUint(tok, 10, t.Bits()); err != nil {
			return s.fail(field, "integer %s is out of range", tok)
		}
		return nil
	}
	return fmt.Errorf("UnmarshalStrict: Go type %s is not supported in signed JSON", t)
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an integer"
}

func (s *strictReader) object(t reflect.Type, field string) error {
	if s.peek() != '{' {
		return s.fail(field, "want an object")
	}
	s.i++
	fs := structSchema(t)
	var seen uint64 // bit per schema member; structs here have far fewer than 64
	if len(fs) > 64 {
		return fmt.Errorf("UnmarshalStrict: %s has more than 64 members", t)
	}
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			start := s.i
			name, escaped, err := s.str(field)
			if err != nil {
				return err
			}
			if escaped {
				s.i = start
				return s.fail(field, "member name %q is written with escapes; write names plainly", name)
			}
			k := -1
			for j := range fs {
				if fs[j].name == name {
					k = j
					break
				}
			}
			if k < 0 {
				s.i = start
				e := s.fail(join(field, name), "unknown member %q (names are case-sensitive); this object has %s", name, memberNames(fs)).(*Error)
				e.Code = "unknown_member" // the field is whatever the sender wrote, so the code does not derive from it
				return e
			}
			if seen&(1<<k) != 0 {
				s.i = start
				return s.fail(join(field, name), "member %q appears twice", name)
			}
			seen |= 1 << k
			if s.peek() != ':' {
				return s.fail(join(field, name), "want ':' after the member name")
			}
			s.i++
			if err := s.value(fs[k].typ, join(field, name)); err != nil {
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
			return s.fail(field, "want ',' or '}' in the object")
		}
	}
	for k := range fs {
		if seen&(1<<k) == 0 && !fs[k].optional {
			return s.fail(join(field, fs[k].name), "member %q is missing", fs[k].name)
		}
	}
	return nil
}

// integer reads a JSON integer: an optional minus (when signed), then 0 or a
// digit string without a leading zero. "-0", fractions and exponents are
// refused.
func (s *strictReader) integer(field string, signed bool) (string, error) {
	start := s.i
	if s.peek() == '-' {
		if !signed {
			return "", s.fail(field, "want an unsigned integer")
		}
		s.i++
	}
	d := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	switch {
	case s.i == d:
		s.i = start
		return "", s.fail(field, "want an integer")
	case s.b[d] == '0' && s.i-d > 1:
		return "", s.fail(field, "integer with a leading zero")
	case s.b[d] == '0' && d > start:
		return "", s.fail(field, "-0 is not an integer here; write 0")
	}
	switch s.peek() {
	case '.', 'e', 'E':
		return "", s.fail(field, "want an integer, not a fraction or exponent")
	}
	return string(s.b[start:s.i]), nil
}

// str reads a JSON string and returns its value and whether it had escapes.
func (s *strictReader) str(field string) (string, bool, error) {
	if s.peek() != '"' {
		return "", false, s.fail(field, "want a string")
	}
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !escaped {
				return string(s.b[start+1 : s.i-1]), false, nil
			}
			var out string
			if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
				return "", true, s.fail(field, "bad string: %v", err)
			}
			return out, true, nil
		case c == '\\':
			escaped = true
			if err := s.escape(field); err != nil {
				return "", true, err
			}
		case c < 0x20:
			return "", escaped, s.fail(field, "control character in a string; escape it")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 {
				return "", escaped, s.fail(field, "string is not valid UTF-8")
			}
			s.i += n
		}
	}
	return "", escaped, s.fail(field, "unterminated string")
}

// escape checks one escape sequence at s.i (the backslash) and moves past it.
// A \u escape of a surrogate must be a high surrogate followed by a \u low
// surrogate.
func (s *strictReader) escape(field string) error {
	if s.i+1 >= len(s.b) {
		return s.fail(field, "unterminated escape")
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
	default:
		return s.fail(field, "bad escape \\%c", s.b[s.i+1])
	}
	r, ok := s.hex4(s.i + 2)
	if !ok {
		return s.fail(field, "bad \\u escape")
	}
	s.i += 6
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return s.fail(field, "lone low surrogate \\u%04x", r)
	case r >= 0xD800 && r <= 0xDBFF:
		if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
			if lo, ok := s.hex4(s.i + 2); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				s.i += 6
				return nil
			}
		}
		return s.fail(field, "high surrogate \\u%04x without its low surrogate", r)
	}
	return nil
}

func (s *strictReader) hex4(at int) (rune, bool) {
	if at+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
