package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hcxfed/hcx"
	"gopkg.in/yaml.v3"
)

// Facts is everything the node knows about one resident that a rule may read.
// Times are UTC; slices may be in any order. The JSON and YAML names are the
// ones `hcx policy explain --facts` reads (docs/rules.md, "Facts files").
type Facts struct {
	Labs         []LabResult     `json:"labs,omitempty"`
	Contacts     []ContactFlag   `json:"contacts,omitempty"`
	Declarations []Declaration   `json:"declarations,omitempty"`
	Vaccinations []Vaccination   `json:"vaccinations,omitempty"`
	Travel       []TravelRecord  `json:"travel,omitempty"`
	RiskAreas    []RiskArea      `json:"risk_areas,omitempty"`
	Venues       []VenueExposure `json:"venues,omitempty"`
	Orders       []Order         `json:"orders,omitempty"`
	CheckIns     []CheckIn       `json:"checkins,omitempty"`
	Current      hcx.Colour      `json:"current,omitempty"`
	CurrentSince time.Time       `json:"current_since,omitzero"`
}

// LabResult is one nucleic-acid ("pcr") or antigen ("antigen") test result.
type LabResult struct {
	At       time.Time `json:"at"`
	Positive bool      `json:"positive"`
	Kind     string    `json:"kind"`
	// ID is the record id the feed gave (idempotency, corrections); rules
	// never read it.
	ID string `json:"id,omitempty"`
}

// ContactFlag marks the resident as a close contact, flagged by a province.
type ContactFlag struct {
	Issuer hcx.ProvinceCode `json:"issuer"`
	At     time.Time        `json:"at"`
	ID     string           `json:"id,omitempty"`
}

// Declaration is a resident's own health declaration.
type Declaration struct {
	At       time.Time `json:"at"`
	Symptoms []string  `json:"symptoms,omitempty"`
	TempC    float64   `json:"temp_c,omitempty"`
	ID       string    `json:"id,omitempty"`
}

// Vaccination is one dose; CourseDoses is the number of doses that complete
// the product's primary course (1, 2 or 3).
type Vaccination struct {
	At          time.Time `json:"at"`
	Dose        int       `json:"dose"`
	CourseDoses int       `json:"course_doses"`
	Product     string    `json:"product,omitempty"`
	// Province is where the dose was given (a dose given in another
	// province counts the same); ID the registry's record id.
	Province hcx.ProvinceCode `json:"province,omitempty"`
	ID       string           `json:"id,omitempty"`
}

// TravelRecord is a stay in a division (from telecom or transport records).
type TravelRecord struct {
	Div hcx.DivisionCode `json:"div"`
	At  time.Time        `json:"at"`
	ID  string           `json:"id,omitempty"`
}

// RiskArea is a designation of a division as a medium- or high-risk area by
// any province, in force from From until To (nil: still in force). A
// provincial or prefecture code covers the divisions inside it.
type RiskArea struct {
	Div    hcx.DivisionCode `json:"div"`
	Level  string           `json:"level"`
	From   time.Time        `json:"from"`
	To     *time.Time       `json:"to,omitempty"`
	Issuer hcx.ProvinceCode `json:"issuer,omitempty"`
}

// VenueExposure says the resident scanned into a venue at a time when it was
// later found to be an exposure site; Level is "high", "medium" or "low".
type VenueExposure struct {
	VenueID string           `json:"venue_id"`
	Div     hcx.DivisionCode `json:"div,omitempty"`
	At      time.Time        `json:"at"`
	Level   string           `json:"level,omitempty"`
	// Issuer is the province that marked the exposure; ID the exposure's
	// key (iss/vid/from/to), for withdrawal; rules never read them.
	Issuer hcx.ProvinceCode `json:"issuer,omitempty"`
	ID     string           `json:"id,omitempty"`
}

// Order is a manual colour order from the disease-control authority. A red
// order counts only once both the local disease-control authority and the
// national platform have confirmed it; a lifted order no longer counts.
type Order struct {
	ID                string     `json:"id"`
	Colour            hcx.Colour `json:"colour"`
	At                time.Time  `json:"at"`
	LocalConfirmed    bool       `json:"local_confirmed"`
	NationalConfirmed bool       `json:"national_confirmed"`
	Lifted            bool       `json:"lifted,omitempty"`
}

// CheckIn is a red or yellow resident's daily health check-in (Alipay's
// "daily health check-in until green"): temperature and symptoms, like a
// declaration, made once a local day.
type CheckIn struct {
	At       time.Time `json:"at"`
	TempC    float64   `json:"temp_c,omitempty"`
	Symptoms []string  `json:"symptoms,omitempty"`
	ID       string    `json:"id,omitempty"`
}

// ParseFacts reads facts from JSON or YAML (the same field names). Unknown
// fields are refused so that a misspelt field does not silently read as
// "no facts". name is used in error messages.
func ParseFacts(name string, data []byte) (*Facts, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] != '{' {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		j, err := json.Marshal(yamlToJSON(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		data = j
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f Facts
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &f, nil
}

// yamlToJSON turns the map[string]any / time.Time values yaml.v3 produces into
// values encoding/json writes as the same document.
func yamlToJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			// Codes written without quotes (div: 440106) read as numbers.
			if n, ok := e.(int); ok && (k == "div" || k == "issuer" || k == "id" || k == "venue_id") {
				e = strconv.Itoa(n)
			}
			x[k] = yamlToJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = yamlToJSON(e)
		}
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return v
}

// symptoms is the vocabulary of declared symptoms: declarations and
// check-ins name symptoms by these codes, so that rules can test for them.
var symptoms = []string{"fever", "cough", "sore-throat", "fatigue", "runny-nose", "headache", "muscle-ache",
	"shortness-of-breath", "loss-of-smell", "loss-of-taste", "diarrhoea", "chills"}

// Symptoms lists the symptom codes a declaration may name.
func Symptoms() []string { return append([]string(nil), symptoms...) }

// KnownSymptom reports whether s is a symptom code.
func KnownSymptom(s string) bool {
	for _, k := range symptoms {
		if k == s {
			return true
		}
	}
	return false
}
