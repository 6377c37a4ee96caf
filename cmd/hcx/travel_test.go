package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// TestEndToEndSichuanRiskAreaTurnsAGuangdongTravellerYellow: 510000's
// operator designates 510104 high risk at Sichuan's node; a Guangdong
// resident whose telecom itinerary shows 510104 inside the window turns
// yellow at Guangdong's node (Guangdong's rules) within seconds, and a
// checkpoint in another province sees it; stays before from or after to do
// not count; the code answer lists the cities of the last 14 days.
func TestEndToEndSichuanRiskAreaTurnsAGuangdongTravellerYellow(t *testing.T) {
	f := startTestFederation(t, 1)
	gd, sc, sh := f.NodeURLs["440000"], f.NodeURLs["510000"], f.NodeURLs["310000"]
	traveller, resident := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "440106199003070028", "name": "张三"})
	other, _ := f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619850101123"), "name": "李四"})
	for _, u := range []string{gd, sc, sh} {
		waitReady(t, u)
	}
	var code struct {
		Code   string     `json:"code"`
		Colour hcx.Colour `json:"colour"`
	}
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(traveller)+"/code", nil, &code); st != http.StatusOK || code.Colour != hcx.Green {
		t.Fatalf("code: status %d colour %q", st, code.Colour)
	}

	now := time.Now()
	date := func(daysAgo int) string { return now.In(shanghaiTZ).AddDate(0, 0, -daysAgo).Format(time.DateOnly) }
	feed := f.asFeed("440000")
	post := func(sub hcx.Subject, body any) (int, apiErrorField) {
		var e apiErrorField
		st := callAs(t, f.client(), feed, "POST", gd+"/v1/residents/"+string(sub)+"/itinerary", body, &e)
		return st, e
	}
	// The traveller: Chengdu's Jinjiang district (510104) 3 days ago, and
	// Guangzhou. The other resident: 510104 8 days ago (before from) and
	// 510107 3 days ago (after 510107's designation ended).
	if st, e := post(traveller, map[string]any{"days": []map[string]any{{"date": date(3), "divs": []string{"510104", "440106"}}}}); st != http.StatusOK {
		t.Fatalf("itinerary: %d %+v", st, e)
	}
	if st, e := post(other, map[string]any{"days": []map[string]any{{"date": date(8), "divs": []string{"510104"}}, {"date": date(3), "divs": []string{"510107"}}}}); st != http.StatusOK {
		t.Fatalf("itinerary: %d %+v", st, e)
	}
	// Bad itineraries: 400 naming the field.
	for _, c := range []struct {
		body  string
		field string
	}{
		{`{"days":[{"date":"` + date(1) + `","divs":["519999"]}]}`, "days[0].divs[0]"},
		{`{"days":[{"date":"` + date(-2) + `","divs":["510104"]}]}`, "days[0].date"},
		{`{"days":[{"date":"` + date(400) + `","divs":["510104"]}]}`, "days[0].date"},
		{`{"days":[],"extra":1}`, "extra"},
	} {
		if st, e := post(traveller, c.body); st != http.StatusBadRequest || e.Error.Field != c.field {
			t.Errorf("itinerary %s: %d %+v, want 400 naming %s", c.body, st, e, c.field)
		}
	}

	op := f.asOperator(t, "510000")
	areas := map[string]any{"areas": []map[string]any{
		{"div": "510104", "level": "high", "from": now.Add(-5 * 24 * time.Hour).Format(time.RFC3339)},
		{"div": "510107", "level": "medium", "from": now.Add(-10 * 24 * time.Hour).Format(time.RFC3339), "to": now.Add(-6 * 24 * time.Hour).Format(time.RFC3339)},
	}}
	var e apiErrorField
	if st := callAs(t, f.client(), op, "POST", sc+"/v1/risk-areas", map[string]any{"areas": []map[string]any{{"div": "440106", "level": "high", "from": now.Format(time.RFC3339)}}}, &e); st != http.StatusBadRequest || e.Error.Field != "areas[0].div" {
		t.Fatalf("Sichuan designating a Guangdong district: %d %+v", st, e)
	}
	designated := time.Now()
	if st := callAs(t, f.client(), op, "POST", sc+"/v1/risk-areas", areas, &e); st != http.StatusCreated {
		t.Fatalf("designate: %d %+v", st, e)
	}
	for {
		var r struct {
			Status struct {
				Colour  hcx.Colour `json:"colour"`
				Reasons []struct {
					Code hcx.Reason `json:"code"`
				} `json:"reasons"`
			} `json:"status"`
		}
		if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(traveller), nil, &r); st != http.StatusOK {
			t.Fatalf("resident: %d", st)
		}
		if r.Status.Colour == hcx.Yellow {
			if len(r.Status.Reasons) == 0 || r.Status.Reasons[0].Code != "travel.high-risk-area" {
				t.Errorf("reasons %+v, want Guangdong's travel.high-risk-area", r.Status.Reasons)
			}
			break
		}
		if time.Since(designated) > 10*time.Second {
			t.Fatalf("the traveller is still %s at Guangdong 10 s after Sichuan designated 510104", r.Status.Colour)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("designation at Sichuan to yellow at Guangdong: %v", time.Since(designated))
	// A checkpoint in Shanghai sees it, through Guangdong's attestation.
	for {
		var v struct {
			Colour hcx.Colour `json:"colour"`
		}
		if st := callAs(t, f.client(), f.asCheckpoint("310000"), "POST", sh+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK {
			t.Fatalf("verify at Shanghai: %d", st)
		}
		if v.Colour == hcx.Yellow {
			break
		}
		if time.Since(designated) > 15*time.Second {
			t.Fatalf("a Shanghai checkpoint still sees %s", v.Colour)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("designation at Sichuan to yellow at a Shanghai checkpoint: %v", time.Since(designated))

	// The other resident's stays were before from and after to.
	var r struct {
		Status struct {
			Colour hcx.Colour `json:"colour"`
		} `json:"status"`
	}
	if st := callAs(t, f.client(), f.asOperator(t, "440000"), "GET", gd+"/v1/residents/"+string(other), nil, &r); st != http.StatusOK || r.Status.Colour != hcx.Green {
		t.Fatalf("resident with stays outside the windows: %d %s, want green", st, r.Status.Colour)
	}

	// Two codes in one: the cities beside the colour.
	var c struct {
		Colour hcx.Colour `json:"colour"`
		Cities []struct {
			Div  string `json:"div"`
			Name string `json:"name"`
			Risk string `json:"risk"`
		} `json:"cities"`
	}
	if st := callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(traveller)+"/code", nil, &c); st != http.StatusOK || c.Colour != hcx.Yellow {
		t.Fatalf("code: %d %s", st, c.Colour)
	}
	if len(c.Cities) != 2 || c.Cities[0].Name == "" || c.Cities[1].Name == "" ||
		!(c.Cities[0].Div == "510100" && c.Cities[1].Div == "440100" || c.Cities[0].Div == "440100" && c.Cities[1].Div == "510100") {
		t.Fatalf("cities %+v, want 成都市 and 广州市", c.Cities)
	}
	for _, city := range c.Cities {
		if want := map[string]string{"510100": "high", "440100": ""}[city.Div]; city.Risk != want {
			t.Errorf("city %s shows risk %q, want %q", city.Div, city.Risk, want)
		}
	}

	// Every node lists every province's areas, anyone may read them.
	var list struct {
		Areas []struct {
			Iss   string `json:"iss"`
			Div   string `json:"div"`
			Level string `json:"level"`
		} `json:"areas"`
	}
	if st := callAs(t, f.client(), anonymous, "GET", gd+"/v1/risk-areas?iss=510000&in_force=true", nil, &list); st != http.StatusOK || len(list.Areas) != 1 || list.Areas[0].Div != "510104" {
		t.Fatalf("areas in force at Guangdong: %d %+v", st, list.Areas)
	}
	// Ending the designation before the stay turns the traveller green again.
	end := map[string]string{"div": "510104", "from": now.Add(-5 * 24 * time.Hour).Format(time.RFC3339), "to": now.Add(-4 * 24 * time.Hour).Format(time.RFC3339)}
	if st := callAs(t, f.client(), op, "POST", sc+"/v1/risk-areas/end", end, &e); st != http.StatusOK {
		t.Fatalf("end: %d %+v", st, e)
	}
	ended := time.Now()
	for {
		var r struct {
			Status struct {
				Colour hcx.Colour `json:"colour"`
			} `json:"status"`
		}
		callAs(t, f.client(), resident, "GET", gd+"/v1/residents/"+string(traveller), nil, &r)
		if r.Status.Colour == hcx.Green {
			break
		}
		if time.Since(ended) > 10*time.Second {
			t.Fatalf("the traveller is still %s 10 s after the area's end moved before the stay", r.Status.Colour)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type apiErrorField struct {
	Error struct {
		Code    string `json:"code"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"error"`
}

var shanghaiTZ = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// cnID completes a 17-digit ID number with its check digit.
