package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// Issue 10 item 1, the Tianjin proxy rules, each through the HTTP API with
// real credentials: residents with session cookies from enrolment codes, an
// operator and the auditor with OIDC ID tokens.

// dependantOf registers reg as a dependant of the guardian (a resident of
// province p with the session guardian) the way a parent does, through
// POST /v1/residents/{guardian}/dependants, and returns the dependant's
// subject. Under the Tianjin rules this is how a test gets a guardian: an
// operator's delegation (POST …/guardians) is refused for a resident who
// logged in themselves (asResident), 409 self_registered.
func (f *federation) dependantOf(t testing.TB, p hcx.ProvinceCode, guardianSub hcx.Subject, guardian caller, reg map[string]string) hcx.Subject {
	t.Helper()
	if reg["relation"] == "" {
		reg["relation"] = "child"
	}
	var dep struct {
		Dependant hcx.Subject `json:"dependant"`
	}
	if st := callAs(t, f.client(), guardian, "POST", f.NodeURLs[p]+"/v1/residents/"+string(guardianSub)+"/dependants", reg, &dep); st != http.StatusCreated || dep.Dependant == "" {
		t.Fatalf("register a dependant at %s: status %d", p, st)
	}
	return dep.Dependant
}

// trailEntry is an audit entry as GET /v1/audit shows it.
type trailEntry struct {
	Seq     uint64      `json:"seq"`
	Actor   string      `json:"actor"`
	Action  string      `json:"action"`
	Subject hcx.Subject `json:"subject"`
	Note    string      `json:"note"`
}

// trailAfter reads a node's audit trail after seq as the auditor.
func trailAfter(t *testing.T, f *federation, url string, seq uint64) (entries []trailEntry, head uint64) {
	t.Helper()
	for {
		var page struct {
			Entries []trailEntry `json:"entries"`
			Head    struct {
				Seq uint64 `json:"seq"`
			} `json:"head"`
			More bool `json:"more"`
		}
		if st := callAs(t, f.client(), f.asPerson(t, "auditor"), "GET", fmt.Sprintf("%s/v1/audit?after=%d&limit=1000", url, seq), nil, &page); st != http.StatusOK {
			t.Fatalf("read the audit trail: status %d", st)
		}
		entries = append(entries, page.Entries...)
		if len(page.Entries) > 0 {
			seq = page.Entries[len(page.Entries)-1].Seq
		}
		if !page.More {
			return entries, page.Head.Seq
		}
	}
}

