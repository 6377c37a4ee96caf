package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// Release conditions read in Chinese, English, Japanese and Korean; the
// Chinese and English texts are what they were before the four languages.
func TestConditionTextsInFourLanguages(t *testing.T) {
	loc := time.FixedZone("CST", 8*3600)
	at := time.Date(2026, 3, 1, 9, 30, 0, 0, loc)
	for _, tc := range []struct {
		c    Condition
		want hcx.Texts
	}{
		{Condition{Kind: CondWait, Until: at}, hcx.Texts{"隔离至 2026-03-01 09:30", "stay isolated until 2026-03-01 09:30 CST", "2026-03-01 09:30 CST まで隔離", "2026-03-01 09:30 CST까지 격리"}},
		{Condition{Kind: CondTests, NegativeTestsNeeded: 2, TestKinds: []string{"pcr", "antigen"}, NotBefore: at, IntervalHours: 24},
			hcx.Texts{"还需 2 次核酸或抗原阴性结果，下一次须在 2026-03-01 09:30 之后采样，每次间隔至少 24 小时",
				"2 more negative PCR or antigen tests, the next one after 2026-03-01 09:30 CST, at least 24 hours apart",
				"PCRまたは抗原検査の陰性結果があと 2 回必要、次の検査は 2026-03-01 09:30 CST 以降、各回 24 時間以上の間隔をあけて",
				"PCR 또는 항원 검사 음성 결과 2회 더 필요, 다음 검사는 2026-03-01 09:30 CST 이후, 매회 24시간 이상 간격"}},
		{Condition{Kind: CondTests, NegativeTestsNeeded: 1, NotBefore: at, asOf: at.Add(time.Hour)},
			hcx.Texts{"还需 1 次阴性结果，现在即可采样", "1 more negative test, the next one any time now", "陰性結果があと 1 回必要、次の検査は今すぐ受けられます", "음성 결과 1회 더 필요, 다음 검사는 지금 바로 가능"}},
		{Condition{Kind: CondOrder}, hcx.Texts{"待疾控部门解除管控", "the disease-control authority must lift its order", "疾病予防管理当局による措置の解除が必要", "질병관리 당국의 조치 해제 필요"}},
		{Condition{Kind: CondNote, Note: &Text{ZH: "中", EN: "en"}}, hcx.Texts{"中", "en", "", ""}},
	} {
		got := tc.c.Texts()
		if got != tc.want {
			t.Errorf("%s: got\n%q\nwant\n%q", tc.c.Kind, got, tc.want)
		}
		if zh, en := tc.c.Text(); zh != got[0] || en != got[1] {
			t.Errorf("%s: Text() = %q / %q", tc.c.Kind, zh, en)
		}
		for _, l := range hcx.Langs {
			if strings.TrimSpace(got.In(l)) == "" {
				t.Errorf("%s: no text in %s", tc.c.Kind, l)
			}
		}
	}
}
