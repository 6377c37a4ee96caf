package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/node"
)

type exposedStatus struct {
	Status struct {
		Colour  hcx.Colour `json:"colour"`
		Reasons []struct {
			Code hcx.Reason `json:"code"`
		} `json:"reasons"`
	} `json:"status"`
}

// TestEndToEndVenueExposureAcrossProvinces is docs/walkthrough-venues.md:
// a Beijing manager applies for a venue code and a Beijing operator passes
// it; a Shanghai and a Guangdong resident scan it at their own nodes, a
// second Shanghai resident scanned it before the window; a Beijing operator
// marks the exposure. Within seconds the Shanghai resident is yellow for
// venue.exposure (Shanghai's rules) and a Sichuan checkpoint sees it; the
// Guangdong resident stays green (Guangdong's rules have no venue rule),
// and so does the one who scanned outside the window. Withdrawal turns the
// Shanghai resident green again.
func TestEndToEndVenueExposureAcrossProvinces(t *testing.T) {
	f := startTestFederation(t, 1)
	bj, sh, gd, sc := f.NodeURLs["110000"], f.NodeURLs["310000"], f.NodeURLs["440000"], f.NodeURLs["510000"]
	for _, u := range []string{bj, sh, gd, sc} {
		waitReady(t, u)
	}
	managerSub, manager := f.asResident(t, "110000", map[string]string{"doc_type": "CN-ID", "doc_number": cnID("11010519800101001"), "name": "周经理"})
	shSub, shRes := f.asResident(t, "310000", map[string]string{"doc_type": "CN-ID", "doc_number": cnID("31010419900202002"), "name": "陈一"})
	earlySub, early := f.asResident(t, "310000", map[string]string{"doc_type": "CN-ID", "doc_number": cnID("31010419910303003"), "name": "陈二"})
	gdSub, gdRes := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619920404004"), "name": "黄三"})

	// The venue goes the real way: applied for, passed at Beijing.
	var applied node.Venue
	if st := callAs(t, f.client(), manager, "POST", bj+"/v1/residents/"+string(managerSub)+"/venues",
		map[string]string{"name": "朝阳大悦城", "division": "110105", "category": "mall", "uscc": usccOf("9111010500000000")}, &applied); st != http.StatusCreated {
		t.Fatalf("apply: %d", st)
	}
	bjOp := f.asOperator(t, "110000")
	var passed node.Venue
	if st := callAs(t, f.client(), bjOp, "POST", bj+"/v1/venues/"+applied.ID+"/review",
		map[string]string{"decision": "passed", "reason": "licence checked"}, &passed); st != http.StatusOK || passed.Code == "" {
		t.Fatalf("pass: %d %+v", st, passed)
	}
	scan := func(url string, who caller, sub hcx.Subject, at *time.Time) {
		t.Helper()
		body := map[string]any{"code": passed.Code}
		if at != nil {
			body["at"] = at.Format(time.RFC3339Nano)
		}
		if st := callAs(t, f.client(), who, "POST", url+"/v1/residents/"+string(sub)+"/scans", body, nil); st != http.StatusOK {
			t.Fatalf("scan at %s: %d", url, st)
		}
	}
	// The early resident scanned 4 minutes ago (offline), before the window.
	before := time.Now().Add(-4 * time.Minute)
	scan(sh, early, earlySub, &before)
	from := time.Now().Add(-3 * time.Minute).Truncate(time.Second)
	scan(sh, shRes, shSub, nil)
	scan(gd, gdRes, gdSub, nil)
	to := time.Now().Add(30 * time.Second).Truncate(time.Second)

	// Bad markings: each a 4xx naming the field, none writing anything.
	bjNode := f.Nodes["110000"]
	seq := auditSeq(t, bjNode)
	shOp := f.asOperator(t, "310000")
	for _, c := range []struct {
		name   string
		url    string
		who    caller
		body   map[string]any
		status int
		field  string
	}{
		{"window in the future", bj, bjOp, map[string]any{"vid": applied.ID, "level": "high", "from": from, "to": time.Now().Add(time.Hour)}, 400, "to"},
		{"window longer than 14 days", bj, bjOp, map[string]any{"vid": applied.ID, "level": "high", "from": to.Add(-15 * 24 * time.Hour), "to": to}, 400, "to"},
		{"from not before to", bj, bjOp, map[string]any{"vid": applied.ID, "level": "high", "from": to, "to": from}, 400, "to"},
		{"from older than the scans kept", bj, bjOp, map[string]any{"vid": applied.ID, "level": "high", "from": time.Now().Add(-61 * 24 * time.Hour), "to": time.Now().Add(-60*24*time.Hour + time.Hour)}, 400, "from"},
		{"not a level", bj, bjOp, map[string]any{"vid": applied.ID, "level": "severe", "from": from, "to": to}, 400, "level"},
		{"unknown vid", bj, bjOp, map[string]any{"vid": "no-such-venue", "level": "high", "from": from, "to": to}, 404, "vid"},
		{"venue of another province", sh, shOp, map[string]any{"vid": applied.ID, "level": "high", "from": from, "to": to}, 404, "vid"},
	} {
		var e apiErrorField
		if st := callAs(t, f.client(), c.who, "POST", c.url+"/v1/exposures", c.body, &e); st != c.status || e.Error.Field != c.field {
			t.Errorf("%s: %d %+v, want %d naming %s", c.name, st, e, c.status, c.field)
		}
	}
	if got := auditSeq(t, bjNode); got != seq {
		t.Errorf("refused markings moved Beijing's audit trail from %d to %d", seq, got)
	}
	var list struct {
		Exposures []node.Exposure `json:"exposures"`
	}
	for _, u := range []string{bj, sh} {
		if st := callAs(t, f.client(), f.asOperator(t, hcx.ProvinceCode(map[string]string{bj: "110000", sh: "310000"}[u])), "GET", u+"/v1/exposures", nil, &list); st != http.StatusOK || len(list.Exposures) != 0 {
			t.Fatalf("exposures after refusals at %s: %d %+v", u, st, list.Exposures)
		}
	}

	// The marking.
	marked := time.Now()
	var x node.Exposure
	if st := callAs(t, f.client(), bjOp, "POST", bj+"/v1/exposures", map[string]any{"vid": applied.ID, "level": "medium", "from": from, "to": to}, &x); st != http.StatusCreated || x.Iss != "110000" || x.Div != "110105" {
		t.Fatalf("mark: %d %+v", st, x)
	}
	colour := func(url string, who caller, sub hcx.Subject) exposedStatus {
		t.Helper()
		var r exposedStatus
		if st := callAs(t, f.client(), who, "GET", url+"/v1/residents/"+string(sub), nil, &r); st != http.StatusOK {
			t.Fatalf("resident %s: %d", sub, st)
		}
		return r
	}
	for {
		r := colour(sh, shRes, shSub)
		if r.Status.Colour == hcx.Yellow {
			if len(r.Status.Reasons) == 0 || r.Status.Reasons[0].Code != "venue.exposure" {
				t.Errorf("reasons %+v, want Shanghai's venue.exposure", r.Status.Reasons)
			}
			break
		}
		if time.Since(marked) > 10*time.Second {
			t.Fatalf("the Shanghai resident is still %s 10 s after Beijing marked the exposure", r.Status.Colour)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("marking at Beijing to yellow at Shanghai: %v", time.Since(marked))
	var code struct {
		Code string `json:"code"`
	}
	if st := callAs(t, f.client(), shRes, "GET", sh+"/v1/residents/"+string(shSub)+"/code", nil, &code); st != http.StatusOK {
		t.Fatalf("code: %d", st)
	}
	verify := func() hcx.Colour {
		var v struct {
			Colour hcx.Colour `json:"colour"`
		}
		if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", sc+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK {
			t.Fatalf("verify at Sichuan: %d", st)
		}
		return v.Colour
	}
	for verify() != hcx.Yellow {
		if time.Since(marked) > 15*time.Second {
			t.Fatal("a Sichuan checkpoint does not see the Shanghai resident yellow")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Guangdong holds the exposure too, and its resident's history has it,
	// but Guangdong's rules decide: green.
	for {
		if st := callAs(t, f.client(), f.asOperator(t, "440000"), "GET", gd+"/v1/exposures?iss=110000", nil, &list); st != http.StatusOK {
			t.Fatalf("exposures at Guangdong: %d", st)
		}
		if len(list.Exposures) == 1 && f.Nodes["440000"].PendingExposureJobs() == 0 {
			break
		}
		if time.Since(marked) > 10*time.Second {
			t.Fatalf("Guangdong has not matched the exposure: %+v", list.Exposures)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := colour(gd, gdRes, gdSub); r.Status.Colour != hcx.Green {
		t.Errorf("the Guangdong resident is %s; Guangdong's rules have no venue rule", r.Status.Colour)
	}
	if r := colour(sh, early, earlySub); r.Status.Colour != hcx.Green {
		t.Errorf("the resident who scanned before the window is %s", r.Status.Colour)
	}

	// Withdrawal: green again, at Shanghai and at the Sichuan checkpoint.
	withdrawn := time.Now()
	if st := callAs(t, f.client(), bjOp, "POST", bj+"/v1/exposures/withdraw", map[string]any{"vid": applied.ID, "from": from, "to": to}, &x); st != http.StatusOK || !x.Withdrawn {
		t.Fatalf("withdraw: %d %+v", st, x)
	}
	for {
		// The resident shows their code as it is now.
		if colour(sh, shRes, shSub).Status.Colour == hcx.Green &&
			callAs(t, f.client(), shRes, "GET", sh+"/v1/residents/"+string(shSub)+"/code", nil, &code) == http.StatusOK && verify() == hcx.Green {
			break
		}
		if time.Since(withdrawn) > 15*time.Second {
			callAs(t, f.client(), shOp, "GET", sh+"/v1/exposures", nil, &list)
			t.Fatalf("the Shanghai resident is not green again after the withdrawal: %s %+v, verify %s; Shanghai holds %+v", colour(sh, shRes, shSub).Status.Colour, colour(sh, shRes, shSub).Status.Reasons, verify(), list.Exposures)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("withdrawal at Beijing to green at a Sichuan checkpoint: %v", time.Since(withdrawn))
	var e apiErrorField
	if st := callAs(t, f.client(), bjOp, "POST", bj+"/v1/exposures/withdraw", map[string]any{"vid": applied.ID, "from": from, "to": to.Add(time.Hour)}, &e); st != http.StatusNotFound || e.Error.Field != "vid" {
		t.Errorf("withdrawing an exposure never marked: %d %+v", st, e)
	}
}
