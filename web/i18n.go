package web

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// Languages are the pages' languages, the first the default: Chinese is
// the primary language of health codes.
var Languages = []string{"zh", "en", "ja", "ko"}

// Cookies that carry a browser's choices; neither is a secret.
const (
	LangCookie = "hcx_lang"
	CareCookie = "hcx_care"
)

// missingMark wraps a key that has no translation, so a test finds it in a
// rendered page (and people see something rather than nothing).
const missingMark = "⟦%s⟧"

type translations struct {
	bundle  *i18n.Bundle
	matcher language.Matcher
	tags    []language.Tag
	keys    map[string]map[string]bool // lang -> key -> present
	locs    map[string]*localizer
}

type localizer struct {
	lang string
	keys map[string]bool
	l    *i18n.Localizer
}

// loadTranslations reads the embedded translations.
func loadTranslations() (*translations, error) { return loadTranslationsFrom(localeFS) }

// loadTranslationsFrom reads locales/<lang>.toml and locales/*/<lang>.toml
// of fsys for each language.
func loadTranslationsFrom(localeFS fs.FS) (*translations, error) {
	tr := &translations{bundle: i18n.NewBundle(language.Chinese), keys: map[string]map[string]bool{}, locs: map[string]*localizer{}}
	tr.bundle.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	for _, lang := range Languages {
		// locales/<lang>.toml, then each area's locales/<area>/<lang>.toml
		// (checkpoint, operator, …): areas are translated in files of their
		// own, and a key defined twice is an error, never a silent override.
		files, err := fs.Glob(localeFS, "locales/*/"+lang+".toml")
		if err != nil {
			return nil, fmt.Errorf("web: translations: %w", err)
		}
		files = append([]string{"locales/" + lang + ".toml"}, files...)
		tr.keys[lang] = map[string]bool{}
		for _, name := range files {
			raw, err := fs.ReadFile(localeFS, name)
			if err != nil {
				return nil, fmt.Errorf("web: translations: %w", err)
			}
			mf, err := tr.bundle.ParseMessageFileBytes(raw, lang+".toml")
			if err != nil {
				return nil, fmt.Errorf("web: translations %s: %w", name, err)
			}
			for _, m := range mf.Messages {
				if tr.keys[lang][m.ID] {
					return nil, fmt.Errorf("web: translations %s: key %q is defined twice for %s", name, m.ID, lang)
				}
				tr.keys[lang][m.ID] = true
			}
		}
		tr.tags = append(tr.tags, language.MustParse(lang))
		// Each localizer falls back to nothing: a key missing in one
		// language shows as missing there, not silently in Chinese.
		tr.locs[lang] = &localizer{lang: lang, keys: tr.keys[lang], l: i18n.NewLocalizer(tr.bundle, lang)}
	}
	tr.matcher = language.NewMatcher(tr.tags)
	return tr, nil
}

// lang is the request's language: the hcx_lang cookie, else the best match
// of Accept-Language, else Chinese.
func (tr *translations) lang(r *http.Request) string {
	if c, err := r.Cookie(LangCookie); err == nil && tr.locs[c.Value] != nil {
		return c.Value
	}
	if al := r.Header.Get("Accept-Language"); al != "" && len(al) <= 512 {
		if prefs, _, err := language.ParseAcceptLanguage(al); err == nil && len(prefs) > 0 {
			_, i, conf := tr.matcher.Match(prefs...)
			if conf != language.No {
				return Languages[i]
			}
		}
	}
	return Languages[0]
}

func (tr *translations) localizer(lang string) *localizer {
	if l := tr.locs[lang]; l != nil {
		return l
	}
	return tr.locs[Languages[0]]
}

// has says whether every language translates key.
func (tr *translations) has(key string) bool {
	for _, lang := range Languages {
		if !tr.keys[lang][key] {
			return false
		}
	}
	return true
}

// t translates key with template data from name/value pairs.
func (l *localizer) t(log *slog.Logger, key string, kv ...any) string {
	return l.localize(log, key, nil, kv)
}

// plural translates key in the plural form of n ({{.Count}} in the text).
func (l *localizer) plural(log *slog.Logger, key string, n int) string {
	return l.localize(log, key, n, []any{"Count", n})
}

func (l *localizer) localize(log *slog.Logger, key string, count any, kv []any) string {
	if !l.keys[key] {
		log.Warn("web: missing translation", "lang", l.lang, "key", key)
		return fmt.Sprintf(missingMark, key)
	}
	var data map[string]any
	if len(kv) > 0 {
		data = map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				data[k] = kv[i+1]
			}
		}
	}
	s, err := l.l.Localize(&i18n.LocalizeConfig{MessageID: key, TemplateData: data, PluralCount: count})
	if err != nil {
		var nf *i18n.MessageNotFoundErr
		if !errors.As(err, &nf) {
			log.Warn("web: translation did not render", "lang", l.lang, "key", key, "err", err)
		}
		return fmt.Sprintf(missingMark, key)
	}
	return s
}

// careMode says whether the browser chose the elderly mode.
func careMode(r *http.Request) bool {
	c, err := r.Cookie(CareCookie)
	return err == nil && c.Value == "1"
}

// validLang says whether s is one of Languages.
func validLang(s string) bool {
	for _, l := range Languages {
		if s == l {
			return true
		}
	}
	return false
}

// keyOf is a string safe to use in a translation key: lower case letters,
// digits and _.
func keyOf(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			return c
		case c >= 'A' && c <= 'Z':
			return c + 'a' - 'A'
		}
		return '_'
	}, s)
}
