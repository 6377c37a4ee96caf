package hcx

import "strings"

// Unified social credit codes (GB 32100-2015): the 18-character code of a
// legal entity or other organisation in China, such as 91120101MA05XXXXXX.
//
//	1      registration authority (1 organisation staffing, 5 civil
//	       affairs, 9 market regulation, Y other; later amendments added
//	       2, 3, 4, 6, 7, 8, A and N)
//	2      type of organisation under that authority
//	3-8    the registering authority's GB/T 2260 division
//	9-17   the organisation code (GB 11714, with its own check character)
//	18     the check character
//
// Every character is from usccChars (no I, O, S, V or Z); the check is mod 31.
const usccChars = "0123456789ABCDEFGHJKLMNPQRTUWXY"

var usccWeights = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}

// usccTypes lists the type codes of each registration authority. The four
// authorities of GB 32100-2015 have the types it lists; for the authorities
// added by later amendments any type 1 to 9 is accepted.
var usccTypes = map[byte]string{
	'1': "1239", // organs, public institutions, mass organisations, other
	'5': "1239", // social groups, private non-enterprise units, foundations, other
	'9': "123",  // enterprises, individual businesses, farmers' cooperatives
	'Y': "1",
	'2': "123456789", '3': "123456789", '4': "123456789", '6': "123456789",
	'7': "123456789", '8': "123456789", 'A': "123456789", 'N': "123456789",
}

// USCCCheckChar computes the GB 32100 check character of the first 17
// characters of a unified social credit code, which must be from its set.
func USCCCheckChar(first17 string) byte {
	sum := 0
	for i := 0; i < 17; i++ {
		sum += strings.IndexByte(usccChars, first17[i]) * usccWeights[i]
	}
	return usccChars[(31-sum%31)%31]
}

var gb11714Weights = [8]int{3, 7, 9, 10, 5, 8, 4, 2}

// OrgCodeCheckChar computes the GB 11714 check character of an
// organisation code's first 8 characters (digits and upper-case letters).
func OrgCodeCheckChar(first8 string) byte {
	sum := 0
	for i := 0; i < 8; i++ {
		c := first8[i]
		v := int(c - '0')
		if c >= 'A' && c <= 'Z' {
			v = int(c-'A') + 10
		}
		sum += v * gb11714Weights[i]
	}
	switch r := 11 - sum%11; r {
	case 10:
		return 'X'
	case 11:
		return '0'
	default:
		return byte('0' + r)
	}
}

// ValidateUSCC checks a unified social credit code (GB 32100-2015) as
// written: 18 characters, upper case, from the code's character set, a
// known registration authority and type, a GB/T 2260 division (or 100000
// for national bodies), an organisation code whose GB 11714 check holds, and
// the check character. It returns an EInvalid error naming field.
func ValidateUSCC(field, code string) error {
	const example = "such as 91120101MA05XXXXXX: 18 digits and upper-case letters, printed on the entity's business licence"
	if len(code) != 18 {
		return Invalidf(field, "a unified social credit code has 18 characters, got %d; %s", len(code), example)
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c >= 'a' && c <= 'z' {
			return Invalidf(field, "the unified social credit code has the lower-case letter %q at position %d; write it in upper case as printed on the licence", c, i+1)
		}
		if strings.IndexByte(usccChars, c) < 0 {
			return Invalidf(field, "the unified social credit code has %q at position %d; it uses digits and the letters A-Y except I, O, S, V and Z", c, i+1)
		}
	}
	types, ok := usccTypes[code[0]]
	if !ok {
		return Invalidf(field, "the unified social credit code starts with %q, which is no registration authority (1, 2, 3, 4, 5, 6, 7, 8, 9, A, N or Y)", code[0])
	}
	if strings.IndexByte(types, code[1]) < 0 {
		return Invalidf(field, "the unified social credit code's second character %q is no organisation type of registration authority %q (want one of %s)", code[1], code[0], types)
	}
	div := code[2:8]
	if !allDigits(div) {
		return Invalidf(field, "characters 3 to 8 of the unified social credit code are the registering division, six digits, not %s", div)
	}
	if div != "100000" && !prefectureCodes()[div[:4]] {
		if _, known := divisions()[div]; !known {
			return Invalidf(field, "characters 3 to 8 of the unified social credit code, %s, are no division of GB/T 2260: the code is probably mistyped", div)
		}
	}
	if want := OrgCodeCheckChar(code[8:16]); code[16] != want {
		return Invalidf(field, "characters 9 to 17 of the unified social credit code are an organisation code whose check character (GB 11714) should be %c, not %c: the code is probably mistyped", want, code[16])
	}
	if want := USCCCheckChar(code[:17]); code[17] != want {
		e := Invalidf(field, "the unified social credit code's check character (GB 32100) should be %c, not %c: the code is probably mistyped", want, code[17])
		e.Detail = map[string]any{"expected_check": string(want)}
		return e
	}
	return nil
}