// jsonText is v as JSON text (a string is sent as it is).
func jsonText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// codeClaims reads a health code's claims (its signature is checked by the
// verify tests).
func codeClaims(t *testing.T, qr string) exchange.CodeClaims {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(qr, exchange.CodePrefix), ".")
	if len(parts) != 3 {
		t.Fatalf("code %q is not a compact JWS", qr)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c exchange.CodeClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func cnID(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }

func TestProxyTianjinRules(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	url := f.NodeURLs[gd]
	hc := f.client()
	op := f.asOperator(t, gd)

	// Five would-be guardians, each logged in with their own identity.
	subs := make([]hcx.Subject, 5)
	as := make([]caller, 5)
	for i := range subs {
		subs[i], as[i] = f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID(fmt.Sprintf("44010619800101%d10", i+1)), "name": "王大" + string(rune('一'+i))})
	}
	childDoc := cnID("44010620180606606")
	child := map[string]string{"doc_type": "CN-ID", "doc_number": childDoc, "name": "王小明", "relation": "child"}
	deps := func(g hcx.Subject) string { return url + "/v1/residents/" + string(g) + "/dependants" }
	head := func() uint64 { _, h := trailAfter(t, f, url, 1<<62); return h }

	// The trail's seq before each step.
	var childSub hcx.Subject
	t.Run("a guardian registers a dependant", func(t *testing.T) {
		before := head()
		var got struct {
			Dependant  hcx.Subject `json:"dependant"`
			Guardian   hcx.Subject `json:"guardian"`
			Relation   string      `json:"relation"`
			Registered bool        `json:"registered"`
		}
		if st := callAs(t, hc, as[0], "POST", deps(subs[0]), child, &got); st != http.StatusCreated || !got.Registered || got.Guardian != subs[0] || got.Relation != "child" {
			t.Fatalf("register the child: %d %+v", st, got)
		}
		childSub = got.Dependant
		entries, _ := trailAfter(t, f, url, before)
		if len(entries) != 1 || entries[0].Action != "dependant.register" || entries[0].Actor != "resident:"+string(subs[0]) || entries[0].Subject != childSub {
			t.Fatalf("trail = %+v, want one dependant.register by the guardian about the child", entries)
		}
		b, _ := json.Marshal(entries)
		if strings.Contains(string(b), childDoc) || strings.Contains(string(b), "小明") {
			t.Errorf("the trail carries the child's identity: %s", b)
		}
	})

	t.Run("the guardian sees the dependant's colour and mark and code", func(t *testing.T) {
		var r struct {
			Name   string `json:"name"`
			Status struct {
				Colour     hcx.Colour `json:"colour"`
				Vaccinated *bool      `json:"vaccinated"`
			} `json:"status"`
		}
		if st := callAs(t, hc, as[0], "GET", url+"/v1/residents/"+string(childSub), nil, &r); st != http.StatusOK || r.Name != "王*" || r.Status.Colour != hcx.Green || r.Status.Vaccinated == nil {
			t.Fatalf("the guardian reads the child: %d %+v", st, r)
		}
		var code struct {
			QR     string     `json:"code"`
			Colour hcx.Colour `json:"colour"`
		}
		if st := callAs(t, hc, as[0], "GET", url+"/v1/residents/"+string(childSub)+"/code", nil, &code); st != http.StatusOK || code.Colour != hcx.Green {
			t.Fatalf("the guardian fetches the child's code: %d %+v", st, code)
		}
		if c := codeClaims(t, code.QR); c.Sub != childSub || c.Name != "王*" || c.IDTail != childDoc[14:] {
			t.Errorf("the child's code claims %+v", c)
		}
		// Another resident does not.
		if st := callAs(t, hc, as[4], "GET", url+"/v1/residents/"+string(childSub)+"/code", nil, nil); st != http.StatusForbidden {
			t.Errorf("a stranger fetches the child's code: %d", st)
		}
	})

	t.Run("the guardian switches the person shown", func(t *testing.T) {
		var me struct {
			Subject    hcx.Subject `json:"subject"`
			Name       string      `json:"name"`
			Dependants []struct {
				Subject    hcx.Subject `json:"subject"`
				Name       string      `json:"name"`
				IDTail     string      `json:"id_tail"`
				Colour     hcx.Colour  `json:"colour"`
				Vaccinated bool        `json:"vaccinated"`
			} `json:"dependants"`
		}
		if st := callAs(t, hc, as[0], "GET", url+"/v1/me", nil, &me); st != http.StatusOK || me.Subject != subs[0] || me.Name != "王*" {
			t.Fatalf("GET /v1/me: %d %+v", st, me)
		}
		if len(me.Dependants) != 1 || me.Dependants[0].Subject != childSub || me.Dependants[0].Name != "王*" || me.Dependants[0].IDTail != childDoc[14:] || me.Dependants[0].Colour != hcx.Green {
			t.Fatalf("the dependants to switch to: %+v", me.Dependants)
		}
	})

	t.Run("a second guardian with the same name holds the dependant too", func(t *testing.T) {
		var got struct {
			Dependant  hcx.Subject `json:"dependant"`
			Registered bool        `json:"registered"`
		}
		if st := callAs(t, hc, as[1], "POST", deps(subs[1]), child, &got); st != http.StatusCreated || got.Dependant != childSub || got.Registered {
			t.Fatalf("the second parent: %d %+v", st, got)
		}
		if st := callAs(t, hc, as[1], "GET", url+"/v1/residents/"+string(childSub)+"/code", nil, nil); st != http.StatusOK {
			t.Errorf("the second parent fetches the code: %d", st)
		}
	})

	t.Run("refused, nothing written", func(t *testing.T) {
		other := map[string]string{"doc_type": "CN-ID", "doc_number": childDoc, "name": "王小红", "relation": "child"}
		own := map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619800101310"), "name": "王大丂", "relation": "child"}
		for _, c := range []struct {
			what        string
			who         caller
			url         string
			body        any
			status      int
			code, field string
		}{
			{"another name", as[2], deps(subs[2]), other, 409, "name_mismatch", "name"},
			{"again", as[0], deps(subs[0]), child, 409, "already_guardian", "doc_number"},
			{"their own document", as[2], deps(subs[2]), own, 400, "invalid_doc_number", "doc_number"},
			{"no relation", as[2], deps(subs[2]), map[string]string{"doc_type": "CN-ID", "doc_number": childDoc, "name": "王小明"}, 400, "invalid_relation", "relation"},
			{"an unknown relation", as[2], deps(subs[2]), map[string]string{"doc_type": "CN-ID", "doc_number": childDoc, "name": "王小明", "relation": "owner"}, 400, "invalid_relation", "relation"},
			{"a bad document", as[2], deps(subs[2]), map[string]string{"doc_type": "CN-ID", "doc_number": "440106201806066060", "name": "王小明", "relation": "child"}, 400, "invalid_doc_number", "doc_number"},
			{"an unknown member", as[2], deps(subs[2]), `{"doc_type":"CN-ID","doc_number":"` + childDoc + `","name":"王小明","relation":"child","sub":"x"}`, 400, "", "sub"},
		} {
			before := head()
			a := send(t, hc, c.who, "POST", c.url, jsonText(c.body), nil)
			if a.status != c.status || (c.code != "" && a.code != c.code) || a.field != c.field {
				t.Errorf("%s: %d %s %s, want %d %s %s", c.what, a.status, a.code, a.field, c.status, c.code, c.field)
			}
			if after := head(); after != before {
				t.Errorf("%s wrote %d trail entries", c.what, after-before)
			}
		}
		// A guardian registers dependants for themselves only: not for their dependant, not for another resident.
		for _, target := range []hcx.Subject{childSub, subs[3]} {
			if st := callAs(t, hc, as[0], "POST", deps(target), child, nil); st != http.StatusForbidden {
				t.Errorf("register a dependant on %s's behalf: %d, want 403", target, st)
			}
		}
	})

	t.Run("at most four guardians", func(t *testing.T) {
		for _, i := range []int{2, 3} {
			if st := callAs(t, hc, as[i], "POST", deps(subs[i]), child, nil); st != http.StatusCreated {
				t.Fatalf("guardian %d: %d", i+1, st)
			}
		}
		before := head()
		if a := send(t, hc, as[4], "POST", deps(subs[4]), jsonText(child), nil); a.status != http.StatusConflict || a.code != "too_many_guardians" || a.field != "doc_number" {
			t.Errorf("the fifth guardian: %d %s", a.status, a.body)
		}
		if after := head(); after != before {
			t.Errorf("the fifth guardian wrote %d trail entries", after-before)
		}
		if st := callAs(t, hc, as[4], "GET", url+"/v1/residents/"+string(childSub), nil, nil); st != http.StatusForbidden {
			t.Errorf("the fifth guardian reads the child: %d", st)
		}
	})

	t.Run("a guardian ends their own delegation, not another's", func(t *testing.T) {
		if st := callAs(t, hc, as[3], "DELETE", deps(subs[2])+"/"+string(childSub), nil, nil); st != http.StatusForbidden {
			t.Errorf("guardian 4 ends guardian 3's delegation: %d", st)
		}
		before := head()
		if st := callAs(t, hc, as[3], "DELETE", deps(subs[3])+"/"+string(childSub), nil, nil); st != http.StatusOK {
			t.Fatalf("guardian 4 ends their delegation: %d", st)
		}
		entries, _ := trailAfter(t, f, url, before)
		if len(entries) != 1 || entries[0].Action != "guardian.remove" || entries[0].Actor != "resident:"+string(subs[3]) || entries[0].Subject != childSub {
			t.Errorf("trail = %+v", entries)
		}
		if st := callAs(t, hc, as[3], "GET", url+"/v1/residents/"+string(childSub)+"/code", nil, nil); st != http.StatusForbidden {
			t.Errorf("guardian 4 fetches the code after ending: %d", st)
		}
		if a := send(t, hc, as[3], "DELETE", deps(subs[3])+"/"+string(childSub), "", nil); a.status != http.StatusNotFound || a.code != "no_delegation" {
			t.Errorf("ending again: %d %s", a.status, a.body)
		}
	})

	t.Run("the dependant registers themselves: every delegation ends, for good", func(t *testing.T) {
		before := head()
		// The child, grown up, is checked in person and logs in with their code.
		_, asChild := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": childDoc, "name": "王小明"})
		entries, _ := trailAfter(t, f, url, before)
		ended := map[string]bool{}
		for _, e := range entries {
			if e.Action == "guardian.remove" {
				if e.Actor != "resident:"+string(childSub) || e.Subject != childSub {
					t.Errorf("ending entry %+v", e)
				}
				ended[e.Note[len("guardian "):len("guardian ")+len(childSub)]] = true
			}
		}
		if len(ended) != 3 || !ended[string(subs[0])] || !ended[string(subs[1])] || !ended[string(subs[2])] {
			t.Errorf("delegations ended: %v (trail %+v), want guardians 1-3", ended, entries)
		}
		for i := 0; i < 3; i++ {
			if st := callAs(t, hc, as[i], "GET", url+"/v1/residents/"+string(childSub)+"/code", nil, nil); st != http.StatusForbidden {
				t.Errorf("guardian %d fetches the code after self-registration: %d", i+1, st)
			}
		}
		if st := callAs(t, hc, asChild, "GET", url+"/v1/residents/"+string(childSub)+"/code", nil, nil); st != http.StatusOK {
			t.Errorf("the child fetches their own code: %d", st)
		}
		var me struct {
			Dependants []json.RawMessage `json:"dependants"`
		}
		if st := callAs(t, hc, as[0], "GET", url+"/v1/me", nil, &me); st != http.StatusOK || len(me.Dependants) != 0 {
			t.Errorf("the former guardian's dependants: %d %s", st, me.Dependants)
		}
		// Nobody holds them again: not by proxy registration, not by an operator.
		before = head()
		if a := send(t, hc, as[4], "POST", deps(subs[4]), jsonText(child), nil); a.status != http.StatusConflict || a.code != "self_registered" || a.field != "doc_number" {
			t.Errorf("proxy registration after self-registration: %d %s", a.status, a.body)
		}
		if a := send(t, hc, op, "POST", url+"/v1/residents/"+string(childSub)+"/guardians", `{"guardian":"`+string(subs[0])+`"}`, nil); a.status != http.StatusConflict || a.code != "self_registered" || a.field != "guardian" {
			t.Errorf("operator AddGuardian after self-registration: %d %s", a.status, a.body)
		}
		if after := head(); after != before {
			t.Errorf("the refusals wrote %d trail entries", after-before)
		}
	})
}

