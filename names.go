package hcx

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxNameChars is the longest name accepted, in characters (code points after
// NFC normalisation), not bytes: a Chinese name of 64 characters is as
// acceptable as a Latin one.
const MaxNameChars = 64

// maxMarkRun is the most combining marks accepted on one letter after NFC
// normalisation: Vietnamese needs two, nothing real needs more than three.
const maxMarkRun = 3

// NormaliseName checks a person's name and returns it as it is stored: NFC
// normalised, trimmed, with runs of spaces made one. A name is what a person
// is called: letters of any script with their combining marks, spaces,
// hyphens, apostrophes, full stops and the middle dots of transliterated names
// (U+00B7 ·, U+30FB ・, U+2027 ‧), and one comma after the surname of a
// name in passport order ("SMITH, JOHN", stored with one space after the
// comma; MaskName shows the surname's initial). Zero-width joiners (U+200C, U+200D) are
// accepted between letters, where scripts such as Persian need them. Refused,
// as an EInvalid error on the field "name": invalid UTF-8, control
// characters, format characters (bidi controls, zero-width spaces, BOM, soft
// hyphens), digits, symbols, private-use and unassigned code points, U+FFFD,
// and names with no letter at all.
func NormaliseName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", Invalidf("name", "name is not valid UTF-8")
	}
	// Refuse before normalising, so the message names what was sent.
	for i, r := range name {
		if err := nameRune(r, i, name); err != nil {
			return "", err
		}
	}
	n := strings.Join(strings.Fields(norm.NFC.String(name)), " ")
	if n == "" {
		return "", Invalidf("name", "name is empty")
	}
	if strings.Contains(n, ",") {
		if strings.Count(n, ",") > 1 {
			return "", Invalidf("name", "name has more than one comma: write a name in passport order as SURNAME, Given names")
		}
		sur, given, _ := strings.Cut(n, ",")
		sur, given = strings.TrimSpace(sur), strings.TrimSpace(given)
		if !strings.ContainsFunc(sur, unicode.IsLetter) || !strings.ContainsFunc(given, unicode.IsLetter) {
			return "", Invalidf("name", "name has a comma without a surname before it or given names after it: write SURNAME, Given names, or the name without a comma")
		}
		n = sur + ", " + given
	}
	chars, letters, marks := 0, 0, 0
	first, _ := utf8.DecodeRuneInString(n)
	for _, r := range n {
		chars++
		switch {
		case unicode.IsLetter(r):
			letters++
			marks = 0
		case unicode.Is(unicode.M, r):
			if marks++; marks > maxMarkRun {
				return "", Invalidf("name", "name has more than %d combining marks on one letter", maxMarkRun)
			}
		default:
			marks = 0
		}
	}
	if letters == 0 {
		return "", Invalidf("name", "name has no letter: it must contain something a person can read")
	}
	if unicode.Is(unicode.M, first) {
		return "", Invalidf("name", "name starts with the combining mark U+%04X: a mark belongs after a letter", first)
	}
	if chars > MaxNameChars {
		return "", Invalidf("name", "name is %d characters; at most %d", chars, MaxNameChars)
	}
	return n, nil
}

// nameRune refuses one code point at byte offset i of name, saying which and
// where.
func nameRune(r rune, i int, name string) error {
	at := fmt.Sprintf("at byte %d", i)
	switch {
	case isLetterOrMark(r):
		return nil
	case r == ' ' || r == '-' || r == '\'' || r == '\u2019' || r == '.' || r == ',' || r == '\u00b7' || r == '\u30fb' || r == '\u2027':
		return nil
	case r == '\u200c' || r == '\u200d':
		before, _ := utf8.DecodeLastRuneInString(name[:i])
		after, _ := utf8.DecodeRuneInString(name[i+utf8.RuneLen(r):])
		if isLetterOrMark(before) && isLetterOrMark(after) {
			return nil
		}
		return Invalidf("name", "name has the zero-width joiner U+%04X %s not between two letters", r, at)
	case r == utf8.RuneError:
		return Invalidf("name", "name has U+FFFD %s, the mark of a character that could not be read: send the name as valid UTF-8", at)
	case unicode.IsControl(r):
		return Invalidf("name", "name has the control character U+%04X %s", r, at)
	case unicode.Is(unicode.Cf, r):
		return Invalidf("name", "name has the invisible format character U+%04X %s (such as a bidi control or a zero-width space): remove it", r, at)
	case unicode.IsSpace(r):
		return Invalidf("name", "name has the space character U+%04X %s: use a plain space (U+0020)", r, at)
	case unicode.IsDigit(r) || unicode.IsNumber(r):
		return Invalidf("name", "name has the digit %q %s: a name has no digits", r, at)
	case unicode.Is(unicode.Co, r):
		return Invalidf("name", "name has the private-use character U+%04X %s: other provinces cannot show it; use the standard character (GB 18030-2022 encodes rare name characters)", r, at)
	case !unicode.IsPrint(r):
		return Invalidf("name", "name has U+%04X %s, which is no character a name can have", r, at)
	}
	return Invalidf("name", "name has %q (U+%04X) %s: a name has letters, spaces, hyphens, apostrophes, full stops, middle dots (·) and one comma after a surname", r, r, at)
}

func isLetterOrMark(r rune) bool { return unicode.IsLetter(r) || unicode.Is(unicode.M, r) }
