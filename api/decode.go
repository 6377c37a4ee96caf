package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hcxfed/hcx"
)

// DecodeJSON reads a JSON request body of at most limit bytes into v, a
// pointer to a struct whose members are named by json tags. It is strict, so
// that a mistake in a request is an answer, never a silent default: the body
// must be exactly one JSON object in UTF-8; every member must be one of v's,
// spelled in the same case, and appear once; null is no value; and a value of
// the wrong JSON type is refused naming the member and the type it wants
// ("doc_type: want a string, got number"). Errors are *hcx.Error of class
// EInvalid (ETooLarge over the limit), code "bad_json", with the member in
// Field, or "body" when the body as a whole is wrong.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	b, err := ReadBody(w, r, limit)
	if err != nil {
		return err
	}
	return decodeObject(b, v)
}

func badJSON(field, format string, args ...any) *hcx.Error {
	return &hcx.Error{Class: hcx.EInvalid, Code: "bad_json", Field: field, Message: fmt.Sprintf(format, args...)}
}

// decodeObject is DecodeJSON on a body already read.
func decodeObject(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("api: DecodeJSON needs a pointer to a struct, got %T", v)
	}
	rv = rv.Elem()
	members := membersOf(rv.Type())
	if len(bytes.TrimSpace(b)) == 0 {
		return badJSON("body", "request body is empty: send a JSON object with %s", members.list)
	}
	if !utf8.Valid(b) {
		return badJSON("body", "request body is not valid UTF-8: JSON text must be UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err, dec)
	}
	if tok != json.Delim('{') {
		return badJSON("body", "request body must be a JSON object with %s, not %s", members.list, kindOf(b))
	}
	seen := make(map[string]bool, len(members.index))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err, dec)
		}
		key := tok.(string) // inside an object, Token returns the member name
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxError(err, dec)
		}
		name := clip(key)
		i, ok := members.index[key]
		if !ok && key == "" {
			// An empty name names no field: say so of the body.
			return badJSON("body", "a member with an empty name: this request takes %s", members.list)
		}
		if !ok {
			return badJSON(name, "unknown member %q: this request takes %s (names are case-sensitive)", name, members.list)
		}
		if seen[key] {
			return badJSON(name, "member %q appears twice: give it once", name)
		}
		seen[key] = true
		f := rv.Field(i)
		if want := jsonType(f.Type()); bytes.Equal(raw, []byte("null")) {
			return badJSON(name, "want %s, got null", want)
		}
		if err := decodeMember(raw, f); err != nil {
			return badJSON(name, "want %s, got %s", jsonType(f.Type()), describe(raw, err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxError(err, dec)
	}
	end := dec.InputOffset()
	if rest := bytes.TrimLeft(b[end:], " \t\r\n"); len(rest) > 0 {
		return badJSON("body", "request body goes on after the JSON object, at byte %d: send one object and nothing after it", len(b)-len(rest))
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// decodeMember decodes one member's value into f, strictly inside nested
// objects too.
func decodeMember(raw []byte, f reflect.Value) error {
	switch f.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array, reflect.Pointer, reflect.Interface:
		if !reflect.PointerTo(f.Type()).Implements(unmarshalerType) {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.DisallowUnknownFields()
			return d.Decode(f.Addr().Interface())
		}
	}
	return json.Unmarshal(raw, f.Addr().Interface())
}

// syntaxError says where a body that is not JSON goes wrong.
func syntaxError(err error, dec *json.Decoder) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return badJSON("body", "request body is not valid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badJSON("body", "request body ends inside the JSON object, at byte %d", dec.InputOffset())
	}
	return badJSON("body", "request body is not valid JSON at byte %d", dec.InputOffset())
}

// describe says what a refused value was, in JSON terms.
func describe(raw []byte, err error) string {
	k := kindOf(raw)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return k + " (at " + te.Field + ")"
	case k == "a string" && len(raw) <= 66:
		return string(raw)
	}
	return k
}

// kindOf names the JSON type of a value.
func kindOf(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "true or false"
	case 'n':
		return "null"
	}
	return "a number"
}

var timeType = reflect.TypeFor[time.Time]()

// jsonType names the JSON a Go type decodes from, for people.
func jsonType(t reflect.Type) string {
	if t == timeType {
		return "a string with an RFC 3339 time such as 2026-11-24T08:00:00+08:00"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "a JSON value"
}

// members are the JSON members of a request struct: their field indexes and,
// for messages, their names in order.
type members struct {
	index map[string]int
	list  string
}

var membersCache sync.Map // reflect.Type → *members

func membersOf(t reflect.Type) *members {
	if m, ok := membersCache.Load(t); ok {
		return m.(*members)
	}
	m := &members{index: map[string]int{}}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m.index[name] = i
		names = append(names, name)
	}
	switch len(names) {
	case 0:
		m.list = "no members"
	case 1:
		m.list = names[0]
	default:
		m.list = strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	membersCache.Store(t, m)
	return m
}

// clip shortens a member name sent by a client to at most 64 bytes for
// answers and logs, at a character boundary.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	i := 64
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// queryParams reads a request's query string strictly: every parameter must
// be one of allowed and appear once. It returns the parameters' values.
func queryParams(r *http.Request, allowed ...string) (map[string]string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &hcx.Error{Class: hcx.EInvalid, Code: "bad_query", Field: "query", Message: fmt.Sprintf("the query string is malformed: %v", err)}
	}
	out := make(map[string]string, len(q))
	for k, vs := range q {
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		switch {
		case k == "":
			return nil, hcx.Invalidf("query", "the query string has a parameter with no name (%q): remove it", clip(r.URL.RawQuery))
		case !known && len(allowed) == 0:
			return nil, hcx.Invalidf(clip(k), "unknown query parameter %q: %s takes none", clip(k), r.URL.Path)
		case !known:
			return nil, hcx.Invalidf(clip(k), "unknown query parameter %q: this route takes %s", clip(k), strings.Join(allowed, ", "))
		case len(vs) != 1:
			return nil, hcx.Invalidf(k, "query parameter %s appears %d times: give it once", k, len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}

// parseBool reads a boolean query parameter: true, false, 1 or 0; absent is
// false. Anything else is refused naming the parameter, so that a typo never
// quietly means false.
func parseBool(q map[string]string, name string) (bool, error) {
	v, ok := q[name]
	if !ok {
		return false, nil
	}
	switch v {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, hcx.Invalidf(name, "%q: want true or false", v)
}
