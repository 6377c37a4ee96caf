package hcx

import (
	_ "embed"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// iso3166 lists the officially assigned ISO 3166-1 alpha-3 codes, one per
// line after the comment lines.
//
//go:embed iso3166-alpha3.txt
var iso3166 string

// prefectures1980 lists the first four digits of every prefecture in any
// GB/T 2260 revision from 1980 to 2019.
//
//go:embed gb2260-prefectures-1980-2019.txt
var prefectures1980 string

// lineSet reads a list of codes, one per line, skipping "#" comments.
func lineSet(list string) map[string]bool {
	m := make(map[string]bool, 600)
	for _, line := range strings.Split(list, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			m[line] = true
		}
	}
	return m
}

var (
	iso3166Codes    = sync.OnceValue(func() map[string]bool { return lineSet(iso3166) })
	prefectureCodes = sync.OnceValue(func() map[string]bool { return lineSet(prefectures1980) })
)

// DocType is the type of an identity document (PROTOCOL.md §1).
type DocType string

// Document types. Passports are "PP-" followed by the ISO 3166-1 alpha-3 code
// of the issuing state, such as "PP-FRA".
const (
	DocCNID DocType = "CN-ID" // mainland resident identity card, GB 11643
	DocHKMO DocType = "HKMO"  // Hong Kong / Macau travel permit
	DocTW   DocType = "TW"    // Taiwan travel permit
	DocFPR  DocType = "FPR"   // foreigner permanent residence ID
)

// Validate checks the document type.
func (t DocType) Validate() error {
	switch t {
	case DocCNID, DocHKMO, DocTW, DocFPR:
		return nil
	}
	s := string(t)
	if strings.HasPrefix(s, "PP-") && len(s) == 6 {
		if !iso3166Codes()[s[3:]] {
			return Invalidf("doc_type", "passport type %q: %q is no state's ISO 3166-1 alpha-3 code; write the issuing state's code in upper case, such as PP-FRA or PP-DEU", s, s[3:])
		}
		return nil
	}
	return Invalidf("doc_type", "unknown document type %q: want CN-ID, HKMO, TW, FPR or PP-XXX", s)
}

// NormaliseDocNumber trims and upper-cases a document number (PROTOCOL.md §1).
func NormaliseDocNumber(n string) string { return strings.ToUpper(strings.TrimSpace(n)) }

// MinDocNumber is the shortest document number accepted: longer than the
// four-character ID tail a code shows, so that the tail never shows a whole
// number.
const MinDocNumber = 6

// ValidateDocument checks a normalised document number against its type, at
// time now in the province's zone (a birth date may be today, not tomorrow).
// Every number has 6 to 32 digits and upper-case letters. CN-ID: 18
// characters, a division of GB/T 2260, a real birth date from 1900 to today
// and the GB 11643 check digit. HKMO: H or M, 8 digits, optionally 2 more.
// TW: 8 digits. FPR: 15 letters and digits (2004 card) or 17 digits and a
// check character (2017 card). Passports: the length only, as states differ.
// It returns an EInvalid error naming doc_type or doc_number.
func ValidateDocument(t DocType, number string, now time.Time) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if number == "" {
		return Invalidf("doc_number", "document number is empty")
	}
	if len(number) > 32 {
		return Invalidf("doc_number", "document number is %d characters; at most 32", len(number))
	}
	if len(number) < MinDocNumber {
		return Invalidf("doc_number", "document number is %d characters; at least %d", len(number), MinDocNumber)
	}
	for i := 0; i < len(number); i++ {
		c := number[i]
		if !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') {
			return Invalidf("doc_number", "document number has %q at position %d: only digits and letters", c, i+1)
		}
	}
	switch t {
	case DocCNID:
		return validateCNID(number, now)
	case DocHKMO:
		if (number[0] != 'H' && number[0] != 'M') || (len(number) != 9 && len(number) != 11) || !allDigits(number[1:]) {
			return Invalidf("doc_number", "a Hong Kong / Macau permit number is H or M followed by 8 digits (and 2 more on some permits), such as H12345678")
		}
	case DocTW:
		if len(number) != 8 || !allDigits(number) {
			return Invalidf("doc_number", "a Taiwan permit number is 8 digits, such as 12345678")
		}
	case DocFPR:
		if !(len(number) == 15 || len(number) == 18 && allDigits(number[:17]) && (number[17] == 'X' || allDigits(number[17:]))) {
			return Invalidf("doc_number", "a permanent residence ID number is 15 letters and digits (2004 card) or 18 characters, 17 digits and a check digit or X (2017 card)")
		}
	}
	return nil
}

