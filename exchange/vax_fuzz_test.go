package exchange

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzVaxPayload reads arbitrary payloads as vaccination envelopes
// (hcx.vax.v1), as the hub and every follower do: nothing panics; a payload
// that reads and checks out re-encodes to one that reads as the same value
// and checks out again, so two readers that accept it agree on every dose.
// Run: go test ./exchange -run '^$' -fuzz FuzzVaxPayload -fuzztime 2m
func FuzzVaxPayload(f *testing.F) {
	f.Add([]byte(`{"typ":"hcx.vax.v1","iss":"510000","at":1800000000,"doses":[{"sub":"abcdefghijklmnopqrstuvwxyz","dose":2,"course":2,"prod":"CoronaVac","at":1799000000,"id":"sc-1"}]}`))
	f.Add([]byte(`{"typ":"hcx.vax.v1","iss":"510000","at":1800000000,"doses":[]}`))
	f.Add([]byte(`{"typ":"hcx.vax.v1","iss":"510000","at":1800000000,"doses":[{"sub":"abcdefghijklmnopqrstuvwxyz","dose":1,"course":1,"prod":"Ad5-nCoV","at":1800000001,"id":"x"}]}`))
	f.Add([]byte(`{"typ":"hcx.vax.v1","ISS":"510000"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var v Vax
		if DecodeStrict(payload, &v) != nil || v.Validate() != nil {
			return
		}
		again, err := json.Marshal(&v)
		if err != nil {
			t.Fatal(err)
		}
		var w Vax
		if err := DecodeStrict(again, &w); err != nil {
			t.Fatalf("accepted %q, but not its re-encoding %q: %v", payload, again, err)
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("accepted %q, but its re-encoding does not check out: %v", payload, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("%q read as %+v, its re-encoding as %+v", payload, v, w)
		}
	})
}
