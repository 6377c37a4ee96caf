package hcx

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type strictInner struct {
	Sub string `json:"sub"`
	N   uint64 `json:"n"`
}

type strictOuter struct {
	Typ  string        `json:"typ"`
	At   int64         `json:"at"`
	Ok   bool          `json:"ok"`
	To   *int64        `json:"to"`
	Opt  string        `json:"opt,omitempty"`
	Atts []strictInner `json:"atts"`
}

func TestUnmarshalStrictReadsWhatOurProducersWrite(t *testing.T) {
	var o strictOuter
	in := `{"typ":"t\u00e9\ud83d\ude00","at":-5,"ok":true,"to":null,"atts":[{"sub":"张","n":18446744073709551615}]}`
	if err := UnmarshalStrict([]byte(in), &o); err != nil {
		t.Fatal(err)
	}
	if o.Typ != "té😀" || o.At != -5 || !o.Ok || o.To != nil || len(o.Atts) != 1 || o.Atts[0].N != 1<<64-1 || o.Atts[0].Sub != "张" {
		t.Fatalf("read %+v", o)
	}
	if err := UnmarshalStrict([]byte(`{"atts":null,"to":7,"ok":false,"at":0,"typ":"","opt":"x"}`), &o); err != nil || o.Atts != nil || *o.To != 7 || o.Opt != "x" {
		t.Fatalf("members in any order, null slice, optional member: %+v %v", o, err)
	}
}

func TestUnmarshalStrictRefusesEverySecondReading(t *testing.T) {
	const ok = `"at":1,"ok":true,"to":null,"atts":[]`
	for name, c := range map[string]struct{ in, field string }{
		"reject/unknown-member":          {`{"typ":"a",` + ok + `,"x":1}`, "x"},
		"reject/duplicate-member":        {`{"typ":"a","typ":"b",` + ok + `}`, "typ"},
		"reject/case-variant-member":     {`{"TYP":"a",` + ok + `}`, "TYP"},
		"reject/case-variant-and-exact":  {`{"typ":"a","Typ":"b",` + ok + `}`, "Typ"},
		"reject/escaped-member-name":     {`{"t\u0079p":"a",` + ok + `}`, ""},
		"reject/missing-member":          {`{` + ok + `}`, "typ"},
		"reject/null-for-string":         {`{"typ":null,` + ok + `}`, "typ"},
		"reject/null-for-int":            {`{"typ":"a","at":null,"ok":true,"to":null,"atts":[]}`, "at"},
		"reject/float-for-int":           {`{"typ":"a","at":1.0,"ok":true,"to":null,"atts":[]}`, "at"},
		"reject/exponent-for-int":        {`{"typ":"a","at":1e3,"ok":true,"to":null,"atts":[]}`, "at"},
		"reject/leading-zero":            {`{"typ":"a","at":01,"ok":true,"to":null,"atts":[]}`, "at"},
		"reject/minus-zero":              {`{"typ":"a","at":-0,"ok":true,"to":null,"atts":[]}`, "at"},
		"reject/negative-for-unsigned":   {`{"typ":"a",` + ok[:len(ok)-2] + `[{"sub":"s","n":-1}]}`, "atts[0].n"},
		"reject/unsigned-out-of-range":   {`{"typ":"a",` + ok[:len(ok)-2] + `[{"sub":"s","n":18446744073709551616}]}`, "atts[0].n"},
		"reject/string-for-int":          {`{"typ":"a","at":"1","ok":true,"to":null,"atts":[]}`, "at"},
		"reject/int-for-bool":            {`{"typ":"a","at":1,"ok":1,"to":null,"atts":[]}`, "ok"},
		"reject/object-for-array":        {`{"typ":"a","at":1,"ok":true,"to":null,"atts":{}}`, "atts"},
		"reject/trailing-bytes":          {`{"typ":"a",` + ok + `} `, ""},
		"reject/second-value":            {`{"typ":"a",` + ok + `}{}`, ""},
		"reject/whitespace-after-colon":  {`{"typ": "a",` + ok + `}`, "typ"},
		"reject/whitespace-before-value": {` {"typ":"a",` + ok + `}`, ""},
		"reject/newline-in-array":        {`{"typ":"a","at":1,"ok":true,"to":null,"atts":[` + "\n" + `]}`, "atts[0]"},
		"reject/invalid-utf8":            {"{\"typ\":\"\xff\"," + ok + `}`, "typ"},
		"reject/lone-surrogate":          {`{"typ":"\ud800",` + ok + `}`, "typ"},
		"reject/control-character":       {"{\"typ\":\"a\tb\"," + ok + `}`, "typ"},
		"reject/truncated":               {`{"typ":"a",`, ""},
		"reject/empty":                   {``, ""},
	} {
		t.Run(name, func(t *testing.T) {
			var o strictOuter
			err := UnmarshalStrict([]byte(c.in), &o)
			var e *Error
			if !errors.As(err, &e) || e.Class != EInvalid {
				t.Fatalf("%s: got %v, want an EInvalid *Error", c.in, err)
			}
			if e.Field != c.field {
				t.Fatalf("%s: field %q, want %q (%v)", c.in, e.Field, c.field, err)
			}
			if strings.HasPrefix(name, "reject/unknown") || strings.HasPrefix(name, "reject/case-variant") {
				if e.Code != "unknown_member" {
					t.Fatalf("code %q, want unknown_member", e.Code)
				}
			}
			if c.field != "" && !strings.Contains(err.Error(), c.field) {
				t.Fatalf("the message does not name the field: %v", err)
			}
		})
	}
}

// FuzzUnmarshalStrict: whatever the strict reader accepts, encoding/json
// writes back to bytes the strict reader reads to the same value, and
// encoding/json alone reads the accepted bytes to that value too.
func FuzzUnmarshalStrict(f *testing.F) {
	f.Add([]byte(`{"typ":"t\u00e9","at":-5,"ok":true,"to":null,"atts":[{"sub":"张","n":1}]}`))
	f.Add([]byte(`{"typ":"a","typ":"b","at":1,"ok":true,"to":null,"atts":[]}`))
	f.Add([]byte(`{"TYP":"a","at":1.0,"ok":true,"to":7,"atts":null,"opt":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a strictOuter
		if UnmarshalStrict(data, &a) != nil {
			return
		}
		var plain strictOuter
		if err := json.Unmarshal(data, &plain); err != nil || !reflect.DeepEqual(a, plain) {
			t.Fatalf("encoding/json reads %+v (%v), the strict reader %+v", plain, err, a)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var b strictOuter
		if err := UnmarshalStrict(out, &b); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%s reads back as %+v (%v), want %+v", out, b, err, a)
		}
	})
}
