package policy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
)

var update = flag.Bool("update", false, "rewrite the golden decision tables in testdata/golden")

// scenario is one row of the golden decision tables: the same facts are
// decided by every province's rules at t0 (2024-03-20 12:00 Beijing time).
type scenario struct {
	name  string
	facts Facts
}

func scenarios() []scenario {
	gz := hcx.DivisionCode("440106") // Guangzhou, Tianhe
	cd := hcx.DivisionCode("510104") // Chengdu, Jinjiang
	order := func(c hcx.Colour, local, national, lifted bool) []Order {
		return []Order{{ID: "cdc-2024-0001", Colour: c, At: ago(2 * day), LocalConfirmed: local, NationalConfirmed: national, Lifted: lifted}}
	}
	course := []Vaccination{
		{At: ago(200 * day), Dose: 1, CourseDoses: 2, Product: "BBIBP-CorV"},
		{At: ago(170 * day), Dose: 2, CourseDoses: 2, Product: "BBIBP-CorV"},
	}
	return []scenario{
		{"nothing-known", Facts{}},
		{"vaccinated-nothing-else", Facts{Vaccinations: course}},
		{"vaccinated-10-days-ago", Facts{Vaccinations: []Vaccination{course[0], {At: ago(10 * day), Dose: 2, CourseDoses: 2}}}},
		{"negative-tests-only", Facts{Labs: negs(ago(3*day), 3)}},
		{"positive-pcr-2-days-ago", Facts{Labs: []LabResult{pos(ago(2 * day))}}},
		{"positive-antigen-1-day-ago", Facts{Labs: []LabResult{{At: ago(day), Positive: true, Kind: "antigen"}}}},
		{"positive-6-days-ago-3-negatives", Facts{Labs: append(negs(ago(5*day), 3), pos(ago(6*day)))}},
		{"positive-14-days-ago-5-negatives", Facts{Labs: append(negs(ago(13*day), 5), pos(ago(14*day)))}},
		{"positive-13d23h-ago-5-negatives", Facts{Labs: append(negs(ago(13*day), 5), pos(ago(13*day+23*hour)))}},
		{"positive-22-days-ago-5-negatives", Facts{Labs: append(negs(ago(20*day), 5), pos(ago(22*day)))}},
		{"close-contact-3-days-ago", Facts{Contacts: []ContactFlag{{Issuer: "440000", At: ago(3 * day)}}}},
		{"close-contact-11-days-ago-4-negatives", Facts{Contacts: []ContactFlag{{Issuer: "440000", At: ago(11 * day)}}, Labs: negs(ago(10*day), 4)}},
		{"close-contact-15-days-ago-5-negatives", Facts{Contacts: []ContactFlag{{Issuer: "440000", At: ago(15 * day)}}, Labs: negs(ago(14*day), 5)}},
		{"medium-risk-area-5-days-ago", Facts{Travel: []TravelRecord{{Div: gz, At: ago(5 * day)}}, RiskAreas: inRisk(gz, "medium")}},
		{"medium-risk-area-10-days-ago", Facts{Travel: []TravelRecord{{Div: gz, At: ago(10 * day)}}, RiskAreas: inRisk(gz, "medium")}},
		{"high-risk-area-5-days-ago", Facts{Travel: []TravelRecord{{Div: cd, At: ago(5 * day)}}, RiskAreas: inRisk("510100", "high")}},
		{"medium-risk-area-4-days-ago-2-negatives", Facts{Travel: []TravelRecord{{Div: gz, At: ago(4 * day)}}, RiskAreas: inRisk(gz, "medium"), Labs: negs(ago(3*day), 2)}},
		{"medium-risk-area-4-days-ago-2-antigen-negatives", Facts{Travel: []TravelRecord{{Div: gz, At: ago(4 * day)}}, RiskAreas: inRisk(gz, "medium"), Labs: antigenNegs(ago(3*day), 2)}},
		{"risk-area-visited-before-designation", Facts{Travel: []TravelRecord{{Div: gz, At: ago(5 * day)}}, RiskAreas: []RiskArea{{Div: gz, Level: "high", From: ago(3 * day), Issuer: "440000"}}}},
		{"fever-and-cough-yesterday", Facts{Declarations: []Declaration{{At: ago(day), Symptoms: []string{"cough"}, TempC: 38.2}}}},
		{"fever-and-cough-yesterday-checked-in-2-days", Facts{Declarations: []Declaration{{At: ago(day), Symptoms: []string{"cough"}, TempC: 38.2}},
			CheckIns: []CheckIn{{At: ago(20 * hour), TempC: 37.9}, {At: ago(hour), TempC: 36.8}}}},
		{"fever-and-cough-yesterday-today-check-in-due", Facts{Declarations: []Declaration{{At: ago(day), Symptoms: []string{"cough"}, TempC: 38.2}},
			CheckIns: []CheckIn{{At: ago(20 * hour), TempC: 37.9}}}},
		{"fever-and-cough-2-days-ago-3-check-ins-1-negative", Facts{Declarations: []Declaration{{At: ago(2*day + 2*hour), Symptoms: []string{"cough"}, TempC: 38.2}},
			CheckIns: []CheckIn{{At: ago(2 * day), TempC: 37.5}, {At: ago(day), TempC: 36.9}, {At: ago(hour), TempC: 36.6}},
			Labs:     []LabResult{neg(ago(day))}}},
		{"cough-without-fever-2-days-ago", Facts{Declarations: []Declaration{{At: ago(2 * day), Symptoms: []string{"cough"}, TempC: 36.7}}}},
		{"high-exposure-venue-yesterday", Facts{Venues: []VenueExposure{{VenueID: "v-110105-0042", Div: "110105", At: ago(day), Level: "high"}}}},
		{"low-exposure-venue-yesterday", Facts{Venues: []VenueExposure{{VenueID: "v-110105-0042", Div: "110105", At: ago(day), Level: "low"}}}},
		{"red-order-both-confirmations", Facts{Orders: order(hcx.Red, true, true, false)}},
		{"red-order-local-only", Facts{Orders: order(hcx.Red, true, false, false)}},
		{"red-order-lifted", Facts{Orders: order(hcx.Red, true, true, true)}},
		{"yellow-order", Facts{Orders: order(hcx.Yellow, true, false, false)}},
		{"positive-and-risk-travel", Facts{Labs: []LabResult{pos(ago(day))}, Travel: []TravelRecord{{Div: gz, At: ago(5 * day)}}, RiskAreas: inRisk(gz, "medium")}},
	}
}

