package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

var chinaTime = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// statusAnswer is the part of a node's status the declaration tests read.
type statusAnswer struct {
	Colour  hcx.Colour `json:"colour"`
	Release []string   `json:"release"`
	CheckIn *struct {
		Due bool   `json:"due"`
		EN  string `json:"en"`
	} `json:"checkin"`
}

// TestDeclaredOnceCountsEverywhere: a Guangdong resident declares a fever
// with a cough over HTTP and turns yellow by Guangdong's rules; the
// attestation reaches the hub, carrying the colour and no declaration; a
// Sichuan checkpoint sees yellow. Then the daily check-in is due, made once,
// and refused the second time.
func TestDeclaredOnceCountsEverywhere(t *testing.T) {
	f := startTestFederation(t, 1)
	gd, sc := f.NodeURLs["440000"], f.NodeURLs["510000"]
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619900307004"), "name": "李四"})
	var code struct {
		Code   string     `json:"code"`
		Colour hcx.Colour `json:"colour"`
	}
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK || code.Colour != hcx.Green {
		t.Fatalf("code: status %d colour %q, want 200 green", st, code.Colour)
	}
	waitReady(t, sc)

	// Green: no check-in to make.
	a := send(t, f.client(), resident, "POST", gd+"/v1/residents/"+string(sub)+"/checkins", `{"temp_c":36.6}`, nil)
	if a.status != http.StatusConflict || a.code != "nothing_to_check_in" {
		t.Errorf("check-in while green: %d %s, want 409 nothing_to_check_in", a.status, a.code)
	}

	var st statusAnswer
	if s := callAs(t, f.client(), resident, "POST", gd+"/v1/residents/"+string(sub)+"/declarations",
		map[string]any{"temp_c": 38.6, "symptoms": []string{"fever", "cough"}}, &st); s != http.StatusOK {
		t.Fatalf("declare: status %d", s)
	}
	if st.Colour != hcx.Yellow || st.CheckIn == nil || !st.CheckIn.Due {
		t.Fatalf("after declaring a fever and a cough: %+v, want yellow with a check-in due", st)
	}
	posted := time.Now()

	// A Sichuan checkpoint sees Guangdong's yellow, through the hub.
	var v struct {
		Colour hcx.Colour `json:"colour"`
		Issuer string     `json:"issuer"`
	}
	for {
		if s := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": code.Code}, &v); s != http.StatusOK {
			t.Fatalf("verify at Sichuan: status %d", s)
		}
		if v.Colour == hcx.Yellow {
			break
		}
		if time.Since(posted) > 5*time.Second {
			t.Fatalf("verify at Sichuan still answers %q 5 s after the declaration", v.Colour)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("declaration at Guangdong to yellow at Sichuan: %v", time.Since(posted))

	// What the hub holds about the resident: a colour, reasons, a policy
	// version and times, never the declaration.
	hubFeed := f.asMachine("province-440000", f.PKI.Provinces["440000"])
	a = send(t, f.client(), hubFeed, "GET", f.HubURLs[0]+"/v1/subjects/"+string(sub), "", nil)
	if a.status != http.StatusOK {
		t.Fatalf("hub subject: %d", a.status)
	}
	body := string(a.body)
	if !strings.Contains(body, `"yellow"`) || !strings.Contains(body, "declaration.fever") {
		t.Errorf("the hub holds no yellow attestation for the declaration: %s", body)
	}
	for _, secret := range []string{"cough", "38.6", "temp", "symptom"} {
		if strings.Contains(body, secret) {
			t.Errorf("the hub's answer carries %q: %s", secret, body)
		}
	}
	var ans exchange.SubjectAnswer
	callAs(t, f.client(), hubFeed, "GET", f.HubURLs[0]+"/v1/subjects/"+string(sub), nil, &ans)
	if n := len(ans.Attestations); n == 0 || ans.Attestations[n-1].PolicyV == "" {
		t.Errorf("hub attestations = %+v, want the latest with its policy version", ans.Attestations)
	}

	// The daily check-in: once; the same again is a retry, another a 409.
	if s := callAs(t, f.client(), resident, "POST", gd+"/v1/residents/"+string(sub)+"/checkins", map[string]any{"temp_c": 37.8, "symptoms": []string{"cough"}}, &st); s != http.StatusOK {
		t.Fatalf("check-in: status %d", s)
	}
	if st.CheckIn == nil || st.CheckIn.Due {
		t.Errorf("after checking in: %+v, want done", st.CheckIn)
	}
	if s := callAs(t, f.client(), resident, "POST", gd+"/v1/residents/"+string(sub)+"/checkins", map[string]any{"temp_c": 37.8, "symptoms": []string{"cough"}}, nil); s != http.StatusOK {
		t.Errorf("the same check-in again: status %d, want 200", s)
	}
	a = send(t, f.client(), resident, "POST", gd+"/v1/residents/"+string(sub)+"/checkins", `{"temp_c":36.5}`, nil)
	if a.status != http.StatusConflict || a.code != "checked_in_today" {
		t.Errorf("a second check-in today: %d %s, want 409 checked_in_today", a.status, a.code)
	}
}

// TestGuardianDeclaresForADependant: a guardian declares and checks in
// for a dependant; the province's operator and the auditor read the
// declarations; another resident can do none of it.
func TestGuardianDeclaresForADependant(t *testing.T) {
	f := startTestFederation(t, 1)
	gd := f.NodeURLs["440000"]
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	parentSub, parent := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619850202202"), "name": "王大"})
	child := f.dependantOf(t, "440000", parentSub, parent, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010620180101101"), "name": "王小"})
	_, stranger := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619750303303"), "name": "赵五"})
	decl := gd + "/v1/residents/" + string(child) + "/declarations"
	today := time.Now().In(chinaTime).Format("2006-01-02")
	var st statusAnswer
	if s := callAs(t, f.client(), parent, "POST", decl, map[string]any{"temp_c": 38.1, "symptoms": []string{"sore-throat"},
		"travel": []map[string]string{{"div": "510104", "date": today}}}, &st); s != http.StatusOK || st.Colour != hcx.Yellow {
		t.Fatalf("the guardian declares for the child: status %d colour %q, want 200 yellow", s, st.Colour)
	}
	if s := callAs(t, f.client(), parent, "POST", gd+"/v1/residents/"+string(child)+"/checkins", map[string]any{"temp_c": 37.6}, &st); s != http.StatusOK || st.CheckIn == nil || st.CheckIn.Due {
		t.Errorf("the guardian checks in for the child: status %d, %+v", s, st.CheckIn)
	}
	var list struct {
		Health []struct {
			TempC float64 `json:"temp_c"`
		} `json:"health"`
		Travel []struct {
			Div  string `json:"div"`
			Date string `json:"date"`
		} `json:"travel"`
		CheckIns []struct {
			TempC float64 `json:"temp_c"`
		} `json:"checkins"`
	}
	for _, who := range []caller{parent, f.asOperator(t, "440000"), f.asPerson(t, "auditor")} {
		if s := callAs(t, f.client(), who, "GET", decl, nil, &list); s != http.StatusOK {
			t.Errorf("%s reads the declarations: status %d", who.name, s)
			continue
		}
		if len(list.Health) != 1 || list.Health[0].TempC != 38.1 || len(list.Travel) != 1 || list.Travel[0].Date != today || len(list.CheckIns) != 1 {
			t.Errorf("%s reads %+v", who.name, list)
		}
	}
	for _, c := range []struct{ method, body string }{{"POST", `{"temp_c":36.5}`}, {"GET", ""}} {
		if a := send(t, f.client(), stranger, c.method, decl, c.body, nil); a.status != http.StatusForbidden || a.code != "not_yours" {
			t.Errorf("a stranger %s the child's declarations: %d %s, want 403 not_yours", c.method, a.status, a.code)
		}
	}
}

// TestBadDeclarationsOverHTTP: every bad declaration is a 400 naming the
// field, and the node's store is as it was.
func TestBadDeclarationsOverHTTP(t *testing.T) {
	f := startTestFederation(t, 1)
	gd := f.NodeURLs["440000"]
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619900505505"), "name": "孙六"})
	otherSub, _ := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619910606606"), "name": "周七"})
	now := time.Now().In(chinaTime)
	date := func(days int) string { return now.AddDate(0, 0, days).Format("2006-01-02") }
	url := gd + "/v1/residents/" + string(sub) + "/declarations"
	cases := []struct{ name, body, field string }{
		{"unknown symptom", `{"symptoms":["sneezing"]}`, "symptoms[0]"},
		{"50 °C", `{"temp_c":50}`, "temp_c"},
		{"future date", `{"travel":[{"div":"440106","date":"` + date(1) + `"}]}`, "travel[0].date"},
		{"ancient date", `{"travel":[{"div":"440106","date":"` + date(-400) + `"}]}`, "travel[0].date"},
		{"too many symptoms", `{"symptoms":["cough"` + strings.Repeat(`,"cough"`, 16) + `]}`, "symptoms"},
		{"unknown division", `{"travel":[{"div":"449999","date":"` + date(-1) + `"}]}`, "travel[0].div"},
		{"unknown member", `{"temp_c":38.5,"diagnosis":"flu"}`, "diagnosis"},
		{"nothing declared", `{}`, "declaration"},
	}
	waitSettled(t, f)
	before := auditSeq(t, f.Nodes["440000"])
	for _, c := range cases {
		a := send(t, f.client(), resident, "POST", url, c.body, nil)
		if a.status != http.StatusBadRequest || a.field != c.field {
			t.Errorf("%s: %d %s field %q, want 400 naming %s (%s)", c.name, a.status, a.code, a.field, c.field, a.body)
		}
	}
	// Another resident's subject: refused before anything is read.
	other := gd + "/v1/residents/" + string(otherSub) + "/declarations"
	if a := send(t, f.client(), resident, "POST", other, `{"temp_c":38.5}`, nil); a.status != http.StatusForbidden || a.code != "not_yours" {
		t.Errorf("declaring for another resident: %d %s, want 403 not_yours", a.status, a.code)
	}
	if after := auditSeq(t, f.Nodes["440000"]); after != before {
		t.Errorf("refused declarations wrote to the store: audit trail head %d -> %d", before, after)
	}
}
