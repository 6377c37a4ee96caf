package exchange

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// TestExposuresValidateNamesTheField: every wrong exposure is refused
// naming its field; a good one passes.
func TestExposuresValidateNamesTheField(t *testing.T) {
	good := func() Exposures {
		return Exposures{Typ: TypExposures, Iss: "110000", At: 1_800_000_000, Exps: []Exposure{
			{Vid: "bj/001", Div: "110105", Level: ExposureHigh, From: 1_799_990_000, To: 1_799_999_000}}}
	}
	g := good()
	if err := g.Validate(); err != nil {
		t.Fatalf("good envelope: %v", err)
	}
	day := int64(24 * 3600)
	for _, c := range []struct {
		field string
		edit  func(*Exposures)
	}{
		{"typ", func(x *Exposures) { x.Typ = TypRiskAreas }},
		{"iss", func(x *Exposures) { x.Iss = "990000" }},
		{"exps", func(x *Exposures) { x.Exps = nil }},
		{"exps", func(x *Exposures) { x.Exps = make([]Exposure, MaxExposures+1) }},
		{"exps[0].vid", func(x *Exposures) { x.Exps[0].Vid = "" }},
		{"exps[0].vid", func(x *Exposures) { x.Exps[0].Vid = "场所" }},
		{"exps[0].div", func(x *Exposures) { x.Exps[0].Div = "110199" }},
		{"exps[0].div", func(x *Exposures) { x.Exps[0].Div = "310104" }},
		{"exps[0].level", func(x *Exposures) { x.Exps[0].Level = "severe" }},
		{"exps[0].from", func(x *Exposures) { x.Exps[0].From = 0 }},
		{"exps[0].to", func(x *Exposures) { x.Exps[0].To = x.Exps[0].From }},
		{"exps[0].to", func(x *Exposures) { x.Exps[0].To = x.Exps[0].From + 14*day + 1 }},
		{"exps[1].vid", func(x *Exposures) { x.Exps = append(x.Exps, x.Exps[0]) }},
	} {
		x := good()
		c.edit(&x)
		err := x.Validate()
		var he *hcx.Error
		if !asHcx(err, &he) || he.Field != c.field {
			t.Errorf("want refusal naming %s, got %v", c.field, err)
		}
	}
	// Exactly 14 days is allowed.
	x := good()
	x.Exps[0].To = x.Exps[0].From + int64(MaxExposureWindow/time.Second)
	if err := x.Validate(); err != nil {
		t.Errorf("a 14-day window: %v", err)
	}
}

func asHcx(err error, he **hcx.Error) bool {
	e, ok := err.(*hcx.Error)
	*he = e
	return ok
}

// FuzzExposuresPayload reads arbitrary payloads as exposure envelopes
// (hcx.exposures.v1), as the hub and every follower do: nothing panics; a
// payload that reads and checks out re-encodes to one that reads as the
// same value and checks out again.
// Run: go test ./exchange -run '^$' -fuzz FuzzExposuresPayload -fuzztime 2m
func FuzzExposuresPayload(f *testing.F) {
	f.Add([]byte(`{"typ":"hcx.exposures.v1","iss":"110000","at":1800000000,"exps":[{"vid":"bj/001","div":"110105","level":"high","from":1799990000,"to":1799999000}]}`))
	f.Add([]byte(`{"typ":"hcx.exposures.v1","iss":"110000","at":1800000000,"exps":[{"vid":"bj/001","div":"110105","level":"low","from":1799990000,"to":1799999000,"withdrawn":true}]}`))
	f.Add([]byte(`{"typ":"hcx.exposures.v1","iss":"110000","at":1800000000,"exps":[]}`))
	f.Add([]byte(`{"typ":"hcx.exposures.v1","iss":"110000","at":1800000000,"exps":[{"vid":"x","div":"110105","level":"high","from":1,"to":1209602}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var x Exposures
		if DecodeStrict(payload, &x) != nil || x.Validate() != nil {
			return
		}
		again, err := json.Marshal(&x)
		if err != nil {
			t.Fatal(err)
		}
		var y Exposures
		if err := DecodeStrict(again, &y); err != nil {
			t.Fatalf("accepted %q, but not its re-encoding %q: %v", payload, again, err)
		}
		if err := y.Validate(); err != nil {
			t.Fatalf("accepted %q, but its re-encoding does not check out: %v", payload, err)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("%q read as %+v, its re-encoding as %+v", payload, x, y)
		}
	})
}
