package consensus

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/configs"
	"github.com/hcxfed/hcx/exchange"
)

// attJSON is one valid attestation as our producers write it.
func attJSON(sub hcx.Subject, now int64) string {
	return fmt.Sprintf(`{"sub":"%s","col":"red","rsn":["lab.positive"],"eff":%d,"exp":%d,"pol":"00112233445566778899aabbccddeeff","n":1}`, sub, now-10, now+3600)
}

func TestHubRefusesABatchThatReadsAsAnotherProvince(t *testing.T) {
	p, h, ctx := trustedHub(t)
	now := time.Now().Unix()
	att := attJSON(subjectOf(1), now)
	gd := p.provs["440000"]
	// Each payload is signed by Guangdong and reads as Guangdong's to
	// encoding/json, but carries Beijing's code in an iss member too.
	for name, payload := range map[string]string{
		"reject/case-variant-ISS-after-iss": fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":%d,"skv":1,"atts":[%s],"ISS":"440000"}`, now, att),
		"reject/unicode-fold-iss":           fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":%d,"skv":1,"atts":[%s],"iſs":"440000"}`, now, att),
		"reject/second-iss":                 fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":%d,"skv":1,"atts":[%s],"iss":"440000"}`, now, att),
		"reject/escaped-iss":                fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"110000","seq":1,"at":%d,"skv":1,"atts":[%s],"i\u0073s":"440000"}`, now, att),
	} {
		t.Run(name, func(t *testing.T) {
			env, err := gd.SignJWS(exchange.HdrBatch, []byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			refusedAndNotLogged(t, ctx, h, env, "*")
		})
	}
	// Beijing's own first batch still gets sequence 1.
	if _, err := h.Submit(ctx, p.batch(t, "110000", 1, 2, 0, hcx.Green, 1)); err != nil {
		t.Fatalf("Beijing's genuine batch 1: %v", err)
	}
}

func TestHubRefusesContentThatCannotBeRight(t *testing.T) {
	p, h, ctx := trustedHub(t)
	now := time.Now().Unix()
	gd := p.provs["440000"]
	rules, err := configs.Rules.ReadFile("rules/440000.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := exchange.ParseRules("440000.yaml", rules)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	policyOf := func(pol string, src []byte) string {
		return fmt.Sprintf(`{"typ":"hcx.policy.v1","iss":"440000","at":%d,"pol":"%s","rules":"%s"}`, now, pol, b64(src))
	}
	areasOf := func(areas string) string {
		return fmt.Sprintf(`{"typ":"hcx.riskareas.v1","iss":"440000","at":%d,"areas":[%s]}`, now, areas)
	}
	for _, c := range []struct {
		name, hdr, payload, field string
	}{
		{"reject/policy-rules-not-yaml", exchange.HdrPolicy, policyOf(rs.Version(), []byte("{{{ this is : not [ yaml")), "rules"},
		{"reject/policy-rules-not-base64", exchange.HdrPolicy, fmt.Sprintf(`{"typ":"hcx.policy.v1","iss":"440000","at":%d,"pol":"%s","rules":"!!"}`, now, rs.Version()), "rules"},
		{"reject/policy-version-not-of-these-rules", exchange.HdrPolicy, policyOf("00112233445566778899aabbccddeeff", rules), "pol"},
		{"reject/policy-rules-of-another-province", exchange.HdrPolicy, policyOf(rs.Version(), mustRead(t, "rules/110000.yaml")), "rules"},
		{"reject/risk-area-unknown-division-and-level", exchange.HdrRiskAreas, areasOf(fmt.Sprintf(`{"div":"999999","level":"apocalyptic","from":%d,"to":null}`, now)), "areas[0].div"},
		{"reject/risk-area-unknown-level", exchange.HdrRiskAreas, areasOf(fmt.Sprintf(`{"div":"440106","level":"apocalyptic","from":%d,"to":null}`, now)), "areas[0].level"},
		{"reject/risk-area-ends-before-it-starts", exchange.HdrRiskAreas, areasOf(fmt.Sprintf(`{"div":"440106","level":"high","from":%d,"to":%d}`, now, now-1)), "areas[0].to"},
		{"reject/risk-area-in-another-province", exchange.HdrRiskAreas, areasOf(fmt.Sprintf(`{"div":"110101","level":"high","from":%d,"to":null}`, now)), "areas[0].div"},
		{"reject/risk-areas-none", exchange.HdrRiskAreas, areasOf(""), "areas"},
		{"reject/risk-area-unknown-member", exchange.HdrRiskAreas, areasOf(fmt.Sprintf(`{"div":"440106","level":"high","from":%d,"to":null,"why":"x"}`, now)), "areas[0].why"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, err := gd.SignJWS(c.hdr, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			refusedAndNotLogged(t, ctx, h, env, c.field)
		})
	}
	// The real thing is logged.
	for _, c := range []struct{ hdr, payload string }{
		{exchange.HdrPolicy, policyOf(rs.Version(), rules)},
		{exchange.HdrRiskAreas, areasOf(fmt.Sprintf(`{"div":"440106","level":"high","from":%d,"to":null},{"div":"440100","level":"medium","from":%d,"to":%d}`, now, now, now+86400))},
	} {
		env, err := gd.SignJWS(c.hdr, []byte(c.payload))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Submit(ctx, env); err != nil {
			t.Fatalf("%s: %v", c.payload[:40], err)
		}
	}
}

// trustedHub starts one hub member with the test federation's trust list.
func trustedHub(t *testing.T) (*pki, *Hub, context.Context) {
	t.Helper()
	p := newPKI(t, 1)
	h := startOne(t, p, t.TempDir(), nil)
	t.Cleanup(func() { h.Close() })
	ctx := ctxT(t, 30*time.Second)
	if _, err := h.Submit(ctx, p.trust1); err != nil {
		t.Fatal(err)
	}
	return p, h, ctx
}

// refusedAndNotLogged submits env and checks it is refused as invalid,
// naming field (any field when field is "*"), and that the log did not grow.
func refusedAndNotLogged(t *testing.T, ctx context.Context, h *Hub, env, field string) {
	t.Helper()
	before := h.State().Size
	_, err := h.Submit(ctx, env)
	var he *hcx.Error
	if !errors.As(err, &he) || he.Class != hcx.EInvalid || (field != "*" && he.Field != field) {
		t.Fatalf("got %v, want an invalid-envelope refusal naming %q", err, field)
	}
	if after := h.State().Size; after != before {
		t.Fatalf("the log grew from %d to %d", before, after)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := configs.Rules.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
