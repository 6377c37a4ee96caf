// Package hcx is the vocabulary of the federated health-code exchange: colours,
// province and division codes, subjects, attestations, reasons and error codes.
//
// Every other package speaks in these terms. This package imports no
// infrastructure: no network, no storage, no cryptography library.
package hcx

import (
	"fmt"
	"strings"
	"time"
)

// Colour is a health-code colour. The zero value is not a colour.
type Colour string

// The three colours, in increasing severity.
const (
	Green  Colour = "green"
	Yellow Colour = "yellow"
	Red    Colour = "red"
)

// Severity orders colours: green 1, yellow 2, red 3; anything else 0.
func (c Colour) Severity() int {
	switch c {
	case Green:
		return 1
	case Yellow:
		return 2
	case Red:
		return 3
	}
	return 0
}

// Validate reports whether c is one of the three colours.
func (c Colour) Validate() error {
	if c.Severity() == 0 {
		return Invalidf("colour", "unknown colour %q: want green, yellow or red", string(c))
	}
	return nil
}

// Label is the colour's name in Chinese and English, for people.
func (c Colour) Label() string {
	switch c {
	case Green:
		return "绿码 green"
	case Yellow:
		return "黄码 yellow"
	case Red:
		return "红码 red"
	}
	return string(c)
}

// MostSevere returns the most severe of the colours given, ignoring invalid
// ones; it returns "" when none is valid.
func MostSevere(cs ...Colour) Colour {
	var best Colour
	for _, c := range cs {
		if c.Severity() > best.Severity() {
			best = c
		}
	}
	return best
}

// Subject is the pseudonym of a person across the federation: 26 characters of
// lower-case base32 without padding (PROTOCOL.md §1). The hub and auditors see
// subjects only, never names or document numbers.
type Subject string

// Validate checks the subject's shape.
func (s Subject) Validate() error {
	if len(s) != 26 {
		return Invalidf("sub", "subject must be 26 base32 characters, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '2' && c <= '7') {
			return Invalidf("sub", "subject has %q at position %d: want lower-case base32 (a-z, 2-7)", c, i+1)
		}
	}
	return nil
}

// Attestation is one province's statement of a subject's colour, as carried in
// a colour batch (PROTOCOL.md §3). Times are Unix seconds, UTC.
type Attestation struct {
	Subject Subject  `json:"sub"`
	Colour  Colour   `json:"col"`
	Reasons []Reason `json:"rsn"`
	Eff     int64    `json:"eff"`
	Exp     int64    `json:"exp"`
	PolicyV string   `json:"pol"`
	N       uint64   `json:"n"`
}

// Validate checks an attestation's fields, naming the first one that is wrong.
func (a *Attestation) Validate() error {
	if err := a.Subject.Validate(); err != nil {
		return err
	}
	if err := a.Colour.Validate(); err != nil {
		return err
	}
	if a.Exp <= a.Eff {
		return Invalidf("exp", "expiry %d is not after effective time %d", a.Exp, a.Eff)
	}
	if a.N == 0 {
		return Invalidf("n", "per-subject sequence must start at 1")
	}
	for i, r := range a.Reasons {
		if err := r.Validate(); err != nil {
			return Invalidf(fmt.Sprintf("rsn[%d]", i), "%v", err)
		}
	}
	return nil
}

// Counts reports whether the attestation counts at time t: effective and not
// yet expired (PROTOCOL.md §7).
func (a *Attestation) Counts(t time.Time) bool {
	u := t.Unix()
	return a.Eff <= u && u < a.Exp
}

// Reason is a stable reason code such as "lab.positive".
type Reason string

// Reason codes known to every province. Provinces may use others of the same
// shape (lower-case words joined by dots and dashes).
const (
	ReasonLabPositive  Reason = "lab.positive"
	ReasonContactClose Reason = "contact.close"
	ReasonTravelRisk   Reason = "travel.risk-area"
	ReasonSymptoms     Reason = "declaration.symptoms"
	ReasonOrderCDC     Reason = "order.cdc"
	ReasonReleased     Reason = "released"
	ReasonClear        Reason = "clear"
)

// reasonText is the text of each known reason in Chinese, English,
// Japanese and Korean (Langs order; see lang.go). An entry with only
// Chinese and English compiles and reads as English in Japanese and Korean:
// `hcx policy check` lists such reasons.
var reasonText = map[Reason]Texts{
	ReasonLabPositive:  {"核酸或抗原检测阳性", "positive lab result", "PCR検査または抗原検査で陽性", "PCR 또는 항원 검사 양성"},
	ReasonContactClose: {"密切接触者", "close contact", "濃厚接触者", "밀접 접촉자"},
	ReasonTravelRisk:   {"到访中高风险地区", "visited a medium- or high-risk area", "中・高リスク地域に滞在", "중·고위험 지역 방문"},
	ReasonSymptoms:     {"申报有症状", "declared symptoms", "症状ありと申告", "증상 있음으로 신고"},
	ReasonOrderCDC:     {"疾控部门判定", "disease-control order", "疾病予防管理当局の判定", "질병관리 당국의 판정"},
	ReasonReleased:     {"已解除管控", "released from control", "管理解除済み", "관리 해제됨"},
	ReasonClear:        {"无异常", "no risk found", "異常なし", "이상 없음"},

	// Used by the sample provincial rules (configs/rules).
	"declaration.fever":     {"申报发热伴有症状", "declared a fever with symptoms", "発熱と症状ありと申告", "발열 및 증상 있음으로 신고"},
	"venue.exposure":        {"到访涉疫场所", "visited a venue linked to cases", "感染者が確認された施設を訪問", "확진자 관련 장소 방문"},
	"order.pending":         {"疾控判定待国家平台确认", "disease-control order awaiting national confirmation", "疾病予防管理当局の判定が国の確認待ち", "질병관리 당국의 판정이 국가 플랫폼 확인 대기 중"},
	"lab.recent-positive":   {"阳性解除后观察期", "watch period after a positive result", "陽性からの解除後の経過観察期間", "양성 해제 후 관찰 기간"},
	"travel.high-risk-area": {"到访高风险地区", "visited a high-risk area", "高リスク地域に滞在", "고위험 지역 방문"},
}

// Validate checks the reason code's shape.
func (r Reason) Validate() error {
	if r == "" || len(r) > 64 {
		return fmt.Errorf("reason code must be 1 to 64 characters")
	}
	for _, c := range string(r) {
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("reason code %q has %q: want lower-case letters, digits, '.', '-' or '_'", string(r), c)
		}
	}
	return nil
}

// Text returns the reason in Chinese and English; unknown codes read as themselves.
func (r Reason) Text() (zh, en string) {
	t, _ := r.Texts()
	return t[0], t[1]
}

// Texts returns the reason in every language of Langs (a translation not
// written yet is empty; Texts.In falls back to English) and whether the
// code has texts at all: an unknown code reads as itself, dots as spaces.
func (r Reason) Texts() (Texts, bool) {
	if t, ok := reasonText[r]; ok {
		return t, true
	}
	s := strings.ReplaceAll(string(r), ".", " ")
	return Texts{s, s, s, s}, false
}
