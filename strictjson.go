package hcx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
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
	if err := s.value(rv.Type().Elem()); err != nil {
		return err
	}
	if s.i != len(s.b) {
		return s.fail("unexpected byte %q after the top-level value; signed JSON ends with its value", s.b[s.i])
	}
	if err := json.Unmarshal(data, v); err != nil {
		// Unreachable for the types the schema check allows; kept so a
		// mistake here cannot pass silently.
		return Invalidf("", "JSON does not fit %T: %v", v, err)
	}
	return nil
}

type strictReader struct {
	b    []byte
	i    int
	path []pathElem // where the reader is, for errors; built only when one happens
}

// pathElem is a member name, or an array index when name is "".
type pathElem struct {
	name string
	idx  int
}

func (s *strictReader) field() string {
	var f strings.Builder
	for _, p := range s.path {
		switch {
		case p.name == "":
			fmt.Fprintf(&f, "[%d]", p.idx)
		case f.Len() > 0:
			f.WriteString("." + p.name)
		default:
			f.WriteString(p.name)
		}
	}
	return f.String()
}

func (s *strictReader) fail(format string, args ...any) error {
	return Invalidf(s.field(), "signed JSON at byte %d: %s", s.i, fmt.Sprintf(format, args...))
}

// failIn fails naming member inside the current place.
func (s *strictReader) failIn(member, format string, args ...any) *Error {
	s.path = append(s.path, pathElem{name: member})
	err := s.fail(format, args...).(*Error)
	s.path = s.path[:len(s.path)-1]
	return err
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

func (s *strictReader) value(t reflect.Type) error {
	if s.i >= len(s.b) {
		return s.fail("the value is missing (end of input)")
	}
	if s.peek() == 'n' {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice:
			if s.literal("null") {
				return nil
			}
		}
		return s.fail("null is not allowed here; want %s", jsonKind(t))
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.value(t.Elem())
	case reflect.Struct:
		return s.object(t)
	case reflect.Slice:
		if s.peek() != '[' {
			return s.fail("want an array")
		}
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		s.path = append(s.path, pathElem{})
		for n := 0; ; n++ {
			s.path[len(s.path)-1].idx = n
			if err := s.value(t.Elem()); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				s.path = s.path[:len(s.path)-1]
				return nil
			default:
				return s.fail("want ',' or ']' in the array")
			}
		}
	case reflect.String:
		return s.str()
	case reflect.Bool:
		if s.literal("true") || s.literal("false") {
			return nil
		}
		return s.fail("want true or false")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return s.integer(true, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return s.integer(false, t.Bits())
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

func (s *strictReader) object(t reflect.Type) error {
	if s.peek() != '{' {
		return s.fail("want an object")
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
			name, err := s.name()
			if err != nil {
				return err
			}
			k := -1
			for j := range fs {
				if fs[j].name == string(name) {
					k = j
					break
				}
			}
			if k < 0 {
				s.i = start
				e := s.failIn(string(name), "unknown member %q (names are case-sensitive); this object has %s", name, memberNames(fs))
				e.Code = "unknown_member" // the field is whatever the sender wrote, so the code does not derive from it
				return e
			}
			if seen&(1<<k) != 0 {
				s.i = start
				return s.failIn(fs[k].name, "member %q appears twice", name)
			}
			seen |= 1 << k
			if s.peek() != ':' {
				return s.failIn(fs[k].name, "want ':' after the member name")
			}
			s.i++
			s.path = append(s.path, pathElem{name: fs[k].name})
			if err := s.value(fs[k].typ); err != nil {
				return err
			}
			s.path = s.path[:len(s.path)-1]
			if s.peek() == ',' {
				s.i++
				continue
			}
			if s.peek() == '}' {
				s.i++
				break
			}
			return s.fail("want ',' or '}' in the object")
		}
	}
	for k := range fs {
		if seen&(1<<k) == 0 && !fs[k].optional {
			return s.failIn(fs[k].name, "member %q is missing", fs[k].name)
		}
	}
	return nil
}

// name reads a member name: plain printable ASCII, no escapes.
func (s *strictReader) name() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.fail("want a member name")
	}
	start := s.i + 1
	for s.i++; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], nil
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, s.fail("member name %q is not plain ASCII without escapes; no member has such a name", s.b[start:min(s.i+1, len(s.b))])
		}
	}
	return nil, s.fail("unterminated member name")
}

// integer reads a JSON integer: an optional minus (when signed), then 0 or a
// digit string without a leading zero, in range for bits. "-0", fractions
// and exponents are refused.
func (s *strictReader) integer(signed bool, bits int) error {
	start := s.i
	neg := s.peek() == '-'
	if neg {
		if !signed {
			return s.fail("want an unsigned integer")
		}
		s.i++
	}
	d := s.i
	var v uint64
	over := false
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		x := uint64(s.b[s.i] - '0')
		over = over || v > (math.MaxUint64-x)/10
		v = v*10 + x
		s.i++
	}
	switch {
	case s.i == d:
		s.i = start
		return s.fail("want an integer")
	case s.b[d] == '0' && s.i-d > 1:
		return s.fail("integer with a leading zero")
	case s.b[d] == '0' && neg:
		return s.fail("-0 is not an integer here; write 0")
	}
	switch s.peek() {
	case '.', 'e', 'E':
		return s.fail("want an integer, not a fraction or exponent")
	}
	limit := uint64(math.MaxUint64) >> (64 - bits) // unsigned maximum
	if signed {
		limit >>= 1 // signed maximum; the minimum is one further
		if neg {
			limit++
		}
	}
	if over || v > limit {
		return s.fail("integer %s is out of range", s.b[start:s.i])
	}
	return nil
}

// str checks a JSON string: valid UTF-8, no control characters, valid
// escapes. Its value is read later by encoding/json.
func (s *strictReader) str() error {
	if s.peek() != '"' {
		return s.fail("want a string")
	}
	for s.i++; s.i < len(s.b); {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\':
			if err := s.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return s.fail("control character in a string; escape it")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n <= 1 {
				return s.fail("string is not valid UTF-8")
			}
			s.i += n
		}
	}
	return s.fail("unterminated string")
}

// escape checks one escape sequence at s.i (the backslash) and moves past it.
// A \u escape of a surrogate must be a high surrogate followed by a \u low
// surrogate.
func (s *strictReader) escape() error {
	if s.i+1 >= len(s.b) {
		return s.fail("unterminated escape")
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
	default:
		return s.fail("bad escape \\%c", s.b[s.i+1])
	}
	r, ok := s.hex4(s.i + 2)
	if !ok {
		return s.fail("bad \\u escape")
	}
	s.i += 6
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return s.fail("lone low surrogate \\u%04x", r)
	case r >= 0xD800 && r <= 0xDBFF:
		if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
			if lo, ok := s.hex4(s.i + 2); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				s.i += 6
				return nil
			}
		}
		return s.fail("high surrogate \\u%04x without its low surrogate", r)
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
