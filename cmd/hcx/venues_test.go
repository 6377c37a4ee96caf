package main

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// usccOf completes the first 16 characters of a unified social credit code
// with its two check characters (GB 11714, GB 32100).
func usccOf(first16 string) string {
	s := first16 + string(hcx.OrgCodeCheckChar(first16[8:16]))
	return s + string(hcx.USCCCheckChar(s))
}

// A venue's life through HTTP with real credentials at Guangdong's node: a
// manager applies for a shop and a taxi, lists them; a guardian acting for
// a dependant, another resident and an operator cannot apply; bad input is
// a 400 naming the field with nothing written; an operator extends the
// categories, passes one venue and fails another with reasons (in the
// trail); the manager, the operator and the auditor download the code as
// text (it verifies against the trust list), PNG and SVG; the operator
// retires the venue and its code is no longer served nor good for scans.
func TestVenueCodesApplyReviewDownloadRetire(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	hc := f.client()
	n := f.Nodes[gd]
	url := f.NodeURLs[gd]
	op, opSC, aud := f.asOperator(t, gd), f.asOperator(t, "510000"), f.asPerson(t, devidp.AuditorName)
	id17 := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, manager := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id17("44010619800307002"), "name": "张经理"})
	otherSub, other := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id17("44010619810101001"), "name": "李四"})
	child := f.dependantOf(t, gd, sub, manager, map[string]string{"doc_type": "CN-ID", "doc_number": id17("44010620150101003"), "name": "张小"})
	venues := url + "/v1/residents/" + string(sub) + "/venues"
	uscc := usccOf("9144010600000000")
	shop := map[string]string{"name": "天河城购物中心", "division": "440106", "category": "mall", "uscc": uscc}

	// Who may not apply: the guardian for their dependant (a proxy cannot
	// apply), another resident for the manager, an operator.
	before := auditSeq(t, n)
	if a := sendJSON(t, hc, manager, "POST", url+"/v1/residents/"+string(child)+"/venues", shop); a.status != http.StatusForbidden {
		t.Errorf("a guardian applies for their dependant: %d %s, want 403", a.status, a.code)
	}
	for _, who := range []caller{other, op, aud} {
		if a := sendJSON(t, hc, who, "POST", venues, shop); a.status != http.StatusForbidden {
			t.Errorf("%s applies for the manager: %d %s, want 403", who.name, a.status, a.code)
		}
	}

	// Bad input: 400 naming the field, nothing written.
	wrongCheck := uscc[:17] + map[bool]string{true: "1", false: "0"}[uscc[17] == '0']
	bad := []struct {
		name, field, value, want string
	}{
		{"wrong USCC check character", "uscc", wrongCheck, "should be " + uscc[17:]},
		{"17-character USCC", "uscc", uscc[:17], "18 characters"},
		{"19-character USCC", "uscc", uscc + "0", "18 characters"},
		{"lower-case USCC", "uscc", strings.ToLower(usccOf("91440106MA59ABCD")), "upper case"},
		{"unknown category", "category", "casino", "not a venue category"},
		{"division of another province", "division", "110105", "not in 440000"},
		{"no division", "division", "449999", "GB/T 2260"},
		{"empty name", "name", "", "empty"},
		{"long name", "name", strings.Repeat("店", node.MaxVenueNameChars+1), "at most"},
	}
	for _, c := range bad {
		body := map[string]string{}
		for k, v := range shop {
			body[k] = v
		}
		body[c.field] = c.value
		a := sendJSON(t, hc, manager, "POST", venues, body)
		if a.status != http.StatusBadRequest || a.field != c.field || !strings.Contains(string(a.body), c.want) {
			t.Errorf("%s: %d %s %q, want 400 naming %s saying %q", c.name, a.status, a.field, a.body, c.field, c.want)
		}
	}
	if a := sendJSON(t, hc, manager, "POST", venues, map[string]string{"name": "粤A12345", "division": "440106", "category": "taxi", "uscc": uscc}); a.status != http.StatusBadRequest || a.field != "unit" {
		t.Errorf("a taxi without its unit: %d %s", a.status, a.field)
	}
	if a := send(t, hc, manager, "POST", venues, `{"name":"x","division":"440106","category":"mall","uscc":"`+uscc+`","owner":"me"}`, nil); a.status != http.StatusBadRequest {
		t.Errorf("an unknown member: %d", a.status)
	}
	if after := auditSeq(t, n); after != before {
		t.Errorf("refused applications wrote to the store: audit trail head %d -> %d", before, after)
	}

	// The manager applies for a shop and a taxi; one code per venue.
	var v, taxi node.Venue
	if st := callAs(t, hc, manager, "POST", venues, shop, &v); st != http.StatusCreated || v.State != node.VenueUnderReview || v.Manager != sub || v.ID == "" {
		t.Fatalf("apply: %d %+v", st, v)
	}
	if a := sendJSON(t, hc, manager, "POST", venues, shop); a.status != http.StatusConflict || a.code != "venue_exists" {
		t.Errorf("the same venue again: %d %s, want 409 venue_exists", a.status, a.code)
	}
	taxiReq := map[string]string{"name": "粤A12345", "division": "440106", "category": "taxi", "uscc": uscc, "unit": "广州市出租汽车公司"}
	if st := callAs(t, hc, manager, "POST", venues, taxiReq, &taxi); st != http.StatusCreated || !taxi.Mobile || taxi.Unit == "" {
		t.Fatalf("apply for a taxi: %d %+v", st, taxi)
	}
	var mine struct {
		Venues []node.Venue `json:"venues"`
	}
	if st := callAs(t, hc, manager, "GET", venues, nil, &mine); st != http.StatusOK || len(mine.Venues) != 2 {
		t.Fatalf("list own venues: %d %+v", st, mine)
	}
	if a := sendJSON(t, hc, other, "GET", venues, nil); a.status != http.StatusForbidden {
		t.Errorf("another resident lists the manager's venues: %d", a.status)
	}
	if a := sendJSON(t, hc, other, "GET", url+"/v1/residents/"+string(otherSub)+"/venues/"+v.ID, nil); a.status != http.StatusNotFound {
		t.Errorf("another resident reads the venue under their own subject: %d, want 404", a.status)
	}
	// No code before it passed.
	if a := sendJSON(t, hc, manager, "GET", venues+"/"+v.ID+"/code", nil); a.status != http.StatusConflict {
		t.Errorf("code under review: %d, want 409", a.status)
	}

	// The operator extends the categories (audited), and a manager may use it.
	cinema := map[string]any{"id": "cinema", "zh": "电影院", "en": "Cinema"}
	if a := sendJSON(t, hc, op, "POST", url+"/v1/venue-categories", cinema); a.status != http.StatusCreated {
		t.Fatalf("add a category: %d %s", a.status, a.body)
	}
	if a := sendJSON(t, hc, op, "POST", url+"/v1/venue-categories", map[string]any{"id": "cinema", "zh": "影院", "en": "Cinema"}); a.status != http.StatusConflict {
		t.Errorf("another category under a used id: %d", a.status)
	}
	var cats struct {
		Categories []node.VenueCategory `json:"categories"`
	}
	if st := callAs(t, hc, other, "GET", url+"/v1/venue-categories", nil, &cats); st != http.StatusOK || cats.Categories[len(cats.Categories)-1].ID != "cinema" {
		t.Errorf("categories: %d %+v", st, cats)
	}
	var film node.Venue
	if st := callAs(t, hc, manager, "POST", venues, map[string]string{"name": "飞扬影城", "division": "440106", "category": "cinema", "uscc": uscc}, &film); st != http.StatusCreated {
		t.Fatalf("apply for a cinema: %d", st)
	}

	// The operator's queue, oldest first; Sichuan's operator may not look.
	var page node.VenuePage
	if st := callAs(t, hc, op, "GET", url+"/v1/venues?state=under_review&limit=2", nil, &page); st != http.StatusOK || len(page.Venues) != 2 || page.Venues[0].ID != v.ID || page.Next == "" {
		t.Fatalf("queue: %d %+v", st, page)
	}
	var rest node.VenuePage
	if st := callAs(t, hc, aud, "GET", url+"/v1/venues?state=under_review&after="+page.Next, nil, &rest); st != http.StatusOK || len(rest.Venues) != 1 || rest.Venues[0].ID != film.ID || rest.Next != "" {
		t.Fatalf("queue's next page: %d %+v", st, rest)
	}
	if a := sendJSON(t, hc, opSC, "GET", url+"/v1/venues?state=under_review", nil); a.status != http.StatusForbidden {
		t.Errorf("Sichuan's operator reads Guangdong's queue: %d", a.status)
	}

	// Review: a reason is required; pass the shop, fail the cinema.
	before = auditSeq(t, n)
	for _, body := range []map[string]string{{"decision": "passed"}, {"decision": "approve", "reason": "ok"}} {
		if a := sendJSON(t, hc, op, "POST", url+"/v1/venues/"+v.ID+"/review", body); a.status != http.StatusBadRequest {
			t.Errorf("review %v: %d, want 400", body, a.status)
		}
	}
	if a := sendJSON(t, hc, op, "POST", url+"/v1/venues/nope/review", map[string]string{"decision": "passed", "reason": "x"}); a.status != http.StatusNotFound || a.field != "vid" {
		t.Errorf("review an unknown venue: %d %s", a.status, a.field)
	}
	if after := auditSeq(t, n); after != before {
		t.Errorf("refused reviews wrote to the store: audit trail head %d -> %d", before, after)
	}
	head := trailHead(t, n)
	var passed node.Venue
	if st := callAs(t, hc, op, "POST", url+"/v1/venues/"+v.ID+"/review", map[string]string{"decision": "passed", "reason": "营业执照与现场核验一致"}, &passed); st != http.StatusOK || passed.State != node.VenuePassed || passed.Reviewed == nil || passed.Code == "" {
		t.Fatalf("pass: %d %+v", st, passed)
	}
	if a := sendJSON(t, hc, op, "POST", url+"/v1/venues/"+v.ID+"/review", map[string]string{"decision": "failed", "reason": "changed my mind"}); a.status != http.StatusConflict {
		t.Errorf("review twice: %d, want 409", a.status)
	}
	var failed node.Venue
	if st := callAs(t, hc, op, "POST", url+"/v1/venues/"+film.ID+"/review", map[string]string{"decision": "failed", "reason": "地址与执照不符 / the address does not match the licence"}, &failed); st != http.StatusOK || failed.State != node.VenueFailed || failed.Code != "" {
		t.Fatalf("fail: %d %+v", st, failed)
	}
	if got := trailHead(t, n); got != head+2 {
		t.Errorf("two reviews added %d trail entries, want 2", got-head)
	}
	if st := callAs(t, hc, manager, "GET", venues+"/"+film.ID, nil, &failed); st != http.StatusOK || failed.Reviewed == nil || !strings.Contains(failed.Reviewed.Reason, "licence") {
		t.Errorf("the manager reads why it failed: %d %+v", st, failed.Reviewed)
	}

	// The code: as text (it verifies), PNG and SVG, for the manager, the
	// operator and the auditor.
	for _, who := range []caller{manager, op, aud} {
		var text struct {
			Code string `json:"code"`
		}
		if st := callAs(t, hc, who, "GET", venues+"/"+v.ID+"/code", nil, &text); st != http.StatusOK || text.Code != passed.Code {
			t.Fatalf("%s reads the code: %d", who.name, st)
		}
	}
	// Verified against the national CA's trust list, as any province's
	// node will when a resident scans it.
	ts, err := f.PKI.CA.TrustStore()
	if err != nil {
		t.Fatal(err)
	}
	claims, _, err := exchange.VerifyVenueCode(ts, passed.Code, time.Now())
	if err != nil || claims.VID != v.ID || claims.Name != shop["name"] || claims.Iss != gd || claims.Cat != "mall" || claims.Div != "440106" {
		t.Fatalf("the venue code does not verify: %v %+v", err, claims)
	}
	png := send(t, hc, manager, "GET", venues+"/"+v.ID+"/code?format=png", "", nil)
	if png.status != http.StatusOK || png.header.Get("Content-Type") != "image/png" || !bytes.HasPrefix(png.body, []byte("\x89PNG\r\n\x1a\n")) || string(png.body[12:16]) != "IHDR" {
		t.Fatalf("PNG: %d %s %q", png.status, png.header.Get("Content-Type"), png.body[:min(16, len(png.body))])
	}
	if w, h := binary.BigEndian.Uint32(png.body[16:20]), binary.BigEndian.Uint32(png.body[20:24]); w != 512 || h != 512 {
		t.Errorf("PNG is %dx%d, want 512x512", w, h)
	}
	svg := send(t, hc, aud, "GET", venues+"/"+v.ID+"/code?format=svg", "", nil)
	if svg.status != http.StatusOK || svg.header.Get("Content-Type") != "image/svg+xml" || !bytes.HasPrefix(svg.body, []byte("<svg ")) || !bytes.Contains(svg.body, []byte(">天河城购物中心</text>")) {
		t.Fatalf("SVG: %d %s %.200s", svg.status, svg.header.Get("Content-Type"), svg.body)
	}
	if a := sendJSON(t, hc, manager, "GET", venues+"/"+v.ID+"/code?format=gif", nil); a.status != http.StatusBadRequest || a.field != "format" {
		t.Errorf("format=gif: %d %s", a.status, a.field)
	}
	if retired, err := n.VenueRetired(t.Context(), v.ID); err != nil || retired {
		t.Errorf("a passed venue: retired %v %v", retired, err)
	}

	// Retire: audited, a reason required; the code is no longer served
	// nor good for scans, and the venue may be applied for again.
	if a := sendJSON(t, hc, op, "POST", url+"/v1/venues/"+v.ID+"/retire", map[string]string{}); a.status != http.StatusBadRequest || a.field != "reason" {
		t.Errorf("retire without a reason: %d %s", a.status, a.field)
	}
	var retired node.Venue
	if st := callAs(t, hc, op, "POST", url+"/v1/venues/"+v.ID+"/retire", map[string]string{"reason": "名称有误，已重新申请 / wrong name, applied again"}, &retired); st != http.StatusOK || retired.State != node.VenueRetired || retired.Retired == nil {
		t.Fatalf("retire: %d %+v", st, retired)
	}
	if a := sendJSON(t, hc, op, "POST", url+"/v1/venues/"+v.ID+"/retire", map[string]string{"reason": "again"}); a.status != http.StatusConflict {
		t.Errorf("retire twice: %d", a.status)
	}
	if a := sendJSON(t, hc, manager, "GET", venues+"/"+v.ID+"/code?format=png", nil); a.status != http.StatusConflict || a.code != "venue_retired" {
		t.Errorf("the code of a retired venue: %d %s, want 409 venue_retired", a.status, a.code)
	}
	if r, err := n.VenueRetired(t.Context(), v.ID); err != nil || !r {
		t.Errorf("VenueRetired after retiring: %v %v", r, err)
	}
	if r, err := n.VenueRetired(t.Context(), "no-such-venue"); err != nil || !r {
		t.Errorf("VenueRetired of an unknown venue: %v %v, want true (refuse it)", r, err)
	}
	if st := callAs(t, hc, manager, "POST", venues, shop, &v); st != http.StatusCreated {
		t.Errorf("apply again after retiring: %d", st)
	}
}
