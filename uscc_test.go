package hcx

import (
	"errors"
	"strings"
	"testing"
)

// validUSCC completes a USCC's first 16 characters with both check characters.
func validUSCC(first16 string) string {
	s := first16[:16] + string(OrgCodeCheckChar(first16[8:16]))
	return s + string(USCCCheckChar(s))
}

func TestUSCCKnownCodes(t *testing.T) {
	// Codes of real companies as quoted publicly (names from memory, not
	// checked against the licences here); each passes both checks.
	for _, code := range []string{
		"91110000802100433B", // China Petroleum & Chemical Corporation (Sinopec)
		"91440300708461136T", // Tencent Technology (Shenzhen)
		"91330100799655058B", // Alibaba (China) Co., Ltd.
	} {
		if err := ValidateUSCC("uscc", code); err != nil {
			t.Errorf("%s: %v", code, err)
		}
	}
}

func TestUSCCBadInput(t *testing.T) {
	good := validUSCC("9112010100000000")
	if err := ValidateUSCC("uscc", good); err != nil {
		t.Fatalf("%s: %v", good, err)
	}
	wrongCheck := good[:17] + string(usccChars[(strings.IndexByte(usccChars, good[17])+1)%31])
	cases := map[string]struct{ code, want string }{
		"wrong check character": {wrongCheck, "should be " + good[17:]},
		"17 characters":         {good[:17], "18 characters, got 17"},
		"19 characters":         {good + "0", "18 characters, got 19"},
		"lower case":            {strings.ToLower(validUSCC("91120101MA05ABCD")), "upper case"},
		"letter I":              {"9112010I" + good[8:], "letters A-Y except"},
		"no authority":          {"B" + good[1:], "no registration authority"},
		"no type":               {"98" + good[2:], "no organisation type"},
		"no division":           {validUSCC("9100000000000000"), "no division"},
		"org code check":        {good[:16] + "Y" + good[17:], "GB 11714"},
		"empty":                 {"", "got 0"},
	}
	for name, c := range cases {
		err := ValidateUSCC("uscc", c.code)
		var e *Error
		if !errors.As(err, &e) || e.Class != EInvalid || e.Field != "uscc" || !strings.Contains(e.Message, c.want) {
			t.Errorf("%s (%q): got %v, want a 400 naming uscc saying %q", name, c.code, err, c.want)
		}
	}
	err := ValidateUSCC("uscc", wrongCheck)
	var e *Error
	if errors.As(err, &e); e.Detail["expected_check"] != good[17:] {
		t.Errorf("wrong check character: detail %v, want expected_check %s", e.Detail, good[17:])
	}
}
