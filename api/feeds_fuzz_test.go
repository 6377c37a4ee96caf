package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
)

// FuzzFeedLine drives a bulk feed's line readers — our NDJSON of every
// kind and FHIR R4 Observations and Immunizations — with arbitrary lines.
// Whatever the input: nothing panics; a refused line is a 4xx *hcx.Error
// (the answer lists it by line number with its field or code); an accepted
// line is exactly one event, with a record id, naming a person.
// Run: go test ./api -run '^$' -fuzz FuzzFeedLine -fuzztime 2m
func FuzzFeedLine(f *testing.F) {
	for _, seed := range []struct {
		kind uint8
		line string
	}{
		{0, `{"id":"S-1","doc_type":"CN-ID","doc_number":"440106199003070028","result":"positive","kind":"pcr","at":"2026-11-24T08:00:00+08:00"}`},
		{1, `{"id":"D-1","sub":"abcdefghijklmnopqrstuvwxyz","at":"2026-10-01T00:00:00Z","dose":2,"course_doses":2,"product":"CoronaVac"}`},
		{2, `{"id":"T-1","doc_type":"PP-GBR","doc_number":"123456789","at":"2026-11-20T00:00:00Z","div":"440106"}`},
		{3, `{"id":"C-1","doc_type":"CN-ID","doc_number":"440106199003070028","at":"2026-11-23T00:00:00Z"}`},
		{4, `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"94500-6"}]},"subject":{"identifier":{"system":"urn:hcx:doc:CN-ID","value":"440106199003070028"}},"effectiveDateTime":"2026-11-24T08:00:00+08:00","valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"260373001"}]}}`},
		{5, `{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"coding":[{"code":"CoronaVac"}]},"patient":{"identifier":{"system":"urn:hcx:doc:CN-ID","value":"440106199003070028"}},"occurrenceDateTime":"2026-10-01","protocolApplied":[{"doseNumberPositiveInt":1,"seriesDosesPositiveInt":2}]}`},
		{4, `{"resourceType":"Patient"}`},
		{0, `{"id":"","result":"maybe"}`},
		{1, `[1,2,3]`},
	} {
		f.Add(seed.kind, []byte(seed.line))
	}
	h := &nodeHandler{n: &fakeNode{}}
	kinds := []string{FeedLabs, FeedVaccinations, FeedItineraries, FeedContacts}
	f.Fuzz(func(t *testing.T, kind uint8, line []byte) {
		var (
			p   person
			err error
			k   string
		)
		if kind%6 < 4 {
			k = kinds[kind%6]
			p, ev, e := h.parseFeedLine(k, line)
			err = e
			if err == nil {
				checkFeedEvent(t, k, p, ev.Kind(), ev.RecordID())
			}
		} else {
			k = []string{FeedLabs, FeedVaccinations}[kind%6-4]
			p, ev, e := h.parseFHIR(k, line)
			err = e
			if err == nil {
				checkFeedEvent(t, k, p, ev.Kind(), ev.RecordID())
			}
		}
		_ = p
		if err != nil {
			var he *hcx.Error
			if !errors.As(err, &he) || !isClientClass(he.Class) {
				t.Fatalf("%s line %q refused with %T %v, want a 4xx *hcx.Error", k, line, err, err)
			}
		}
	})
}

func checkFeedEvent(t *testing.T, kind string, p person, evKind, id string) {
	t.Helper()
	if evKind == "" {
		t.Fatalf("an accepted %s line is not exactly one event", kind)
	}
	if id == "" {
		t.Fatalf("an accepted %s line has no record id", kind)
	}
	if p.Sub == "" && p.DocType == "" && p.DocNumber == "" {
		t.Fatalf("an accepted %s line names nobody", kind)
	}
}

func isClientClass(c hcx.ErrorCode) bool {
	switch c {
	case hcx.EInvalid, hcx.ENotFound, hcx.EConflict, hcx.EForbidden, hcx.EUnauthorized, hcx.ETooLarge, hcx.EUnprocessable:
		return true
	}
	return false
}

// TestFHIRNamesAreCaseSensitiveAndResourcesHaveIDs: a resource whose
// elements differ from FHIR's only in case, or that names an element twice,
// or that has no id, is refused naming the element (the models' decoder
// took "resourCeTYpe" and an Observation without id: the fuzzer found it).
func TestFHIRNamesAreCaseSensitiveAndResourcesHaveIDs(t *testing.T) {
	h := &nodeHandler{n: &fakeNode{}}
	good := `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"94500-6"}]},"subject":{"identifier":{"system":"urn:hcx:doc:CN-ID","value":"440106199003070028"}},"effectiveDateTime":"2026-11-24T08:00:00+08:00","valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"260373001"}]}}`
	if _, ev, err := h.parseFHIR(FeedLabs, []byte(good)); err != nil || ev.Lab == nil || !ev.Lab.Positive || ev.RecordID() != "o1" {
		t.Fatalf("a good Observation: %+v %v", ev, err)
	}
	for _, c := range []struct{ body, field string }{
		{strings.Replace(good, `"status"`, `"stAtus"`, 1), "stAtus"},
		{strings.Replace(good, `"resourceType"`, `"resourcetype"`, 1), "resourcetype"},
		{strings.Replace(good, `"id":"o1",`, ``, 1), "id"},
		{strings.Replace(good, `"id":"o1",`, `"id":"o1","id":"o2",`, 1), "id"},
		{strings.Replace(good, `"value":"440106199003070028"`, `"VALUE":"440106199003070028"`, 1), "VALUE"},
	} {
		_, _, err := h.parseFHIR(FeedLabs, []byte(c.body))
		var he *hcx.Error
		if !errors.As(err, &he) || he.Field != c.field {
			t.Errorf("%s: %v, want a refusal naming %q", c.body, err, c.field)
		}
	}
}
