package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/audit"
)

// watchFindings is GET /v1/findings's answer as a test reads it.
type watchFindings struct {
	Findings []audit.Sighting `json:"findings"`
	Total    int              `json:"total"`
	Passes   uint64           `json:"passes"`
	Last     audit.Pass       `json:"last_pass"`
	Witness  struct {
		Name string `json:"name"`
		Size uint64 `json:"size"`
	} `json:"witness"`
}

// getFindings reads the watch's GET /v1/findings at addr with query q.
func getFindings(t *testing.T, addr, q string) (int, watchFindings) {
	t.Helper()
	code, body := getText(t, "http://"+addr+"/v1/findings"+q)
	var out watchFindings
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("GET /v1/findings%s: %v\n%s", q, err, body)
		}
	}
	return code, out
}

// runWatchUntil runs hcx audit --watch in the background; stop ends it and
// waits for it, and the test's end does if nothing did.
func runWatchUntil(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAudit(ctx, append(args, "--watch", "200ms"), io.Discard, io.Discard) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hcx audit --watch: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// badCosignatureIn is the words the findings page uses for a
// bad_cosignature finding, by language (web/locales/auditor-watch).
var badCosignatureIn = map[string]string{"zh": "见证联署无法验证", "en": "A witness cosignature does not verify", "ja": "証人の連署を検証できない", "ko": "증인 공동 서명을 검증할 수 없음"}

// TestTheAuditorsFindingsPage (issue 16 item 5): hcx audit --watch keeps
// each distinct finding over its passes (a member serving a cosignature
// that does not verify is one finding seen again and again, not a new one
// every pass), serves them at GET /v1/findings and on its page /app/ in
// every language and elderly mode with the last pass and its own witness,
// and a restart on the same state keeps them.
func TestTheAuditorsFindingsPage(t *testing.T) {
	addr := freeAddr(t)
	f := startTestFederationWith(t, federationConfig{Dir: t.TempDir(), HubMembers: 1, Witnesses: []string{"http://" + addr + "/v1/witness"}})
	liar := lyingMember(t, f, f.HubURLs[0], map[string]func([]byte) []byte{"/v1/checkpoint": flipCosignature})
	state := filepath.Join(t.TempDir(), "audit")
	stop := runWatchUntil(t, "--hub", f.HubURLs[0]+","+liar, "--dir", f.Dir, "--state", state, "--metrics", addr)
	submitRedBatches(t, f, 2)
	waitSettled(t, f)

	var got watchFindings
	waitUntil(t, "a bad_cosignature finding seen in two passes, and the witness's cosigned size", 40*time.Second, func() bool {
		_, got = getFindings(t, addr, "")
		return len(got.Findings) > 0 && got.Findings[0].Times >= 2 && got.Witness.Size > 0
	})
	for _, s := range got.Findings {
		if s.Kind != audit.KindCosignature || s.Member != liar || s.Witness != got.Witness.Name || s.Seen.Before(s.First) || s.Notes != nil {
			t.Errorf("unexpected finding: %+v", s)
		}
	}
	if got.Total != len(got.Findings) || got.Passes < 2 || got.Last.Error != "" || got.Last.Size == 0 || got.Last.At.IsZero() {
		t.Errorf("GET /v1/findings: %+v", got)
	}
	if code, one := getFindings(t, addr, "?limit=1"); code != http.StatusOK || len(one.Findings) != 1 || one.Total != got.Total {
		t.Errorf("?limit=1: %d, %d findings of %d", code, len(one.Findings), one.Total)
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x"} {
		if code, body := getText(t, "http://"+addr+"/v1/findings"+q); code != http.StatusBadRequest || !strings.Contains(body, `"limit"`) {
			t.Errorf("GET /v1/findings%s = %d %s, want 400 naming limit", q, code, body)
		}
	}

	t.Run("the page in every language and elderly mode", func(t *testing.T) {
		b := startBrowser(t, "http://"+addr)
		b.eachLook("auditor-findings", "/app/findings", func(lang string, care bool) {
			var rows []string
			b.eval(`[...document.querySelectorAll("tr.aw-finding")].map(tr => tr.innerText)`, &rows)
			if len(rows) == 0 || !strings.Contains(rows[0], badCosignatureIn[lang]) || !strings.Contains(rows[0], liar) {
				t.Errorf("%s: the findings table shows %q, want %q at %s", lang, rows, badCosignatureIn[lang], liar)
			}
			if text := b.text(); !strings.Contains(text, got.Witness.Name) {
				t.Errorf("%s: the page lacks the witness %s:\n%s", lang, got.Witness.Name, text)
			}
		})
		b.load("/app/")
		if text := b.text(); !strings.Contains(text, badCosignatureIn[b.lang]) {
			t.Errorf("/app/ does not show the findings:\n%s", text)
		}
	})

	t.Run("a restart keeps the history", func(t *testing.T) {
		stop()
		_, before := getFindings(t, addr, "")
		if before.Total != 0 {
			t.Fatalf("the stopped watch still answers: %+v", before)
		}
		restarted := time.Now()
		runWatchUntil(t, "--hub", f.HubURLs[0], "--dir", f.Dir, "--state", state, "--metrics", addr)
		var kept watchFindings
		waitUntil(t, "the restarted watch's first pass", 20*time.Second, func() bool {
			_, kept = getFindings(t, addr, "")
			return kept.Last.At.After(restarted)
		})
		if kept.Passes <= got.Passes || kept.Last.Error != "" || kept.Last.Findings != 0 {
			t.Errorf("the restarted watch's passes: %d (before: %d), last %+v", kept.Passes, got.Passes, kept.Last)
		}
		if len(kept.Findings) == 0 || kept.Findings[0].Member != liar || kept.Findings[0].Times < got.Findings[0].Times || !kept.Findings[0].First.Equal(got.Findings[0].First) {
			t.Errorf("after a restart without the liar: %+v, before %+v", kept.Findings, got.Findings)
		}
	})
}
