package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/node"
)

// FuzzDecodeRequests drives the node's request decoders with arbitrary bodies
// and query strings. Whatever the input: nothing panics; a refusal is a 4xx
// *hcx.Error that names a field; a body accepted re-encodes to JSON that is
// accepted again as the same value; a registration accepted by Validate
// normalises to a fixed point (validating it again changes nothing).
// Run: go test ./api -run '^$' -fuzz FuzzDecodeRequests -fuzztime 2m
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []struct {
		kind  uint8
		body  string
		query string
	}{
		{0, `{"doc_type":"CN-ID","doc_number":"440106199003070028","name":"张三"}`, ""},
		{0, `{"doc_type":"PP-FRA","doc_number":"15ab12345","name":" Zoë  Lefèvre ","phone":"+33 6 12 34 56 78"}`, ""},
		{0, `{"doc_type":"HKMO","doc_number":"H12345678","name":"陈大文"}{}`, ""},
		{0, `{"doc_type":"CN-ID","doc_type":"TW"}`, ""},
		{0, "{\"name\":\"\u202e\u0301\u200d\"}", ""},
		{1, `{"result":"positive","kind":"pcr","at":"2026-11-24T08:00:00+08:00"}`, ""},
		{1, `{"result":"negative","at":"2026-11-24T08:00:00.123456789Z"}`, ""},
		{2, `{"issuer":"440000","at":"2026-11-24T00:00:00Z"}`, ""},
		{2, `{"issuer":null}`, ""},
		{3, `{"code":"HCX1:abc"}`, ""},
		{3, `[{"code":1}]`, ""},
		{4, ``, "offline=true"},
		{4, ``, "offline=yes&x=%zz"},
	} {
		f.Add(seed.kind, []byte(seed.body), seed.query)
	}
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte, query string) {
		switch kind % 5 {
		case 0:
			var v node.RegisterRequest
			if roundTrips(t, body, &v, func() any { return new(node.RegisterRequest) }) {
				checkRegistration(t, v, now)
			}
		case 1:
			roundTrips(t, body, new(labRequest), func() any { return new(labRequest) })
		case 2:
			roundTrips(t, body, new(contactRequest), func() any { return new(contactRequest) })
		case 3:
			roundTrips(t, body, new(verifyRequest), func() any { return new(verifyRequest) })
		case 4:
			r := &http.Request{URL: &url.URL{Path: "/v1/residents/x/code", RawQuery: query}}
			q, err := queryParams(r, "offline")
			if err == nil {
				_, err = parseBool(q, "offline")
			}
			if err != nil {
				refusedWithField(t, err)
			}
		}
	})
}

// roundTrips decodes body into v; when accepted, it re-encodes v, decodes that
// into a fresh value and fails unless both encode the same. It reports
// whether body was accepted.
func roundTrips(t *testing.T, body []byte, v any, fresh func() any) bool {
	t.Helper()
	if err := decodeObject(body, v); err != nil {
		refusedWithField(t, err)
		return false
	}
	b1, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted %q but cannot encode it: %v", body, err)
	}
	w := fresh()
	if err := decodeObject(b1, w); err != nil {
		t.Fatalf("accepted %q, re-encoded as %s, refused that: %v", body, b1, err)
	}
	if b2, _ := json.Marshal(w); string(b2) != string(b1) {
		t.Fatalf("accepted %q: re-encoded %s decodes to %s", body, b1, b2)
	}
	return true
}

// refusedWithField fails unless err is a 4xx *hcx.Error naming a field.
func refusedWithField(t *testing.T, err error) {
	t.Helper()
	var e *hcx.Error
	if !errors.As(err, &e) {
		t.Fatalf("refused with %T %v; want *hcx.Error", err, err)
	}
	if s := statusOf(e.Class); s < 400 || s > 499 || e.Field == "" {
		t.Fatalf("refused with status %d field %q: %v; want a 4xx naming a field", s, e.Field, err)
	}
}

// checkRegistration validates a decoded registration: a refusal names one of
// its members; an acceptance is a fixed point of validation.
func checkRegistration(t *testing.T, v node.RegisterRequest, now time.Time) {
	t.Helper()
	if err := v.Validate(now); err != nil {
		refusedWithField(t, err)
		var e *hcx.Error
		if errors.As(err, &e) && e.Field != "doc_type" && e.Field != "doc_number" && e.Field != "name" {
			t.Fatalf("registration refused naming %q, no member of it: %v", e.Field, err)
		}
		return
	}
	again := v
	if err := again.Validate(now); err != nil || again != v {
		t.Fatalf("validated %+v; validating again gave %+v, %v", v, again, err)
	}
}
