package hcx

import (
	"encoding/json"
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

func TestTextsInFourLanguages(t *testing.T) {
	// The reasons every province knows have all four texts.
	for _, r := range []Reason{ReasonLabPositive, ReasonContactClose, ReasonTravelRisk, ReasonSymptoms, ReasonOrderCDC, ReasonReleased, ReasonClear,
		"declaration.fever", "venue.exposure", "order.pending", "lab.recent-positive", "travel.high-risk-area"} {
		tx, known := r.Texts()
		if !known || len(tx.Missing()) != 0 {
			t.Errorf("%s: texts %q, missing %v", r, tx, tx.Missing())
		}
		if zh, en := r.Text(); zh != tx[0] || en != tx[1] {
			t.Errorf("%s: Text() = %q %q, Texts() = %q", r, zh, en, tx)
		}
	}
	// An entry another engineer adds in zh and en only still compiles and
	// reads as English in Japanese and Korean.
	two := Texts{"新理由", "new reason"}
	if two.In(LangJA) != "new reason" || two.In(LangKO) != "new reason" || two.In(LangZH) != "新理由" || two.In("fr") != "new reason" {
		t.Errorf("fallback: %q %q %q", two.In(LangJA), two.In(LangKO), two.In("fr"))
	}
	if m := two.Missing(); len(m) != 2 || m[0] != LangJA || m[1] != LangKO {
		t.Errorf("missing = %v", m)
	}
	b, err := json.Marshal(two)
	if err != nil || string(b) != `{"zh":"新理由","en":"new reason","ja":"new reason","ko":"new reason"}` {
		t.Errorf("JSON = %s, %v", b, err)
	}
	var back Texts
	if err := json.Unmarshal(b, &back); err != nil || back.In(LangEN) != "new reason" {
		t.Errorf("read back %q, %v", back, err)
	}
	// Unknown codes read as themselves in every language.
	if tx, known := Reason("x.y").Texts(); known || tx.In(LangKO) != "x y" {
		t.Errorf("unknown = %q, %v", tx, known)
	}
	for in, want := range map[string]Lang{"ja": LangJA, "ko-KR": LangKO, "en-GB,en;q=0.9": LangEN, "fr,ja;q=0.5": LangJA, "zh-Hans-CN": LangZH, "": LangZH, "de": LangZH} {
		if got := ParseLang(in); got != want {
			t.Errorf("ParseLang(%q) = %s, want %s", in, got, want)
		}
	}
}
