package hcx

import (
	_ "embed"
	"strings"
	"sync"
)

// gb2260 is the GB/T 2260 list of administrative divisions, revision 201904,
// as published by the Ministry of Civil Affairs: source, revision, code, name.
//
//go:embed gb2260-201904.tsv
var gb2260 string

var divisions = sync.OnceValue(func() map[string]string {
	m := make(map[string]string, 3300)
	for i, line := range strings.Split(gb2260, "\n") {
		f := strings.Split(strings.TrimRight(line, "\r"), "\t")
		if i == 0 || len(f) < 4 {
			continue
		}
		m[f[2]] = f[3]
	}
	return m
})

// ProvinceCode is a GB/T 2260 provincial-level code: six digits ending in 0000.
type ProvinceCode string

// Validate checks that p is a provincial-level code in GB/T 2260 (2019).
func (p ProvinceCode) Validate() error {
	s := string(p)
	if len(s) != 6 || !allDigits(s) {
		return Invalidf("province", "province code %q must be six digits, such as 440000", s)
	}
	if !strings.HasSuffix(s, "0000") {
		return Invalidf("province", "%q is not a provincial-level code: it must end in 0000 (did you mean %s0000?)", s, s[:2])
	}
	if _, ok := divisions()[s]; !ok {
		return Invalidf("province", "%q is not a province in GB/T 2260 (2019)", s)
	}
	return nil
}

// Name is the province's name in Chinese, or "" if the code is unknown.
func (p ProvinceCode) Name() string { return divisions()[string(p)] }

// DivisionCode is any GB/T 2260 division code (province, prefecture, county).
type DivisionCode string

// Validate checks that d is a code in GB/T 2260 (2019).
func (d DivisionCode) Validate() error {
	s := string(d)
	if len(s) != 6 || !allDigits(s) {
		return Invalidf("div", "division code %q must be six digits, such as 440106", s)
	}
	if _, ok := divisions()[s]; !ok {
		return Invalidf("div", "%q is not a division in GB/T 2260 (2019)", s)
	}
	return nil
}

// Province is the provincial-level code that contains d.
func (d DivisionCode) Province() ProvinceCode {
	if len(d) < 2 {
		return ""
	}
	return ProvinceCode(string(d)[:2] + "0000")
}

// Name is the division's name in Chinese, or "" if the code is unknown.
func (d DivisionCode) Name() string { return divisions()[string(d)] }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
