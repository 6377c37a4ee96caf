package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

// FHIR R4 feeds (docs/decisions.md, "Issue 10: bulk feeds"): the labs feed
// takes Observations and the vaccinations feed Immunizations, one resource
// per line (application/fhir+ndjson) or as the entries of a Bundle
// (application/fhir+json; a line number is then the entry's, from 1). The
// profile accepted is narrow, and anything outside it is a line error
// naming the element:
//
//   - Observation: id (the record id), status final, code with a LOINC
//     coding from AcceptedLOINC, valueCodeableConcept SNOMED CT 260373001
//     (detected) or 260415000 (not detected), effectiveDateTime, subject by
//     identifier.
//   - Immunization: id, status completed, vaccineCode (its first coding's
//     code is kept as the product), occurrenceDateTime, protocolApplied[0]
//     with doseNumberPositiveInt and seriesDosesPositiveInt, patient by
//     identifier.
//   - The person is a Reference by identifier whose system is
//     FHIRDocSystem followed by the document type (urn:hcx:doc:CN-ID) and
//     whose value is the document number; the node computes the subject.

// FHIRDocSystem prefixes the identifier system naming a document type.
const FHIRDocSystem = "urn:hcx:doc:"

// AcceptedLOINC are the LOINC codes of SARS-CoV-2 tests a lab feed may
// send, with the lab kind each is.
var AcceptedLOINC = map[string]string{
	"94500-6": "pcr",     // SARS-CoV-2 RNA, NAA with probe detection
	"94309-2": "pcr",     // SARS-CoV-2 RNA, NAA
	"94558-4": "antigen", // SARS-CoV-2 Ag, rapid immunoassay
}

const (
	loincSystem    = "http://loinc.org"
	snomedSystem   = "http://snomed.info/sct"
	snomedDetected = "260373001"
	snomedNot      = "260415000"
)

// parseFHIR reads one FHIR resource of a labs or vaccinations feed.
func (h *nodeHandler) parseFHIR(kind string, b []byte) (person, node.Event, error) {
	if err := fhirNames(b); err != nil {
		return person{}, node.Event{}, err
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return person{}, node.Event{}, hcx.Errorf(hcx.EInvalid, "bad_json", "not a FHIR resource: %v", err)
	}
	want := "Observation"
	if kind == FeedVaccinations {
		want = "Immunization"
	}
	if head.ResourceType != want {
		return person{}, node.Event{}, &hcx.Error{Class: hcx.EInvalid, Code: "unsupported_resource", Field: "resourceType",
			Message: fmt.Sprintf("the %s feed takes %s resources, not %q", kind, want, head.ResourceType)}
	}
	var p person
	var ev node.Event
	var err error
	if kind == FeedVaccinations {
		p, ev, err = fhirImmunization(b)
	} else {
		p, ev, err = fhirObservation(b)
	}
	if err == nil && ev.RecordID() == "" {
		err = hcx.Invalidf("id", "every resource of a feed has an id, its record id: a feed sent twice then counts once")
	}
	return p, ev, err
}

func fhirObservation(b []byte) (person, node.Event, error) {
	o, err := fhir.UnmarshalObservation(b)
	if err != nil {
		return person{}, node.Event{}, hcx.Errorf(hcx.EInvalid, "bad_json", "Observation: %v", err)
	}
	if o.Status != fhir.ObservationStatusFinal {
		return person{}, node.Event{}, hcx.Invalidf("status", "only final Observations are results; this one is %s", o.Status.Code())
	}
	lab := &policy.LabResult{ID: deref(o.Id)}
	for _, c := range o.Code.Coding {
		if deref(c.System) == loincSystem {
			lab.Kind = AcceptedLOINC[deref(c.Code)]
			if lab.Kind == "" {
				return person{}, node.Event{}, hcx.Invalidf("code", "LOINC %s is not a SARS-CoV-2 test this node accepts (%s)", deref(c.Code), strings.Join(sortedKeys(AcceptedLOINC), ", "))
			}
		}
	}
	if lab.Kind == "" {
		return person{}, node.Event{}, hcx.Invalidf("code", "an Observation names its test with a LOINC coding (system %s)", loincSystem)
	}
	result := ""
	if o.ValueCodeableConcept != nil {
		for _, c := range o.ValueCodeableConcept.Coding {
			if deref(c.System) == snomedSystem {
				result = deref(c.Code)
			}
		}
	}
	if result != snomedDetected && result != snomedNot {
		return person{}, node.Event{}, &hcx.Error{Class: hcx.EInvalid, Code: "invalid_result", Field: "valueCodeableConcept",
			Message: fmt.Sprintf("the result is a SNOMED CT coding, %s (detected) or %s (not detected)", snomedDetected, snomedNot)}
	}
	lab.Positive = result == snomedDetected
	if lab.At, err = fhirTime("effectiveDateTime", deref(o.EffectiveDateTime)); err != nil {
		return person{}, node.Event{}, err
	}
	p, err := fhirPerson("subject", o.Subject)
	return p, node.Event{Lab: lab}, err
}