var gb11643Weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const gb11643Checks = "10X98765432"

// CNIDCheckDigit computes the GB 11643 check character of the first 17 digits.
func CNIDCheckDigit(first17 string) byte {
	sum := 0
	for i := 0; i < 17; i++ {
		sum += int(first17[i]-'0') * gb11643Weights[i]
	}
	return gb11643Checks[sum%11]
}

func validateCNID(n string, now time.Time) error {
	if len(n) != 18 {
		return Invalidf("doc_number", "a mainland resident ID number has 18 characters, got %d", len(n))
	}
	if !allDigits(n[:17]) {
		return Invalidf("doc_number", "the first 17 characters of a mainland resident ID number must be digits")
	}
	if err := validateRegistration(n[:6]); err != nil {
		return err
	}
	year, month, day := atoi(n[6:10]), atoi(n[10:12]), atoi(n[12:14])
	born := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	if born.Year() != year || int(born.Month()) != month || born.Day() != day {
		return Invalidf("doc_number", "ID number has the birth date %s, which is no day of the calendar", n[6:14])
	}
	if year < 1900 {
		return Invalidf("doc_number", "ID number has the birth date %s, before 1900", n[6:14])
	}
	ty, tm, td := now.Date()
	if born.After(time.Date(ty, tm, td, 0, 0, 0, 0, time.UTC)) {
		return Invalidf("doc_number", "ID number has the birth date %s, which is in the future (today is %04d%02d%02d)", n[6:14], ty, tm, td)
	}
	if want := CNIDCheckDigit(n); n[17] != want {
		return Invalidf("doc_number", "ID number check digit is %c but GB 11643 gives %c: a digit is probably mistyped", n[17], want)
	}
	return nil
}

// validateRegistration checks the six-digit address code of a mainland ID
// number: where the number was first issued, kept for life. The province must
// exist today (GB/T 2260, 2019); the code must be in the 2019 list or lie
// under a prefecture of any revision since 1980, because people keep codes
// abolished since (Chaohu 3414, Chongqing's Sichuan codes 5102). Residence
// permits of Taiwan residents use 830000, which GB/T 2260 does not list.
func validateRegistration(code string) error {
	if _, ok := divisions()[code[:2]+"0000"]; !ok && code != "830000" {
		return Invalidf("doc_number", "ID number starts with %s, which is no province in GB/T 2260", code[:2])
	}
	if _, ok := divisions()[code]; ok || code == "830000" || prefectureCodes()[code[:4]] {
		return nil
	}
	return Invalidf("doc_number", "ID number starts with %s, which is no division of GB/T 2260 (1980 to 2019): the first six digits are probably mistyped", code)
}

func atoi(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}

// MaskName shows one letter of a name followed by one "*" (PROTOCOL.md §6):
// a checkpoint sees an initial, never the length or the rest of the name.
// For a Chinese name it is the first character, the family name ("张三丰"
// becomes "张*"). A Latin (or other) name written in passport order,
// "SURNAME, Given names" (ICAO 9303), shows the surname's initial; without
// a comma the order is unknown and the name's first letter is shown, as
// for Chinese. Leading apostrophes or hyphens are skipped, and a letter
// with case is shown upper case, so "SMITH, JOHN", "smith, john" and
// "Smith-Jones, Anna" show "S*" and "John Smith" shows "J*".
func MaskName(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return ""
	}
	family := name
	if i := strings.IndexByte(name, ','); i > 0 {
		family = name[:i]
	}
	for _, r := range family {
		if unicode.IsLetter(r) {
			return string(unicode.ToUpper(r)) + "*"
		}
	}
	r, _ := utf8.DecodeRuneInString(name)
	return string(r) + "*"
}

// IDTail is the last four characters of a document number.
func IDTail(number string) string {
	if len(number) <= 4 {
		return number
	}
	return number[len(number)-4:]
}
