package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/exchange"
)

func TestHubAnswersBadContentWith400NamingTheField(t *testing.T) {
	f := newHubFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := f.rootClient.Submit(ctx, f.trust); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	for _, c := range []struct{ name, hdr, payload, code, field string }{
		{"reject/risk-area-999999-apocalyptic", exchange.HdrRiskAreas,
			fmt.Sprintf(`{"typ":"hcx.riskareas.v1","iss":"440000","at":%d,"areas":[{"div":"999999","level":"apocalyptic","from":%d,"to":null}]}`, now, now),
			"invalid_areas_0__div", "areas[0].div"},
		{"reject/policy-rules-not-yaml", exchange.HdrPolicy,
			fmt.Sprintf(`{"typ":"hcx.policy.v1","iss":"440000","at":%d,"pol":"00112233445566778899aabbccddeeff","rules":"e3t7IG5vdCB5YW1s"}`, now),
			"invalid_rules", "rules"},
		{"reject/vax-course-of-4", exchange.HdrVax,
			fmt.Sprintf(`{"typ":"hcx.vax.v1","iss":"440000","at":%d,"doses":[{"sub":"aaaaaaaaaaaaaaaaaaaaaaaaaa","dose":1,"course":4,"prod":"CoronaVac","at":%d,"id":"gd-1"}]}`, now, now-60),
			"invalid_doses_0__course", "doses[0].course"},
		{"reject/batch-case-variant-member", exchange.HdrBatch,
			fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":%d,"skv":1,"atts":[],"ISS":"440000"}`, now),
			"unknown_member", "ISS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, err := f.client.Entries(ctx, 0, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			env, err := f.prov.SignJWS(c.hdr, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.client.Submit(ctx, env)
			ae := apiErr(t, err)
			if ae.Status != http.StatusBadRequest || ae.Code != c.code || !strings.Contains(ae.Message, c.field) {
				t.Fatalf("got %d %s %q, want 400 %s naming %s", ae.Status, ae.Code, ae.Message, c.code, c.field)
			}
			after, err := f.client.Entries(ctx, 0, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if after.Size != before.Size {
				t.Fatalf("the log grew from %d to %d", before.Size, after.Size)
			}
		})
	}
}
