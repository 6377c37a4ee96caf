package consensus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hcxfed/hcx/exchange"
)

// TestHubChecksVaccinationEnvelopes: the hub logs a province's vaccination
// envelope (protocol 1.3) and refuses one whose content cannot be right,
// naming the field, without logging it.
func TestHubChecksVaccinationEnvelopes(t *testing.T) {
	p, h, ctx := trustedHub(t)
	now := time.Now().Unix()
	sc := p.provs["510000"]
	sub := subjectOf(1)
	vaxOf := func(iss string, at int64, doses string) string {
		return fmt.Sprintf(`{"typ":"hcx.vax.v1","iss":"%s","at":%d,"doses":[%s]}`, iss, at, doses)
	}
	dose := func(sub string, n, course int, prod string, at int64, id string) string {
		return fmt.Sprintf(`{"sub":"%s","dose":%d,"course":%d,"prod":"%s","at":%d,"id":"%s"}`, sub, n, course, prod, at, id)
	}
	good := dose(string(sub), 2, 2, "BBIBP-CorV", now-86400, "sc-1")
	for _, c := range []struct{ name, payload, field string }{
		{"reject/no-doses", vaxOf("510000", now, ""), "doses"},
		{"reject/not-a-subject", vaxOf("510000", now, dose("张三-110101", 1, 2, "BBIBP-CorV", now-10, "a")), "doses[0].sub"},
		{"reject/dose-0", vaxOf("510000", now, dose(string(sub), 0, 2, "BBIBP-CorV", now-10, "a")), "doses[0].dose"},
		{"reject/dose-11", vaxOf("510000", now, dose(string(sub), 11, 2, "BBIBP-CorV", now-10, "a")), "doses[0].dose"},
		{"reject/course-4", vaxOf("510000", now, dose(string(sub), 1, 4, "BBIBP-CorV", now-10, "a")), "doses[0].course"},
		{"reject/dose-in-the-future", vaxOf("510000", now, dose(string(sub), 1, 2, "BBIBP-CorV", now+3600, "a")), "doses[0].at"},
		{"reject/no-id", vaxOf("510000", now, dose(string(sub), 1, 2, "BBIBP-CorV", now-10, "")), "doses[0].id"},
		{"reject/product-with-spaces", vaxOf("510000", now, dose(string(sub), 1, 2, "BBIBP CorV", now-10, "a")), "doses[0].prod"},
		{"reject/a-name-member", vaxOf("510000", now, `{"sub":"`+string(sub)+`","dose":1,"course":2,"prod":"CoronaVac","at":1,"id":"a","name":"张三"}`), "doses[0].name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, err := sc.SignJWS(exchange.HdrVax, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			refusedAndNotLogged(t, ctx, h, env, c.field)
		})
	}
	// Sichuan may not report doses in Guangdong's name.
	forged, err := sc.SignJWS(exchange.HdrVax, []byte(vaxOf("440000", now, good)))
	if err != nil {
		t.Fatal(err)
	}
	before := h.State().Size
	if _, err := h.Submit(ctx, forged); !errors.Is(err, exchange.ErrWrongIssuer) || h.State().Size != before {
		t.Fatalf("Guangdong's doses signed by Sichuan: %v, log %d -> %d", err, before, h.State().Size)
	}
	env, err := exchange.SealVax(sc, &exchange.Vax{Iss: "510000", At: now, Doses: []exchange.VaxDose{{Sub: sub, Dose: 2, Course: 2, Prod: "BBIBP-CorV", At: now - 86400, ID: "sc-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Submit(ctx, env)
	if err != nil {
		t.Fatalf("a genuine vaccination envelope: %v", err)
	}
	if again, err := h.Submit(ctx, env); err != nil || again.Index != res.Index {
		t.Fatalf("resubmitted: %v index %d, want %d", err, again.Index, res.Index)
	}
}
