package hcx

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestColourSeverity(t *testing.T) {
	if got := MostSevere(Green, Red, Yellow); got != Red {
		t.Errorf("MostSevere(green, red, yellow) = %q", got)
	}
	if got := MostSevere(Green, "purple"); got != Green {
		t.Errorf("an invalid colour must not win: got %q", got)
	}
	if err := Colour("purple").Validate(); err == nil {
		t.Error("purple validated")
	}
}

func TestProvinceCodes(t *testing.T) {
	for _, tc := range []struct {
		code ProvinceCode
		ok   bool
		hint string
	}{
		{"440000", true, ""},
		{"810000", true, ""},
		{"440100", false, "440000"},
		{"990000", false, "not a province"},
		{"44000", false, "six digits"},
		{"44000a", false, "six digits"},
	} {
		err := tc.code.Validate()
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.hint)) {
			t.Errorf("%s: err = %v, want ok=%v mentioning %q", tc.code, err, tc.ok, tc.hint)
		}
	}
	if got := ProvinceCode("510000").Name(); got != "四川省" {
		t.Errorf("510000 is %q", got)
	}
	if got := DivisionCode("440106").Province(); got != "440000" {
		t.Errorf("440106 is in %s", got)
	}
	if err := DivisionCode("440199").Validate(); err == nil {
		t.Error("440199 is no division in GB/T 2260 (2019)")
	}
}

func TestMainlandIDCheckDigit(t *testing.T) {
	// 11010519491231002X is the example number of GB 11643-1999.
	for _, good := range []string{"11010519491231002X", "440106199003070028", "51010719850612004X"} {
		if err := ValidateDocument(DocCNID, good, time.Now()); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	err := ValidateDocument(DocCNID, "110105194912310021", time.Now())
	var e *Error
	if !errors.As(err, &e) || e.Field != "doc_number" || !strings.Contains(e.Message, "gives X") {
		t.Errorf("wrong check digit: err = %v, want one naming doc_number and the expected X", err)
	}
	if err := ValidateDocument(DocCNID, "110105194913310021", time.Now()); err == nil || !strings.Contains(err.Error(), "birth date") {
		t.Errorf("month 13: err = %v", err)
	}
	if err := ValidateDocument("PP-FRA", "15AB12345", time.Now()); err != nil {
		t.Errorf("French passport: %v", err)
	}
	if err := ValidateDocument("PP-fr", "15AB12345", time.Now()); err == nil {
		t.Error("PP-fr accepted")
	}
}

func TestMaskingShowsFamilyNameAndTailOnly(t *testing.T) {
	for name, want := range map[string]string{"张三丰": "张*", "李四": "李*", " Zhang San": "Z*", "": ""} {
		if got := MaskName(name); got != want {
			t.Errorf("MaskName(%q) = %q, want %q", name, got, want)
		}
	}
	if got := IDTail("440106199003070028"); got != "0028" {
		t.Errorf("IDTail = %q", got)
	}
}

func TestAttestationValidityAndCounting(t *testing.T) {
	a := Attestation{Subject: "abcdefghijklmnopqrstuvwxyz", Colour: Red, Reasons: []Reason{ReasonLabPositive}, Eff: 100, Exp: 200, N: 1}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for at, want := range map[int64]bool{99: false, 100: true, 199: true, 200: false} {
		if got := a.Counts(time.Unix(at, 0)); got != want {
			t.Errorf("counts at %d = %v, want %v", at, got, want)
		}
	}
	bad := a
	bad.Subject = "ABC"
	if err := bad.Validate(); err == nil {
		t.Error("short upper-case subject accepted")
	}
	bad = a
	bad.Reasons = []Reason{"Lab Positive"}
	var e *Error
	if err := bad.Validate(); !errors.As(err, &e) || e.Field != "rsn[0]" {
		t.Errorf("bad reason: err = %v, want field rsn[0]", err)
	}
}
