package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// withLang is c sending Accept-Language: lang.
func withLang(c caller, lang string) caller {
	return caller{name: c.name + " (" + lang + ")", sign: func(t testing.TB, req *http.Request, body []byte) {
		req.Header.Set("Accept-Language", lang)
		c.sign(t, req, body)
	}}
}

// TestEndToEndResidentScansVenueCodesOfTwoProvinces: a 440000 resident
// scans a Sichuan (510000) venue code and a Guangdong one at Guangdong's
// node and sees the unveiled code; a guardian scans for a dependant; a
// string that is not a venue code (or a code signed by a key that is not a
// province's) answers Tianjin's message in the caller's language and
// writes nothing; another resident cannot scan for them; the resident
// lists their scans.
func TestEndToEndResidentScansVenueCodesOfTwoProvinces(t *testing.T) {
	f := startTestFederation(t, 1)
	gd := f.NodeURLs["440000"]
	waitReady(t, gd)
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	parentSub, parent := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619850202212"), "name": "王大"})
	child := f.dependantOf(t, "440000", parentSub, parent, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010620180101121"), "name": "王小"})
	strangerSub, stranger := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619750303313"), "name": "赵五"})
	issue := func(iss hcx.ProvinceCode, vid string, div hcx.DivisionCode, name string) string {
		qr, err := exchange.IssueVenueCode(f.PKI.Provinces[iss], &exchange.VenueClaims{Iss: iss, VID: vid, Div: div, Name: name, Cat: "mall", IssuedAt: time.Now().Add(-time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return qr
	}
	// Sichuan's venue code is made with Sichuan's signer; Guangdong's goes
	// the way a venue's does: its manager applies, an operator passes it
	// (Guangdong's node refuses its own province's codes it never passed).
	chengdu := issue("510000", "cd-001", "510104", "太古里")
	var applied node.Venue
	if st := callAs(t, f.client(), stranger, "POST", gd+"/v1/residents/"+string(strangerSub)+"/venues",
		map[string]string{"name": "天河城", "division": "440106", "category": "mall", "uscc": usccOf("9144010600000000")}, &applied); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("apply for 天河城: %d", st)
	}
	var passed node.Venue
	if st := callAs(t, f.client(), f.asOperator(t, "440000"), "POST", gd+"/v1/venues/"+applied.ID+"/review",
		map[string]string{"decision": "passed", "reason": "licence checked"}, &passed); st != http.StatusOK || passed.Code == "" {
		t.Fatalf("pass 天河城: %d %+v", st, passed)
	}
	guangzhou := passed.Code
	type unveiled struct {
		Venue struct {
			Iss  hcx.ProvinceCode `json:"iss"`
			Name string           `json:"name"`
			Div  hcx.DivisionCode `json:"div"`
		} `json:"venue"`
		EnteredAt  time.Time   `json:"entered_at"`
		Subject    hcx.Subject `json:"subject"`
		Name       string      `json:"name"`
		Colour     hcx.Colour  `json:"colour"`
		Vaccinated bool        `json:"vaccinated"`
	}
	scans := func(sub hcx.Subject) string { return gd + "/v1/residents/" + string(sub) + "/scans" }
	for _, c := range []struct {
		qr, name string
		div      hcx.DivisionCode
	}{{chengdu, "太古里", "510104"}, {guangzhou, "天河城", "440106"}} {
		before := time.Now()
		var u unveiled
		if st := callAs(t, f.client(), parent, "POST", scans(parentSub), map[string]any{"code": c.qr}, &u); st != http.StatusOK {
			t.Fatalf("scan %s: %d", c.name, st)
		}
		if u.Venue.Name != c.name || u.Venue.Div != c.div || u.Subject != parentSub || u.Colour != hcx.Green || u.Name == "" || u.Name == "王大" ||
			u.EnteredAt.Before(before.Add(-time.Second)) || u.EnteredAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("unveiled after scanning %s: %+v", c.name, u)
		}
	}
	var u unveiled
	if st := callAs(t, f.client(), parent, "POST", scans(child), map[string]any{"code": chengdu}, &u); st != http.StatusOK || u.Subject != child || u.Venue.Name != "太古里" {
		t.Fatalf("the guardian scans for the child: %d %+v", st, u)
	}
	var e apiErrorField
	if st := callAs(t, f.client(), stranger, "POST", scans(parentSub), map[string]any{"code": chengdu}, &e); st != http.StatusForbidden {
		t.Fatalf("a stranger scans for the resident: %d %+v", st, e)
	}

	// Not a venue code: Tianjin's message in four languages, nothing written.
	feedSigned, err := exchange.IssueVenueCode(f.PKI.Feeds["510000"], &exchange.VenueClaims{Iss: "510000", VID: "x", Div: "510104", Name: "假", Cat: "mall", IssuedAt: time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing written: a scan is recorded with its audit entry in one
	// write, so the trail's head stays (the store's version may move with
	// the follower's and publisher's own writes meanwhile).
	n := f.Nodes["440000"]
	v0 := auditSeq(t, n)
	for lang, want := range map[string]string{"zh-CN": node.NotVenueCodeText[0], "en-GB,en;q=0.8": node.NotVenueCodeText[1], "ja": node.NotVenueCodeText[2], "ko-KR": node.NotVenueCodeText[3]} {
		for _, text := range []string{"https://example.com/menu", feedSigned} {
			var e apiErrorField
			if st := callAs(t, f.client(), withLang(parent, lang), "POST", scans(parentSub), map[string]any{"code": text}, &e); st != http.StatusUnprocessableEntity || e.Error.Code != "not_a_venue_code" || e.Error.Message != want {
				t.Errorf("%s: %d %+v, want 422 %q", lang, st, e, want)
			}
		}
	}
	if st := callAs(t, f.client(), parent, "POST", scans(parentSub), map[string]any{"code": chengdu, "at": time.Now().Add(-24 * time.Hour)}, &e); st != http.StatusBadRequest || e.Error.Field != "at" {
		t.Errorf("a scan replayed from yesterday: %d %+v, want 400 naming at", st, e)
	}
	if v := auditSeq(t, n); v != v0 {
		t.Errorf("audit trail %d -> %d: refused scans wrote", v0, v)
	}

	var list struct {
		Scans []node.ScanRecord `json:"scans"`
	}
	if st := callAs(t, f.client(), parent, "GET", scans(parentSub), nil, &list); st != http.StatusOK || len(list.Scans) != 2 || list.Scans[0].Venue.Name != "天河城" || list.Scans[1].Venue.Iss != "510000" {
		t.Fatalf("the resident's scans: %d %+v", st, list)
	}
	if st := callAs(t, f.client(), parent, "GET", scans(parentSub)+"?limit=0", nil, &e); st != http.StatusBadRequest || e.Error.Field != "limit" {
		t.Errorf("limit=0: %d %+v", st, e)
	}
}