// Issue 10 item 8: passports, Hong Kong / Macau and Taiwan permits and
// permanent residence IDs are registered, coded and verified end to end;
// the code and the checkpoint show one letter of a Latin name.
func TestForeignResidentsEndToEnd(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd, sc hcx.ProvinceCode = "440000", "510000"
	url := f.NodeURLs[gd]
	hc := f.client()
	cp := f.asCheckpoint(sc)
	waitKnown(t, f, cp, f.NodeURLs[sc]+"/readyz")
	for _, c := range []struct {
		docType, number, name, masked string
	}{
		{"PP-GBR", "123456789", "SMITH, JOHN", "S*"},
		{"PP-JPN", "TK1234567", "YAMADA, Taro", "Y*"},
		{"PP-KOR", "M12345678", "김민준", "김*"},
		{"PP-USA", "A98765432", "Mary-Jane Watson", "M*"},
		{"HKMO", "H12345678", "CHAN, Tai Man", "C*"},
		{"HKMO", "M8765432101", "何鴻燊", "何*"},
		{"TW", "12345678", "林志玲", "林*"},
		{"FPR", "USA110079050710", "o'neil, shaquille", "O*"},
		{"FPR", "933000199001011236", "Ivanova, Anna", "I*"},
	} {
		t.Run(c.docType+" "+c.masked, func(t *testing.T) {
			sub, me := f.asResident(t, gd, map[string]string{"doc_type": c.docType, "doc_number": c.number, "name": c.name})
			tail := c.number[len(c.number)-4:]
			var r struct {
				Name   string `json:"name"`
				IDTail string `json:"id_tail"`
			}
			if st := callAs(t, hc, me, "GET", url+"/v1/residents/"+string(sub), nil, &r); st != http.StatusOK || r.Name != c.masked || r.IDTail != tail {
				t.Fatalf("the resident reads themselves: %d %+v, want %s %s", st, r, c.masked, tail)
			}
			var code struct {
				QR string `json:"code"`
			}
			if st := callAs(t, hc, me, "GET", url+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
				t.Fatalf("code: %d", st)
			}
			if cl := codeClaims(t, code.QR); cl.Sub != sub || cl.Name != c.masked || cl.IDTail != tail {
				t.Errorf("code claims nm %q idt %q sub %s, want %s %s %s", cl.Name, cl.IDTail, cl.Sub, c.masked, tail, sub)
			}
			var v struct {
				Valid  bool       `json:"valid"`
				Colour hcx.Colour `json:"colour"`
				Name   string     `json:"name"`
				IDTail string     `json:"id_tail"`
			}
			if st := callAs(t, hc, cp, "POST", f.NodeURLs[sc]+"/v1/verify", map[string]string{"code": code.QR}, &v); st != http.StatusOK || !v.Valid || v.Colour != hcx.Green || v.Name != c.masked || v.IDTail != tail {
				t.Errorf("verify at Sichuan: %d %+v", st, v)
			}
		})
	}
	t.Run("a red colour's reasons and release conditions in four languages", func(t *testing.T) {
		sub, me := f.asResident(t, gd, map[string]string{"doc_type": "PP-JPN", "doc_number": "TR7654321", "name": "SATO, Hanako"})
		feed := f.asFeed(gd)
		waitKnown(t, f, feed, url+"/readyz")
		if st := callAs(t, hc, feed, "POST", url+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive"}, nil); st != http.StatusOK {
			t.Fatalf("positive lab: %d", st)
		}
		var r struct {
			Status struct {
				Colour  hcx.Colour `json:"colour"`
				Reasons []struct {
					Code           hcx.Reason
					ZH, EN, JA, KO string
				} `json:"reasons"`
				Release      []string            `json:"release"`
				ReleaseTexts []map[string]string `json:"release_texts"`
			} `json:"status"`
		}
		if st := callAs(t, hc, me, "GET", url+"/v1/residents/"+string(sub), nil, &r); st != http.StatusOK || r.Status.Colour != hcx.Red {
			t.Fatalf("after the positive lab: %d %+v", st, r.Status)
		}
		if len(r.Status.Reasons) == 0 {
			t.Fatal("no reasons")
		}
		for _, rs := range r.Status.Reasons {
			want, _ := rs.Code.Texts()
			if rs.ZH != want[0] || rs.EN != want[1] || rs.JA != want[2] || rs.KO != want[3] || rs.JA == "" || rs.KO == "" {
				t.Errorf("reason %+v, want %q", rs, want)
			}
		}
		if len(r.Status.Release) == 0 || len(r.Status.ReleaseTexts) != len(r.Status.Release) {
			t.Fatalf("release %q, release_texts %v", r.Status.Release, r.Status.ReleaseTexts)
		}
		for i, rt := range r.Status.ReleaseTexts {
			if r.Status.Release[i] != rt["zh"]+" / "+rt["en"] || rt["ja"] == "" || rt["ja"] == rt["en"] || rt["ko"] == "" || rt["ko"] == rt["en"] {
				t.Errorf("release %q, texts %v", r.Status.Release[i], rt)
			}
		}
	})

	t.Run("refused, nothing written", func(t *testing.T) {
		op := f.asOperator(t, gd)
		for _, c := range []struct{ docType, number, name, field string }{
			{"PP-XXX", "123456789", "DOE, JANE", "doc_type"}, // no state's code
			{"PP-gbr", "123456789", "DOE, JANE", "doc_type"},
			{"PP-GB", "123456789", "DOE, JANE", "doc_type"},
			{"HKMO", "X12345678", "DOE, JANE", "doc_number"},
			{"TW", "1234567", "DOE, JANE", "doc_number"},
			{"FPR", "USA11007905071", "DOE, JANE", "doc_number"},
			{"PP-GBR", "123456789", "DOE, JANE, X", "name"},
			{"PP-GBR", "123456789", ", JANE", "name"},
		} {
			_, before := trailAfter(t, f, url, 1<<62)
			body := jsonText(map[string]string{"doc_type": c.docType, "doc_number": c.number, "name": c.name})
			if a := send(t, hc, op, "POST", url+"/v1/residents", body, nil); a.status != http.StatusBadRequest || a.field != c.field {
				t.Errorf("%s %s %q: %d %s, want 400 naming %s", c.docType, c.number, c.name, a.status, a.body, c.field)
			}
			if _, after := trailAfter(t, f, url, 1<<62); after != before {
				t.Errorf("%s %s: %d trail entries written", c.docType, c.number, after-before)
			}
		}
	})
}
