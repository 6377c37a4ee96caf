package main

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// statsAnswer is the route's answer, as api defines it.
type statsAnswer struct{ api.CheckStatsAnswer }

// sum is the bucket counts of one value over the answer.
func (a statsAnswer) sum(value string) uint64 {
	s := uint64(0)
	for _, b := range a.Buckets {
		s += b.Counts[value]
	}
	return s
}

// At Sichuan's node a checkpoint checks a Sichuan code, a Guangdong code
// and a forged code: Sichuan's operator reads them by issuer, colour and
// refusal; once the receipt has travelled, Guangdong's operator reads the
// check of its resident under away. Bad query values are 400s naming the
// field; callers outside the province's operators and the national roles
// are refused.
func TestCheckStatisticsThroughHTTP(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd, sc hcx.ProvinceCode = "440000", "510000"
	gdURL, scURL := f.NodeURLs[gd], f.NodeURLs[sc]
	hc := f.client()
	gdSub, gdMe := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619850505123"), "name": "李四"})
	scSub, scMe := f.asResident(t, sc, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("51010619870707123"), "name": "王五"})
	gate := f.asCheckpoint(sc)
	waitKnown(t, f, gate, scURL+"/readyz")
	scOp, gdOp := f.asOperator(t, sc), f.asOperator(t, gd)

	codeOf := func(who caller, base string, sub hcx.Subject) string {
		t.Helper()
		var code struct {
			QR string `json:"code"`
		}
		if st := callAs(t, hc, who, "GET", base+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
			t.Fatalf("code of %s: %d", sub, st)
		}
		return code.QR
	}
	verify := func(qr string) int {
		t.Helper()
		return callAs(t, hc, gate, "POST", scURL+"/v1/verify", map[string]string{"code": qr}, nil)
	}
	gdCode := codeOf(gdMe, gdURL, gdSub)
	for _, qr := range []string{codeOf(scMe, scURL, scSub), gdCode} {
		if st := verify(qr); st != http.StatusOK {
			t.Fatalf("verify at Sichuan: %d", st)
		}
	}
	parts := strings.Split(strings.TrimPrefix(gdCode, exchange.CodePrefix), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(`"col":"green"`), []byte(`"col":"red"`), 1)
	if st := verify(exchange.CodePrefix + parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]); st == http.StatusOK {
		t.Fatal("a forged code verified")
	}

	// Days in the province's zone: yesterday and today.
	today := f.Now().In(f.Nodes[sc].Zone())
	days := "from=" + today.AddDate(0, 0, -1).Format("2006-01-02") + "&to=" + today.Format("2006-01-02")
	stats := func(who caller, base, query string) (statsAnswer, int) {
		t.Helper()
		var a statsAnswer
		st := callAs(t, hc, who, "GET", base+"/v1/stats/checks?"+query, nil, &a)
		return a, st
	}
	// waitFor polls until ok holds of the answer (counts are saved every
	// node.StatsFlushInterval).
	waitFor := func(who caller, base, query string, ok func(statsAnswer) bool) statsAnswer {
		t.Helper()
		var a statsAnswer
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var st int
			if a, st = stats(who, base, query); st != http.StatusOK {
				t.Fatalf("stats %s: %d", query, st)
			}
			if ok(a) {
				return a
			}
		}
		t.Fatalf("stats %s at %s: %+v after 30 s", query, base, a)
		return a
	}
	byIssuer := waitFor(scOp, scURL, days+"&group=issuer", func(a statsAnswer) bool { return a.sum(string(sc)) == 1 && a.sum(string(gd)) == 1 })
	if byIssuer.Zone != f.Nodes[sc].Zone().String() || byIssuer.By != "day" || byIssuer.SavedAt == nil || byIssuer.BehindSeconds != int(node.StatsFlushInterval/time.Second) {
		t.Errorf("answer: %+v", byIssuer)
	}
	for _, b := range byIssuer.Buckets {
		if h, m, s := b.Start.In(f.Nodes[sc].Zone()).Clock(); h != 0 || m != 0 || s != 0 {
			t.Errorf("a day bucket starts at %s, not midnight in %s", b.Start, byIssuer.Zone)
		}
	}
	if a, _ := stats(scOp, scURL, days+"&group=colour"); a.sum(string(hcx.Green)) != 2 || len(a.Buckets) == 0 {
		t.Errorf("by colour: %+v", a)
	}
	if a, _ := stats(scOp, scURL, days+"&group=error"); a.sum("token_signature") != 1 {
		t.Errorf("refusals: %+v", a)
	}
	if a, _ := stats(scOp, scURL, days+"&group=issuer&by=hour"); a.sum(string(sc))+a.sum(string(gd)) != 2 || a.By != "hour" {
		t.Errorf("by hour: %+v", a)
	}
	// The national auditor reads too.
	if a, st := stats(f.asPerson(t, "auditor"), scURL, days+"&group=issuer"); st != http.StatusOK || a.sum(string(gd)) != 1 {
		t.Errorf("the auditor: %d %+v", st, a)
	}

	// Guangdong counts its resident's check at Sichuan once the receipt
	// has travelled home.
	waitFor(gdOp, gdURL, days+"&group=away", func(a statsAnswer) bool { return a.sum(string(sc)) == 1 })
	if a, _ := stats(gdOp, gdURL, days+"&group=away_colour"); a.sum(string(hcx.Green)) != 1 {
		t.Errorf("away by colour at Guangdong: %+v", a)
	}
	if a, _ := stats(scOp, scURL, days+"&group=away"); len(a.Buckets) != 0 {
		t.Errorf("Sichuan counts away checks it did not receive: %+v", a)
	}

	from := today.AddDate(0, 0, -1).Format("2006-01-02")
	for _, c := range []struct{ query, field string }{
		{"to=" + from, "from"},
		{"from=" + from, "to"},
		{"from=2026-13-01&to=" + from, "from"},
		{"from=" + from + "&to=yesterday", "to"},
		{"from=" + from + "&to=2020-01-01", "to"},
		{days + "&by=week", "by"},
		{days + "&group=name", "group"},
		{"from=2025-01-01&to=2026-02-05", "to"},         // 401 days
		{"from=2026-01-01&to=2026-01-08&by=hour", "to"}, // 8 days by hour
		{days + "&sub=" + string(gdSub), "sub"},
	} {
		var e errorAnswer
		if st := callAs(t, hc, scOp, "GET", scURL+"/v1/stats/checks?"+c.query, nil, &e); st != http.StatusBadRequest || e.Error.Field != c.field {
			t.Errorf("%s: %d field %q, want 400 naming %q", c.query, st, e.Error.Field, c.field)
		}
	}
	for _, ok := range []string{"from=2025-01-01&to=2026-02-04", "from=2026-01-01&to=2026-01-07&by=hour"} {
		if _, st := stats(scOp, scURL, ok); st != http.StatusOK {
			t.Errorf("%s (at the bound): %d", ok, st)
		}
	}

	for name, who := range map[string]caller{"Guangdong's operator": gdOp, "a checkpoint": gate, "a resident": scMe, "a feed": f.asFeed(sc)} {
		if _, st := stats(who, scURL, days); st != http.StatusForbidden {
			t.Errorf("%s reads Sichuan's statistics: %d", name, st)
		}
	}
}
