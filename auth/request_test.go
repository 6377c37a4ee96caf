package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
)

func TestReadRequestBoundsTheReasonAndKeepsOnlySaneRequestIDs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      string
		reasons []string
		wantID  string // "" : a fresh random id
		wantWhy string
		bad     bool
	}{
		{name: "ok/none"},
		{name: "ok/reason-and-id", id: "req-1.a_B", reasons: []string{"复核申诉 7"}, wantID: "req-1.a_B", wantWhy: "复核申诉 7"},
		{name: "ok/reason-at-the-limit", reasons: []string{strings.Repeat("因", MaxReason)}, wantWhy: strings.Repeat("因", MaxReason)},
		{name: "ok/odd-id-replaced", id: "a b<script>"},
		{name: "ok/long-id-replaced", id: strings.Repeat("a", 65)},
		{name: "reject/reason-too-long", reasons: []string{strings.Repeat("a", MaxReason+1)}, bad: true},
		{name: "reject/reason-not-utf8", reasons: []string{"\xff\xfe"}, bad: true},
		{name: "reject/reason-control", reasons: []string{"line\tbreak"}, bad: true},
		{name: "reject/two-reasons", reasons: []string{"a", "b"}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.id != "" {
				r.Header.Set(HeaderRequestID, tc.id)
			}
			for _, v := range tc.reasons {
				r.Header.Add(HeaderReason, v)
			}
			req, err := ReadRequest(r)
			var e *hcx.Error
			if tc.bad {
				if !errors.As(err, &e) || e.Class != hcx.EInvalid || e.Field != HeaderReason || e.Code != "invalid_reason" {
					t.Fatalf("err = %v, want invalid_reason naming %s", err, HeaderReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Reason != tc.wantWhy {
				t.Errorf("reason %q, want %q", req.Reason, tc.wantWhy)
			}
			if tc.wantID != "" && req.ID != tc.wantID || tc.wantID == "" && (len(req.ID) != 24 || req.ID == tc.id) {
				t.Errorf("request id %q (sent %q)", req.ID, tc.id)
			}
		})
	}
}
