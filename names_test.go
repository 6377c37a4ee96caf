package hcx

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNamesAreNormalisedOrRefusedNamingTheField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"张三", "张三"},
		{"  张三  ", "张三"},
		{"José  María", "José María"},
		{"Jose\u0301", "José"}, // NFC: e + combining acute is é
		{"阿卜杜勒·艾力", "阿卜杜勒·艾力"},
		{"Seán O\u2019Brien", "Seán O\u2019Brien"},
		{"J. R. R. Tolkien", "J. R. R. Tolkien"},
		{"Nguyễn Thị Minh Khai", "Nguyễn Thị Minh Khai"},
		{"مهر\u200cناز", "مهر\u200cناز"},
		{strings.Repeat("张", MaxNameChars), strings.Repeat("张", MaxNameChars)},
	} {
		got, err := NormaliseName(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormaliseName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"", " ", "\u3000", "张\u3000三", "\x00", "a\tb", "a\nb", "\u0085", "张\u202a三", "\u200e张", "张\u200f",
		"a\u2068b", "\ufeff张", "张\u00ad三", "\u200b", "\u200d", "a\u200d", "\u0301", "e\u0301\u0301\u0301\u0301\u0301",
		"\ue000", "张\ufffd", "\xff", "张3", "张三!", "<script>", "😀", "\U000e0041", strings.Repeat("a", MaxNameChars+1),
	} {
		_, err := NormaliseName(bad)
		var e *Error
		if !errors.As(err, &e) || e.Field != "name" || e.Class != EInvalid {
			t.Errorf("NormaliseName(%q) = %v; want an invalid error naming name", bad, err)
		}
	}
}

func TestDocumentsAreRefusedWhenNoPersonCouldCarryThem(t *testing.T) {
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	id := func(first17 string) string { return first17 + string(CNIDCheckDigit(first17)) }
	for _, tc := range []struct {
		t      DocType
		number string
		field  string // "" when accepted
	}{
		{DocCNID, id("44010620000229002"), ""},
		{DocCNID, id("44010620261124002"), ""},
		{DocCNID, id("44010619000101002"), ""},
		{DocCNID, id("34140119850101002"), ""},           // Chaohu, abolished 2011
		{DocCNID, id("83000019850101002"), ""},           // Taiwan resident's residence permit
		{DocCNID, id("44010619000229002"), "doc_number"}, // 1900 was no leap year
		{DocCNID, id("44010620261125002"), "doc_number"},
		{DocCNID, id("44010618991231002"), "doc_number"},
		{DocCNID, id("44010619900631002"), "doc_number"},
		{DocCNID, id("44010619900000002"), "doc_number"},
		{DocCNID, id("44000119900307002"), "doc_number"}, // no prefecture 4400
		{DocCNID, id("72000019900307002"), "doc_number"},
		{"PP-DEU", "C01X00T47", ""},
		{"PP-CHN", "E12345678", ""},
		{"PP-ZZZ", "E12345678", "doc_type"},
		{"PP-XXA", "E12345678", "doc_type"}, // ICAO's stateless code is not ISO 3166-1
		{"PP-D<<", "E12345678", "doc_type"},
		{"PP-FRA", "12345", "doc_number"},
		{DocHKMO, "H1234567", "doc_number"},
		{DocHKMO, "H123456789", "doc_number"},
		{DocHKMO, "M12345678", ""},
		{DocTW, "123456789", "doc_number"},
		{DocTW, "1234567A", "doc_number"},
		{DocFPR, "93158619700101001X", ""},
		{DocFPR, "9315861970010100AB", "doc_number"},
	} {
		err := ValidateDocument(tc.t, tc.number, now)
		var e *Error
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %s: %v; want accepted", tc.t, tc.number, err)
		case tc.field != "" && (!errors.As(err, &e) || e.Field != tc.field):
			t.Errorf("%s %s: %v; want an error naming %s", tc.t, tc.number, err, tc.field)
		}
	}
}

// Issue 10: foreigners give a Latin name, often in passport order with a
// comma; a checkpoint sees one letter, as for a Chinese name.
func TestMaskNameShowsOneLetterInEveryScript(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"张三丰", "张*"},               // Chinese: the family name's character
		{"欧阳娜娜", "欧*"},              // a two-character family name still shows one
		{"SMITH, JOHN", "S*"},       // passport order: the surname's initial
		{"smith, john", "S*"},       // upper case, whatever was typed
		{"John Smith", "J*"},        // order unknown: the first letter, as for Chinese
		{"Smith-Jones, Anna", "S*"}, // hyphenated surname
		{"Anna Smith-Jones", "A*"},
		{"'Abdul Rahman", "A*"}, // a leading apostrophe is skipped
		{"O'Brien, Seán", "O*"},
		{"X", "X*"}, // one letter
		{"x", "X*"},
		{"Émile Zola", "É*"},       // accented capital
		{"陈大文 Chan Tai Man", "陈*"}, // mixed: what comes first
		{"CHAN, Tai Man 陈大文", "C*"},
		{"김민준", "김*"},     // Korean
		{"やまだ たろう", "や*"}, // Japanese kana
		{"", ""},
	} {
		if got := MaskName(tc.in); got != tc.want {
			t.Errorf("MaskName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// Never more than one letter and the star.
		if got := MaskName(tc.in); tc.in != "" && utf8.RuneCountInString(got) != 2 {
			t.Errorf("MaskName(%q) = %q: shows more than one character", tc.in, got)
		}
	}
}

func TestNameInPassportOrderKeepsOneComma(t *testing.T) {
	for in, want := range map[string]string{
		"SMITH, JOHN":   "SMITH, JOHN",
		"SMITH,JOHN":    "SMITH, JOHN",
		"SMITH ,  JOHN": "SMITH, JOHN",
	} {
		if got, err := NormaliseName(in); err != nil || got != want {
			t.Errorf("NormaliseName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{",", "SMITH,", ", JOHN", "A, B, C", "张三，李四"} {
		var e *Error
		if _, err := NormaliseName(bad); !errors.As(err, &e) || e.Field != "name" || e.Class != EInvalid {
			t.Errorf("NormaliseName(%q) = %v; want an invalid error naming name", bad, err)
		}
	}
}
