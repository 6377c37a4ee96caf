package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/audit"
)

// The finding kinds the watch's page names with printf (TestTranslationsComplete).
func init() {
	keyFamilies["aw_kind_"] = audit.Kinds
}

// TestTheWatchPageShowsEveryKindInEveryLanguage: the watch's page, with a
// finding of every kind, a failed last pass and the witness, renders in
// every language and in elderly mode without a missing translation; the
// switches work on the watch's listener; nothing but its pages is there.
func TestTheWatchPageShowsEveryKindInEveryLanguage(t *testing.T) {
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var h audit.History
	var fs []audit.Finding
	for i, k := range audit.Kinds {
		n := uint64(i)
		fs = append(fs, audit.Finding{Kind: k, Member: "http://hub-1", Index: &n, Size: 40 + n, Witness: "hcx-witness-x", Province: "440000", Seq: 7, Detail: "d"})
	}
	h.Record(at, 1500*time.Millisecond, &audit.Report{Start: 3, Size: 40, Findings: fs}, nil)
	h.Record(at.Add(time.Minute), time.Second, nil, errNoMember)
	h.Dropped = 2
	srv, err := NewWatch(WatchConfig{State: func() WatchState {
		return WatchState{History: h, Witness: WatchWitness{Name: "hcx-witness-x", Size: 40, Cosigned: 3}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range Languages {
		for _, care := range []string{"0", "1"} {
			r := httptest.NewRequest("GET", "/app/findings", nil)
			r.AddCookie(&http.Cookie{Name: LangCookie, Value: lang})
			r.AddCookie(&http.Cookie{Name: CareCookie, Value: care})
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			body := w.Body.String()
			if w.Code != http.StatusOK || strings.Contains(body, "⟦") || strings.Contains(body, "<no value>") {
				t.Fatalf("%s care %s: %d\n%s", lang, care, w.Code, body)
			}
			if n := strings.Count(body, `class="aw-finding"`); n != len(audit.Kinds) {
				t.Errorf("%s: %d findings shown, want %d", lang, n, len(audit.Kinds))
			}
			for _, want := range []string{"no hub member answered", "hcx-witness-x", "http://hub-1", "2026-03-01 16:00", `lang="` + lang + `"`} {
				if !strings.Contains(body, want) {
					t.Errorf("%s: the page lacks %q", lang, want)
				}
			}
			if (care == "1") != strings.Contains(body, `class="care"`) {
				t.Errorf("%s: elderly mode %s not shown", lang, care)
			}
		}
	}
	for path, want := range map[string]int{"/app/": 200, "/app/static/operator.css": 200, "/app/operator": 404, "/app/auditor": 404, "/app/login": 404} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want {
			t.Errorf("GET %s = %d, want %d", path, w.Code, want)
		}
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/app/prefs", strings.NewReader(url.Values{"lang": {"ko"}, "next": {"/app/findings"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	srv.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app/findings" || !strings.Contains(w.Header().Get("Set-Cookie"), LangCookie+"=ko") {
		t.Errorf("the language switch: %d %v", w.Code, w.Header())
	}
}

var errNoMember = errors.New("no hub member answered")
