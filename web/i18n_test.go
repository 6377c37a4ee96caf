package web

import (
	"bytes"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hcxfed/hcx/policy"
)

var (
	// tKey is a literal key of t or tn in a template.
	tKey = regexp.MustCompile(`\b(?:t|tn)\s+"([a-z0-9_]+)"`)
	// tFamily is a key built in a template: t (printf "colour_%s" .Colour).
	tFamily = regexp.MustCompile(`printf\s+"([a-z0-9_]+)%s"`)
	// doneParam is a notice a redirect asks for (done=x shows done_x).
	doneParam = regexp.MustCompile(`\bdone=([a-z_]+)`)
)

// keyFamilies are the values of the keys that templates build with printf:
// each family's keys must all be translated.
var keyFamilies = map[string][]string{
	"colour_":  {"green", "yellow", "red"},
	"risk_":    {"high", "medium"},
	"symptom_": symptomKeys(),
}

func symptomKeys() []string {
	var out []string
	for _, s := range policy.Symptoms() {
		out = append(out, keyOf(s))
	}
	return out
}

// usedKeys collects every translation key the package uses: literal keys
// in templates, the families templates build, the notices of redirects
// (done=) and the translated API errors.
func usedKeys(t *testing.T) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	var sources []string
	err := fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(templateFS, p)
		sources = append(sources, string(b))
		for _, m := range tKey.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		for _, m := range tFamily.FindAllStringSubmatch(string(b), -1) {
			vals, ok := keyFamilies[m[1]]
			if !ok {
				t.Errorf("%s builds keys %s%%s: list the family's values in keyFamilies", p, m[1])
			}
			for _, v := range vals {
				used[m[1]+v] = true
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	goFiles, _ := filepath.Glob("*.go")
	for _, f := range goFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, string(b))
	}
	for _, src := range sources {
		for _, m := range doneParam.FindAllStringSubmatch(src, -1) {
			used["done_"+m[1]] = true
		}
	}
	for _, c := range translatedErrors {
		used["err_"+c] = true
	}
	return used
}

// TestTranslationsComplete: every key the pages use is in all four
// languages' files, and no file holds a key nobody uses.
func TestTranslationsComplete(t *testing.T) {
	tr, err := loadTranslations()
	if err != nil {
		t.Fatal(err)
	}
	used := usedKeys(t)
	if len(used) < 20 {
		t.Fatalf("found only %d keys in the templates: is the pattern broken?", len(used))
	}
	for _, lang := range Languages {
		for k := range used {
			if !tr.keys[lang][k] {
				t.Errorf("locales/%s.toml has no %q", lang, k)
			}
		}
		for k := range tr.keys[lang] {
			if !used[k] {
				t.Errorf("locales/%s.toml has %q, which no page uses", lang, k)
			}
		}
	}
}

// TestMissingKeyRendersMarked: a key without translation renders as ⟦key⟧
// and is logged; the page does not fail.
func TestMissingKeyRendersMarked(t *testing.T) {
	tr, err := loadTranslations()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if got := tr.localizer("en").t(log, "no_such_key"); got != "⟦no_such_key⟧" {
		t.Errorf("a missing key renders %q", got)
	}
	if !strings.Contains(logs.String(), "missing translation") || !strings.Contains(logs.String(), "no_such_key") {
		t.Errorf("a missing key is not logged: %q", logs.String())
	}
	if got := tr.localizer("en").t(log, "code_id_tail", "Tail", "0037"); got != "ID ending 0037" {
		t.Errorf("a key with data renders %q", got)
	}
}

// TestLanguageChoice: the cookie wins, then Accept-Language, then Chinese.
func TestLanguageChoice(t *testing.T) {
	tr, err := loadTranslations()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cookie, accept, want string }{
		{"", "", "zh"},
		{"", "en-GB,en;q=0.9", "en"},
		{"", "ja-JP", "ja"},
		{"", "ko", "ko"},
		{"", "zh-TW,zh;q=0.9", "zh"},
		{"", "fr-FR,de;q=0.8", "zh"},
		{"", "fr-FR,ko;q=0.5", "ko"},
		{"ja", "en", "ja"},
		{"xx", "en", "en"}, // a cookie that is no language is ignored
		{"", strings.Repeat("en,", 300), "zh"},
	} {
		r := httptest.NewRequest("GET", "/app/", nil)
		if c.cookie != "" {
			r.AddCookie(&http.Cookie{Name: LangCookie, Value: c.cookie})
		}
		if c.accept != "" {
			r.Header.Set("Accept-Language", c.accept)
		}
		if got := tr.lang(r); got != c.want {
			t.Errorf("cookie %q, Accept-Language %.20q: %s, want %s", c.cookie, c.accept, got, c.want)
		}
	}
}

// TestPagePath: the switches return only to a page of this server.
func TestPagePath(t *testing.T) {
	for in, want := range map[string]string{
		"/app/login":                "/app/login",
		"/app/resident?x=1":         "/app/resident?x=1",
		"":                          "/app/",
		"https://evil.example":      "/app/",
		"//evil.example/app/":       "/app/",
		"/app//evil.example":        "/app/",
		"/app/\\evil":               "/app/",
		"/v1/me":                    "/app/",
		"/app/x\r\nSet-Cookie: a=b": "/app/",
	} {
		if got := pagePath(in); got != want {
			t.Errorf("pagePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRecorderBound: a page reads at most maxAPIAnswer bytes of an API
// answer and says so.
func TestRecorderBound(t *testing.T) {
	rec := &Recorder{header: http.Header{}}
	if _, err := rec.Write(make([]byte, maxAPIAnswer)); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Write([]byte("x")); err == nil {
		t.Fatal("a write beyond the bound succeeded")
	}
	if _, err := rec.Decode(nil); err == nil {
		t.Error("Decode of an answer cut at the bound succeeded")
	}
	if !slices.Contains(Languages, "zh") || Languages[0] != "zh" {
		t.Errorf("Languages %v: Chinese comes first", Languages)
	}
}

// TestAKeyDefinedTwiceIsRefused: areas keep their translations in files of
// their own (locales/<area>/<lang>.toml); two files defining one key would
// let whichever loads last win, silently.
func TestAKeyDefinedTwiceIsRefused(t *testing.T) {
	fsys := fstest.MapFS{}
	for _, lang := range Languages {
		fsys["locales/"+lang+".toml"] = &fstest.MapFile{Data: []byte("title = \"x\"\n")}
		fsys["locales/checkpoint/"+lang+".toml"] = &fstest.MapFile{Data: []byte("scan = \"y\"\n")}
	}
	tr, err := loadTranslationsFrom(fsys)
	if err != nil {
		t.Fatalf("two areas with distinct keys: %v", err)
	}
	if !tr.keys["ko"]["scan"] || !tr.keys["ko"]["title"] {
		t.Errorf("keys read for ko: %v, want title and scan", tr.keys["ko"])
	}
	fsys["locales/operator/ja.toml"] = &fstest.MapFile{Data: []byte("title = \"z\"\n")}
	if _, err := loadTranslationsFrom(fsys); err == nil || !strings.Contains(err.Error(), `"title" is defined twice`) {
		t.Errorf("a key defined in two files: %v, want refused naming it", err)
	}
}
