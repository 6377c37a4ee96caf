package hcx

import (
	"strings"
	"unicode/utf8"
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
		for i := 3; i < 6; i++ {
			if s[i] < 'A' || s[i] > 'Z' {
				return Invalidf("doc_type", "passport type %q: the state must be three upper-case letters (ISO 3166-1 alpha-3), such as PP-FRA", s)
			}
		}
		return nil
	}
	return Invalidf("doc_type", "unknown document type %q: want CN-ID, HKMO, TW, FPR or PP-XXX", s)
}

// NormaliseDocNumber trims and upper-cases a document number (PROTOCOL.md §1).
func NormaliseDocNumber(n string) string { return strings.ToUpper(strings.TrimSpace(n)) }

// ValidateDocument checks a normalised document number against its type. For
// CN-ID it enforces the 18-character shape, a known division, a plausible
// birth date and the GB 11643 check digit.
func ValidateDocument(t DocType, number string) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if number == "" {
		return Invalidf("doc_number", "document number is empty")
	}
	if len(number) > 32 {
		return Invalidf("doc_number", "document number is %d characters; at most 32", len(number))
	}
	for i := 0; i < len(number); i++ {
		c := number[i]
		if !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') {
			return Invalidf("doc_number", "document number has %q at position %d: only digits and letters", c, i+1)
		}
	}
	if t == DocCNID {
		return validateCNID(number)
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

func validateCNID(n string) error {
	if len(n) != 18 {
		return Invalidf("doc_number", "a mainland resident ID number has 18 characters, got %d", len(n))
	}
	if !allDigits(n[:17]) {
		return Invalidf("doc_number", "the first 17 characters of a mainland resident ID number must be digits")
	}
	if _, ok := divisions()[n[:2]+"0000"]; !ok {
		return Invalidf("doc_number", "ID number starts with %s, which is no province in GB/T 2260", n[:2])
	}
	month, day := atoi(n[10:12]), atoi(n[12:14])
	if month < 1 || month > 12 || day < 1 || day > 31 {
		return Invalidf("doc_number", "ID number has an impossible birth date %s", n[6:14])
	}
	if want := CNIDCheckDigit(n); n[17] != want {
		return Invalidf("doc_number", "ID number check digit is %c but GB 11643 gives %c: a digit is probably mistyped", n[17], want)
	}
	return nil
}

func atoi(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}

// MaskName shows the first character of a name followed by one "*", so "张三丰"
// becomes "张*" (PROTOCOL.md §6): a checkpoint sees a family name, never the
// length or the rest of the name.
func MaskName(name string) string {
	r, size := utf8.DecodeRuneInString(strings.TrimSpace(name))
	if size == 0 {
		return ""
	}
	return string(r) + "*"
}

// IDTail is the last four characters of a document number.
func IDTail(number string) string {
	if len(number) <= 4 {
		return number
	}
	return number[len(number)-4:]
}
