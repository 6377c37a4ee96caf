package consensus

import (
	"encoding/json"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

func TestThePayloadScannerFindsEachAttestationAndTheSliceReadsItBack(t *testing.T) {
	p := newPKI(t, 1)
	env := p.batch(t, "440000", 7, 23, 5, hcx.Yellow, 3)
	li, err := parseLeaf([]byte(env))
	if err != nil {
		t.Fatal(err)
	}
	if li.typ != exchange.TypBatch || li.iss != "440000" || li.seq != 7 || len(li.atts) != 23 {
		t.Fatalf("scanned %+v", li.payloadInfo)
	}
	for i, a := range li.atts {
		raw, err := payloadSlice([]byte(env), a.off, a.len)
		if err != nil {
			t.Fatal(err)
		}
		var got hcx.Attestation
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("attestation %d: %v in %q", i, err, raw)
		}
		if got.Subject != subjectOf(5+i) || a.sub != string(got.Subject) || a.n != 3 || got.N != 3 {
			t.Fatalf("attestation %d: scanned %s/%d, read back %+v", i, a.sub, a.n, got)
		}
	}
}

func TestThePayloadScannerRefusesWhatIsNotJSON(t *testing.T) {
	for name, payload := range map[string]string{
		"reject/truncated":        `{"typ":"hcx.batch.v1","atts":[{"sub":"a"`,
		"reject/trailing-bytes":   `{"typ":"x"} x`,
		"reject/seq-not-unsigned": `{"seq":-1}`,
		"reject/n-a-string":       `{"atts":[{"n":"1"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := scanPayload([]byte(payload)); err == nil {
				t.Fatalf("%s scanned without error", payload)
			}
		})
	}
	// Escapes and unknown fields of any shape are fine.
	pi, err := scanPayload([]byte(`{"typ":"t\u0041","x":[1,{"y":null},true],"iss":"440000","atts":[{"z":{"q":[]},"sub":"s","n":2}]}`))
	if err != nil || pi.typ != "tA" || pi.iss != "440000" || len(pi.atts) != 1 || pi.atts[0].n != 2 {
		t.Fatalf("got %+v %v", pi, err)
	}
}
