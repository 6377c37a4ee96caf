package main

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// A Sichuan checkpoint verifies a Guangdong resident's code and their
// dependant's at Sichuan's node; within seconds the resident and the
// guardian see the checks at Guangdong's node, with province 510000 and the
// unit. The hub's log carries the receipts sealed: no subject and no unit
// in its bytes, addressed to Guangdong's box key, which no other key opens.
func TestCheckReceiptsTravelHomeThroughTheHub(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd, sc hcx.ProvinceCode = "440000", "510000"
	gdURL, scURL := f.NodeURLs[gd], f.NodeURLs[sc]
	hc := f.client()
	sub, me := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619850505123"), "name": "李四"})
	child := f.dependantOf(t, gd, sub, me, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010620190909123"), "name": "李小"})
	_, them := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619860606123"), "name": "赵六"})
	gate := f.asCheckpoint(sc)
	waitKnown(t, f, gate, scURL+"/readyz")
	unit := f.PKI.Checkpoints[sc].Cert.Subject.CommonName

	verify := func(whose hcx.Subject) time.Time {
		t.Helper()
		var code struct {
			QR string `json:"code"`
		}
		if st := callAs(t, hc, me, "GET", gdURL+"/v1/residents/"+string(whose)+"/code", nil, &code); st != http.StatusOK {
			t.Fatalf("code of %s: %d", whose, st)
		}
		var v struct {
			Valid     bool       `json:"valid"`
			Issuer    string     `json:"issuer"`
			CheckedAt int64      `json:"checked_at"`
			Colour    hcx.Colour `json:"colour"`
		}
		if st := callAs(t, hc, gate, "POST", scURL+"/v1/verify", map[string]string{"code": code.QR}, &v); st != http.StatusOK || !v.Valid || v.Issuer != string(gd) {
			t.Fatalf("verify at Sichuan: %d %+v", st, v)
		}
		return time.Unix(v.CheckedAt, 0)
	}
	start := time.Now()
	at := verify(sub)
	childAt := verify(child)

	list := func(who caller, whose hcx.Subject) checksAnswer {
		t.Helper()
		var a checksAnswer
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			a = checksAnswer{}
			if st := callAs(t, hc, who, "GET", gdURL+"/v1/residents/"+string(whose)+"/checks", nil, &a); st != http.StatusOK {
				t.Fatalf("checks of %s: %d", whose, st)
			}
			if len(a.Checks) > 0 {
				return a
			}
		}
		t.Fatalf("no check of %s arrived at Guangdong in 20 s", whose)
		return a
	}
	a := list(me, sub)
	took := time.Since(start)
	if len(a.Checks) != 1 || a.Checks[0].Province != sc || a.Checks[0].Unit != unit || a.Checks[0].Role != "checkpoint" ||
		a.Checks[0].Colour != hcx.Green || a.Checks[0].At.Unix() != at.Unix() {
		t.Fatalf("my checks at home: %+v, want one by %q of %s at %s", a, unit, sc, at)
	}
	t.Logf("a check at Sichuan reached the resident's history at Guangdong in %s", took.Round(time.Millisecond))
	if c := list(me, child); len(c.Checks) != 1 || c.Checks[0].Province != sc || c.Checks[0].At.Unix() != childAt.Unix() {
		t.Fatalf("the guardian reads the child's checks: %+v", c)
	}
	if st := callAs(t, hc, them, "GET", gdURL+"/v1/residents/"+string(sub)+"/checks", nil, nil); st != http.StatusForbidden {
		t.Errorf("another resident reads my checks: %d", st)
	}

	// The hub's log, read as another province: the receipts envelope
	// names sender and recipient only.
	var page exchange.Entries
	if st := callAs(t, hc, f.asMachine("province-310000", f.PKI.Provinces["310000"]), "GET", f.HubURLs[0]+"/v1/entries?start=0&limit=1000", nil, &page); st != http.StatusOK {
		t.Fatalf("hub entries: %d", st)
	}
	var receipts []*exchange.Receipts
	boxKeys := map[string]string{}
	for _, raw := range page.Entries {
		payload := raw
		if parts := strings.Split(raw, "."); len(parts) == 3 {
			if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
				payload = string(b)
			}
		}
		for _, s := range []string{string(sub), string(child), unit} {
			if strings.Contains(raw, s) || strings.Contains(payload, s) {
				t.Errorf("%q in the clear in a hub log leaf", s)
			}
		}
		h, err := certs.ParseHeader(raw)
		if err != nil {
			continue
		}
		switch h.Typ {
		case exchange.HdrReceipts:
			var r exchange.Receipts
			if err := exchange.DecodeStrict([]byte(payload), &r); err != nil {
				t.Fatal(err)
			}
			receipts = append(receipts, &r)
		case exchange.HdrBoxKey:
			var k exchange.BoxKeyEnvelope
			if err := exchange.DecodeStrict([]byte(payload), &k); err != nil {
				t.Fatal(err)
			}
			boxKeys[string(k.Iss)] = k.KID
		}
	}
	if len(boxKeys) != len(f.Nodes) {
		t.Errorf("box keys in the log: %v, want one per province", boxKeys)
	}
	if len(receipts) == 0 {
		t.Fatal("no receipts envelope in the hub log")
	}
	stranger, _ := certs.GenerateBoxKey()
	for _, r := range receipts {
		if r.Iss != sc || r.To != gd || r.KID != f.Nodes[gd].BoxKID() || r.KID != boxKeys[string(gd)] {
			t.Errorf("receipts envelope %s -> %s to kid %s; want %s -> %s to %s", r.Iss, r.To, r.KID, sc, gd, f.Nodes[gd].BoxKID())
		}
		if _, err := r.Open(stranger); !errors.Is(err, certs.ErrBoxOpen) {
			t.Errorf("another key opens the receipts: %v", err)
		}
	}
	// Only Guangdong stored them; the other provinces read the envelope
	// and left it.
	if s := f.Nodes[gd].ReceiptStats(); s.Received != 2 || s.Undecryptable != 0 {
		t.Errorf("Guangdong's receipt counters: %+v", s)
	}
	if s := f.Nodes[sc].ReceiptStats(); s.Queued != 2 || s.Sent != 2 || s.Dropped != 0 {
		t.Errorf("Sichuan's receipt counters: %+v", s)
	}
	for p, n := range f.Nodes {
		if p != gd && n.ReceiptStats().Received != 0 {
			t.Errorf("%s stored receipts: %+v", p, n.ReceiptStats())
		}
	}
}
