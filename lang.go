package hcx

import (
	"encoding/json"
	"strings"
)

// Texts shown to people (issue 10 item 8): every text a resident, a
// guardian or a checkpoint reads is given in Chinese, English, Japanese and
// Korean, the languages of the health-code apps' international versions.
// A text is a Texts value: one string per language in the order of Langs.
// Tables of texts (reasonText below, the policy's release conditions) list
// them positionally, {"中文", "English", "日本語", "한국어"}, so that a new
// entry written with only {"中文", "English"} still compiles: the missing
// languages read as English until someone adds them, and `hcx policy check`
// warns about every reason without all four.

// Lang is a language of the texts shown to people, as a BCP 47 primary
// language subtag.
type Lang string

// The languages of Texts, in their order.
const (
	LangZH Lang = "zh"
	LangEN Lang = "en"
	LangJA Lang = "ja"
	LangKO Lang = "ko"
)

// Langs are the languages of a Texts value, in order.
var Langs = [4]Lang{LangZH, LangEN, LangJA, LangKO}

// Texts is one text in each of Langs, in that order. An empty text is a
// translation not written yet; In answers English for it.
type Texts [4]string

// index is l's position in Langs, or -1.
func (l Lang) index() int {
	for i, x := range Langs {
		if x == l {
			return i
		}
	}
	return -1
}

// ParseLang reads a language tag ("ja", "ko-KR", "zh-Hans-CN", "en-GB")
// or an Accept-Language header value ("ja,en;q=0.8") and answers the first
// language of Langs it names; Chinese when none.
func ParseLang(s string) Lang {
	for _, part := range strings.Split(s, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if l := Lang(primary); l.index() >= 0 {
			return l
		}
	}
	return LangZH
}

// In is the text in l: English when the text in l is not written yet or l
// is not one of Langs, and Chinese when there is no English either.
func (t Texts) In(l Lang) string {
	if i := l.index(); i >= 0 && t[i] != "" {
		return t[i]
	}
	if t[1] != "" {
		return t[1]
	}
	return t[0]
}

// Missing lists the languages without a text.
func (t Texts) Missing() []Lang {
	var out []Lang
	for i, s := range t {
		if s == "" {
			out = append(out, Langs[i])
		}
	}
	return out
}

// textsJSON is Texts as JSON: an object with a member per language.
type textsJSON struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
	JA string `json:"ja"`
	KO string `json:"ko"`
}

// MarshalJSON writes {"zh": …, "en": …, "ja": …, "ko": …}, every language
// filled (In's fallback for a text not written yet).
func (t Texts) MarshalJSON() ([]byte, error) {
	return json.Marshal(textsJSON{ZH: t.In(LangZH), EN: t.In(LangEN), JA: t.In(LangJA), KO: t.In(LangKO)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Texts) UnmarshalJSON(b []byte) error {
	var j textsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = Texts{j.ZH, j.EN, j.JA, j.KO}
	return nil
}