func TestGoldenDecisionTables(t *testing.T) {
	for _, p := range provinces {
		t.Run(string(p), func(t *testing.T) {
			rs := rules(t, p)
			var b strings.Builder
			fmt.Fprintf(&b, "# Golden decision table for %s (%s), decided at %s.\n", p, rs.Name(), t0.In(rs.Location()).Format("2006-01-02 15:04 MST"))
			fmt.Fprintf(&b, "# Regenerate with: go test ./policy -run TestGoldenDecisionTables -update\n")
			for _, sc := range scenarios() {
				d, err := rs.Decide(&sc.facts, t0)
				if err != nil {
					t.Fatalf("%s: %v", sc.name, err)
				}
				b.WriteString(goldenRow(sc.name, d))
			}
			path := filepath.Join("testdata", "golden", string(p)+".txt")
			got := b.String()
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("decisions differ from %s (run with -update after checking the change):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

func goldenRow(name string, d Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n", name)
	fmt.Fprintf(&b, "  colour:  %s by %s\n", d.Colour, d.Rule)
	reasons := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		zh, en := r.Text()
		reasons[i] = fmt.Sprintf("%s (%s / %s)", r, zh, en)
	}
	fmt.Fprintf(&b, "  reasons: %s\n", strings.Join(reasons, ", "))
	if d.Rule != "default" {
		fmt.Fprintf(&b, "  since:   %s\n", d.Since.Format("2006-01-02 15:04 MST"))
	}
	if len(d.Released) > 0 {
		fmt.Fprintf(&b, "  released from: %s\n", strings.Join(d.Released, ", "))
	}
	for _, c := range d.Release {
		zh, en := c.Text()
		fmt.Fprintf(&b, "  release: %s | %s\n", en, zh)
	}
	fmt.Fprintf(&b, "  vaccinated: %v\n", d.Vaccinated)
	return b.String()
}

// lineDiff shows the lines that differ, with their line numbers.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  - %s\n  + %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
