package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// checksAnswer is GET /v1/residents/{sub}/checks.
type checksAnswer struct {
	Checks []struct {
		At       time.Time        `json:"at"`
		Province hcx.ProvinceCode `json:"province"`
		Unit     string           `json:"unit"`
		Role     string           `json:"role"`
		Colour   hcx.Colour       `json:"colour"`
	} `json:"checks"`
	Next          string `json:"next"`
	RetentionDays int    `json:"retention_days"`
}

// A checkpoint of 440000 verifies a 440000 resident's code and their
// dependant's; the resident and the guardian see the checks with time and
// unit; another resident does not.
func TestCheckHistoryThroughTheAPI(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	url := f.NodeURLs[gd]
	hc := f.client()
	sub, me := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619850505123"), "name": "李四"})
	other, them := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619860606123"), "name": "赵六"})
	child := f.dependantOf(t, gd, sub, me, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010620190909123"), "name": "李小"})
	gate := f.asCheckpoint(gd)
	waitKnown(t, f, gate, url+"/readyz") // the device's certificate is in the trust list the node follows
	unit := f.PKI.Checkpoints[gd].Cert.Subject.CommonName

	verify := func(whose hcx.Subject) time.Time {
		t.Helper()
		var code struct {
			QR string `json:"code"`
		}
		if st := callAs(t, hc, me, "GET", url+"/v1/residents/"+string(whose)+"/code", nil, &code); st != http.StatusOK {
			t.Fatalf("code of %s: %d", whose, st)
		}
		var v struct {
			Valid     bool  `json:"valid"`
			CheckedAt int64 `json:"checked_at"`
			Error     any   `json:"error"`
		}
		if st := callAs(t, hc, gate, "POST", url+"/v1/verify", map[string]string{"code": code.QR}, &v); st != http.StatusOK || !v.Valid {
			t.Fatalf("verify: %d %+v", st, v)
		}
		return time.Unix(v.CheckedAt, 0)
	}
	first := verify(sub)
	verify(sub)
	verify(sub)
	childAt := verify(child)

	// The history is written in the background: poll briefly.
	list := func(who caller, whose hcx.Subject, query string, want int) (checksAnswer, int) {
		t.Helper()
		var a checksAnswer
		var st int
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			a = checksAnswer{}
			st = callAs(t, hc, who, "GET", url+"/v1/residents/"+string(whose)+"/checks"+query, nil, &a)
			if st != http.StatusOK || len(a.Checks) >= want {
				break
			}
		}
		return a, st
	}
	a, st := list(me, sub, "?limit=2", 2)
	if st != http.StatusOK || len(a.Checks) != 2 || a.Next == "" || a.RetentionDays != 30 {
		t.Fatalf("my checks, first page: %d %+v", st, a)
	}
	b, st := list(me, sub, "?limit=2&after="+a.Next, 1)
	if st != http.StatusOK || len(b.Checks) != 1 || b.Next != "" {
		t.Fatalf("my checks, second page: %d %+v", st, b)
	}
	all := append(a.Checks, b.Checks...)
	for i, c := range all {
		if c.Unit != unit || c.Province != gd || c.Role != "checkpoint" || c.Colour != hcx.Green {
			t.Errorf("check %d: %+v, want unit %q of %s", i, c, unit, gd)
		}
		if i > 0 && c.At.After(all[i-1].At) {
			t.Errorf("not newest first: %+v", all)
		}
	}
	if last := all[len(all)-1].At; last.Before(first.Add(-time.Second)) || last.After(first.Add(time.Second)) {
		t.Errorf("the oldest check at %s, verified at %s", last, first)
	}

	// The guardian sees the dependant's check; nobody else does.
	c, st := list(me, child, "", 1)
	if st != http.StatusOK || len(c.Checks) != 1 || c.Checks[0].Unit != unit || c.Checks[0].At.Unix() != childAt.Unix() {
		t.Fatalf("the guardian reads the child's checks: %d %+v", st, c)
	}
	for _, tc := range []struct {
		who   caller
		whose hcx.Subject
	}{{them, sub}, {them, child}, {me, other}, {gate, sub}, {f.asOperator(t, gd), sub}} {
		if st := callAs(t, hc, tc.who, "GET", url+"/v1/residents/"+string(tc.whose)+"/checks", nil, nil); st != http.StatusForbidden {
			t.Errorf("%s reads %s's checks: %d, want 403", tc.who.name, tc.whose, st)
		}
	}
	if o, st := list(them, other, "", 0); st != http.StatusOK || len(o.Checks) != 0 {
		t.Errorf("a resident never checked: %d %+v", st, o)
	}

	// Bad queries name the field and change nothing.
	for _, q := range []struct{ query, field string }{
		{"?limit=0", "limit"}, {"?limit=201", "limit"}, {"?limit=x", "limit"},
		{"?after=nothex", "after"}, {"?after=" + strings.Repeat("0", 10), "after"},
	} {
		var e struct {
			Error struct {
				Field string `json:"field"`
			} `json:"error"`
		}
		if st := callAs(t, hc, me, "GET", url+"/v1/residents/"+string(sub)+"/checks"+q.query, nil, &e); st != http.StatusBadRequest || e.Error.Field != q.field {
			t.Errorf("%s: %d %+v, want 400 naming %s", q.query, st, e, q.field)
		}
	}
}
