package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// The operator's rules pages (issue 16 item 4): the rules in force, a
// candidate checked with its problems and its diff against them, how the
// rules in force or the candidate decide one resident, and the publish of
// a checked candidate, through GET/PUT /v1/rules, POST /v1/rules/check and
// POST /v1/rules/explain.
func init() {
	addRoutes(
		route{"GET /app/operator/rules", (*Server).opRules},
		route{"POST /app/operator/rules/check", (*Server).opRulesCheck},
		route{"POST /app/operator/rules/explain", (*Server).opRulesExplain},
		route{"POST /app/operator/rules/publish", (*Server).opRulesPublish},
	)
	translatedErrors = append(translatedErrors, node.CodeRulesChanged)
}

// maxRulesForm bounds a rules form: the candidate (node.MaxCandidateRules)
// form-encoded grows up to threefold, and the other fields are short.
const maxRulesForm = 3*node.MaxCandidateRules + 8<<10

// rulesPage is the rules page: the rules in force, and after a check its
// answer, after an explanation its answer.
type rulesPage struct {
	InForce   *node.RulesInForce
	Rules     []ruleRow
	Candidate string // the candidate's source, as typed
	Check     *node.RulesCheck
	Diff      []diffLine
	Explained *explained
	Sub       string
}

// ruleRow is a rule in force, its reasons in the page's language.
type ruleRow struct {
	node.RuleSummary
	ReasonText string
}

// diffLine is a line of the unified diff, with its kind for the colour.
type diffLine struct {
	Kind string // add, del, hunk, head or ""
	Text string
}

// explained is an explanation with its texts in the page's language.
type explained struct {
	*node.RulesExplanation
	Reasons string
	Release []string
}

// reasonsIn joins reasons' texts in the page's language.
func reasonsIn(rs []node.ReasonText, lang string) string {
	var out []string
	for _, r := range rs {
		out = append(out, textIn(node.Text{ZH: r.ZH, EN: r.EN, JA: r.JA, KO: r.KO}, lang))
	}
	return strings.Join(out, "; ")
}

// parseDiff splits a unified diff into lines and tells their kinds.
func parseDiff(d string) []diffLine {
	if d == "" {
		return nil
	}
	var out []diffLine
	for _, l := range strings.Split(strings.TrimSuffix(d, "\n"), "\n") {
		k := ""
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
			k = "head"
		case strings.HasPrefix(l, "@@"):
			k = "hunk"
		case strings.HasPrefix(l, "+"):
			k = "add"
		case strings.HasPrefix(l, "-"):
			k = "del"
		}
		out = append(out, diffLine{k, l})
	}
	return out
}

// rulesData reads the rules in force into the page.
func (s *Server) rulesData(r *http.Request, data *rulesPage) error {
	var in node.RulesInForce
	if err := s.getJSON(r, "/v1/rules", &in); err != nil {
		return err
	}
	data.InForce = &in
	lang := s.i18n.lang(r)
	for _, rule := range in.Rules {
		data.Rules = append(data.Rules, ruleRow{rule, reasonsIn(rule.Reasons, lang)})
	}
	if data.Candidate == "" {
		data.Candidate = in.Source
	}
	return nil
}

func (s *Server) opRules(w http.ResponseWriter, r *http.Request) {
	var data rulesPage
	if !s.needStaff(w, r, s.rulesData(r, &data)) {
		return
	}
	s.render(w, r, http.StatusOK, "operator-rules", Page{Who: s.staffWho(r), Data: data})
}

// parseRulesForm reads a rules form and gives back the candidate as it
// was typed: a browser submits a textarea's lines ending in CR LF (HTML's
// form encoding), which would make every line differ from the file in
// force and publish a file with CRs.
func parseRulesForm(w http.ResponseWriter, r *http.Request) (candidate string, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRulesForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over its bound", http.StatusRequestEntityTooLarge)
		return "", false
	}
	return strings.ReplaceAll(r.PostForm.Get("candidate"), "\r\n", "\n"), true
}

// showRules shows the rules page again with data and err (the API's
// refusal), after reading the rules in force.
func (s *Server) showRules(w http.ResponseWriter, r *http.Request, data rulesPage, err error) {
	if rerr := s.rulesData(r, &data); rerr != nil {
		s.needStaff(w, r, rerr)
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
		s.needStaff(w, r, err)
		return
	}
	s.showOp(w, r, "operator-rules", data, err)
}

// check asks the API about the candidate and puts its answer in data.
func (s *Server) check(r *http.Request, data *rulesPage) error {
	var c node.RulesCheck
	if _, err := s.rawAPI(r, http.MethodPost, "/v1/rules/check", "application/yaml", []byte(data.Candidate)).Decode(&c); err != nil {
		return opField(err, map[string]string{"body": "candidate"})
	}
	data.Check, data.Diff = &c, parseDiff(c.Diff)
	return nil
}

func (s *Server) opRulesCheck(w http.ResponseWriter, r *http.Request) {
	candidate, ok := parseRulesForm(w, r)
	if !ok {
		return
	}
	data := rulesPage{Candidate: candidate}
	err := s.check(r, &data)
	s.showRules(w, r, data, err)
}

func (s *Server) opRulesExplain(w http.ResponseWriter, r *http.Request) {
	candidate, ok := parseRulesForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	data := rulesPage{Candidate: candidate, Sub: strings.TrimSpace(f.Get("sub"))}
	body := map[string]any{"subject": data.Sub}
	if f.Get("use_candidate") == "1" {
		body["rules"] = data.Candidate
	}
	var ex node.RulesExplanation
	_, err := s.api.Do(withReason(r, f.Get("reason")), http.MethodPost, "/v1/rules/explain", body, &ex)
	if err == nil {
		lang := s.i18n.lang(r)
		e := &explained{RulesExplanation: &ex, Reasons: reasonsIn(ex.Decision.Reasons, lang)}
		for _, rel := range ex.Decision.Release {
			e.Release = append(e.Release, rel.Texts.In(hcx.Lang(lang)))
		}
		data.Explained = e
	}
	s.showRules(w, r, data, opField(err, map[string]string{"subject": "sub", "rules": "candidate", auth.HeaderReason: "explain-reason"}))
}

func (s *Server) opRulesPublish(w http.ResponseWriter, r *http.Request) {
	candidate, ok := parseRulesForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	data := rulesPage{Candidate: candidate}
	body := map[string]string{"source": data.Candidate, "base_version": f.Get("base_version")}
	_, err := s.api.Do(withReason(r, f.Get("reason")), http.MethodPut, "/v1/rules", body, nil)
	if err != nil {
		// Show the check again (a 409: the rules in force changed; the
		// diff is then against the new ones).
		_ = s.check(r, &data)
		s.showRules(w, r, data, opField(err, map[string]string{auth.HeaderReason: "publish-reason", "source": "candidate"}))
		return
	}
	redirect(w, r, "/app/operator/rules?done=rules_published")
}