func fhirImmunization(b []byte) (person, node.Event, error) {
	im, err := fhir.UnmarshalImmunization(b)
	if err != nil {
		return person{}, node.Event{}, hcx.Errorf(hcx.EInvalid, "bad_json", "Immunization: %v", err)
	}
	if im.Status != fhir.ImmunizationStatusCodesCompleted {
		return person{}, node.Event{}, hcx.Invalidf("status", "only completed Immunizations count; this one is %s", im.Status.Code())
	}
	v := &policy.Vaccination{ID: deref(im.Id)}
	if len(im.VaccineCode.Coding) > 0 {
		v.Product = deref(im.VaccineCode.Coding[0].Code)
	}
	if len(im.ProtocolApplied) != 1 || im.ProtocolApplied[0].SeriesDosesPositiveInt == nil {
		return person{}, node.Event{}, hcx.Invalidf("protocolApplied", "an Immunization has one protocolApplied with doseNumberPositiveInt and seriesDosesPositiveInt")
	}
	v.Dose, v.CourseDoses = im.ProtocolApplied[0].DoseNumberPositiveInt, *im.ProtocolApplied[0].SeriesDosesPositiveInt
	if v.At, err = fhirTime("occurrenceDateTime", im.OccurrenceDateTime); err != nil {
		return person{}, node.Event{}, err
	}
	p, err := fhirPerson("patient", &im.Patient)
	return p, node.Event{Vaccination: v}, err
}

func fhirTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, hcx.Invalidf(field, "want a date and time with its zone (2026-03-01T08:00:00+08:00), got %q", s)
	}
	return t, nil
}

func fhirPerson(field string, ref *fhir.Reference) (person, error) {
	if ref == nil || ref.Identifier == nil || !strings.HasPrefix(deref(ref.Identifier.System), FHIRDocSystem) {
		return person{}, hcx.Invalidf(field, "name the person by identifier, system %s<document type> (%sCN-ID) and the document number as value", FHIRDocSystem, FHIRDocSystem)
	}
	return person{DocType: hcx.DocType(strings.TrimPrefix(deref(ref.Identifier.System), FHIRDocSystem)), DocNumber: deref(ref.Identifier.Value)}, nil
}

// eachBundleEntry reads a Bundle (bounded by MaxFeedBody) and calls f with
// each entry's number and resource.
func eachBundleEntry(w http.ResponseWriter, r *http.Request, f func(n int, resource []byte)) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxFeedBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errFeedTooLarge()
		}
		return hcx.Errorf(hcx.EInvalid, "bad_body", "could not read the request body: %v", err)
	}
	if err := fhirNames(b); err != nil {
		return err
	}
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil || bundle.ResourceType != "Bundle" {
		return hcx.Invalidf("resourceType", "an %s feed is one FHIR Bundle", mediaFHIRJSON)
	}
	if len(bundle.Entry) == 0 {
		return hcx.Invalidf("entry", "the Bundle has no entries")
	}
	if len(bundle.Entry) > MaxFeedLines {
		return hcx.Errorf(hcx.ETooLarge, "too_many_lines", "a feed request has at most %d entries; send the rest in another Bundle", MaxFeedLines)
	}
	for i, e := range bundle.Entry {
		f(i+1, e.Resource)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// fhirElements are the element names the feeds read. FHIR JSON is
// case-sensitive, but the models decode with encoding/json, which also
// takes "STATUS" for status: fhirNames refuses a key that differs from one
// of these only in case, and a key twice in one object, so that what the
// node reads is what a FHIR reader reads.
var fhirElements = []string{"resourceType", "id", "status", "code", "coding", "system", "subject", "patient",
	"identifier", "value", "effectiveDateTime", "valueCodeableConcept", "vaccineCode", "occurrenceDateTime",
	"protocolApplied", "doseNumberPositiveInt", "seriesDosesPositiveInt", "entry", "resource"}

// fhirNames walks a resource's JSON and refuses duplicate keys and keys
// that are a case variant of an element the feeds read, naming the key.
func fhirNames(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var keys []map[string]bool // one set per open object
	var inObject []bool        // per open container: an object (true) or an array
	expectKey := func() bool { return len(inObject) > 0 && inObject[len(inObject)-1] }
	wantKey := true
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return hcx.Errorf(hcx.EInvalid, "bad_json", "not a FHIR resource: %v", err)
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				inObject = append(inObject, true)
				keys = append(keys, map[string]bool{})
				wantKey = true
				continue
			case '[':
				inObject = append(inObject, false)
			case '}':
				inObject = inObject[:len(inObject)-1]
				keys = keys[:len(keys)-1]
			case ']':
				inObject = inObject[:len(inObject)-1]
			}
			wantKey = expectKey()
			continue
		case string:
			if expectKey() && wantKey {
				if keys[len(keys)-1][t] {
					return hcx.Invalidf(t, "the element %q appears twice in one object", t)
				}
				keys[len(keys)-1][t] = true
				for _, e := range fhirElements {
					if t != e && strings.EqualFold(t, e) {
						return hcx.Invalidf(t, "FHIR element names are case-sensitive: %q is not %q", t, e)
					}
				}
				wantKey = false
				continue
			}
		}
		wantKey = expectKey()
	}
}
