package web

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// parseRoll reads the school roll's formats: a CSV with a code column, a
// CSV or text without a header (the longest field is the code), NDJSON and
// JSON of /v1/verify/batch; and refuses an empty, unreadable or too long
// roll naming the roll field.
func TestParseRoll(t *testing.T) {
	a, b := "HCX1:"+strings.Repeat("a", 300), "HCX1:"+strings.Repeat("b", 300)
	for _, c := range []struct {
		name, in      string
		codes, labels []string
	}{
		{"csv with a header", "\ufeffClass,No,Code\r\n3-1,01," + a + "\r\n3-1,02," + b + "\r\n", []string{a, b}, []string{"3-1 01", "3-1 02"}},
		{"csv without a header", a + ",3-1 01\n\n" + "02," + b + "\n", []string{a, b}, []string{"3-1 01", "02"}},
		{"one code per line", a + "\n" + b, []string{a, b}, []string{"", ""}},
		{"ndjson", `{"code":"` + a + `"}` + "\n" + `{"code":"` + b + `"}` + "\n", []string{a, b}, []string{"", ""}},
		{"json", `{"codes":["` + a + `","` + b + `"]}`, []string{a, b}, []string{"", ""}},
	} {
		codes, labels, err := parseRoll([]byte(c.in))
		if err != nil || !slices.Equal(codes, c.codes) || !slices.Equal(labels, c.labels) {
			t.Errorf("%s: %q %q %v", c.name, codes, labels, err)
		}
	}
	for _, c := range []struct{ name, in, code string }{
		{"empty", "\n\n", "invalid_roll"},
		{"bad ndjson", "{\"code\": 1}\n", "invalid_roll"},
		{"too long", strings.Repeat("x\n", MaxRollRows+1), "roll_too_long"},
		{"too long json", `{"codes":[` + strings.Repeat(`"x",`, MaxRollRows) + `"x"]}`, "roll_too_long"},
	} {
		_, _, err := parseRoll([]byte(c.in))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Code != c.code || fe.Field != "roll" || fe.Status != 400 {
			t.Errorf("%s: %v, want 400 %s naming roll", c.name, err, c.code)
		}
	}
	if codes, _, err := parseRoll([]byte(strings.Repeat("x\n", MaxRollRows))); err != nil || len(codes) != MaxRollRows {
		t.Errorf("a roll of exactly %d codes: %d, %v", MaxRollRows, len(codes), err)
	}
}
