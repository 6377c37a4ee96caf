// Package policy is the colour rule engine of a province node: it loads a
// province's rules from a YAML file whose conditions are CEL expressions,
// checks them when loaded, and decides a resident's colour from their facts,
// with stable reason codes, the rule that fired and the release conditions a
// resident can act on.
//
// The engine is the same everywhere; each province has its own rule file
// (configs/rules/<province>.yaml, format in docs/rules.md). Decisions are pure
// and deterministic: the same rules, facts and clock give the same decision on
// every node. The package imports no infrastructure; the policy version (SM3
// of Canonical) is computed by the caller and injected with WithHash.
package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // rules name their zone; decide the same in a scratch image

	"cel.dev/cel-go/cel"
	"github.com/hcxfed/hcx"
	"gopkg.in/yaml.v3"
)

// Format is the rule-file format this engine reads; it is part of Canonical.
const Format = "hcx-rules/1"

// DefaultZone is the zone of a rule file that names none.
const DefaultZone = "Asia/Shanghai"

// RuleSet is one province's compiled rules. It is immutable once loaded and
// safe for concurrent use.
type RuleSet struct {
	file       string
	src        []byte
	province   hcx.ProvinceCode
	name       string
	zone       string
	loc        *time.Location
	vaccinated *expr
	rules      []*Rule // file order
	order      []*Rule // most severe colour first, then file order
	canonical  []byte
	version    string
}

// Rule is one compiled rule.
type Rule struct {
	Name        string
	Colour      hcx.Colour
	Reasons     []hcx.Reason
	Description string
	When        string // the condition as written
	Since       string // the release anchor as written, "" if none
	Release     Release
	Line        int // line of the rule in its file

	when  *expr
	since *expr
}

// Release says how a rule that holds is released: after Days of isolation
// counted from the rule's anchor (its `since`), and NegativeTests negative
// results taken at or after the anchor, each at least TestIntervalHours after
// the previous one counted, and, when CheckIns is set, a daily health
// check-in on each of the last CheckIns local days. OrderLifted rules are released only when the
// disease-control order is lifted. Note is shown to the resident as is.
type Release struct {
	Days              int      `json:"days,omitempty"`
	CalendarDays      bool     `json:"calendar_days,omitempty"`
	NegativeTests     int      `json:"negative_tests,omitempty"`
	TestIntervalHours int      `json:"test_interval_hours,omitempty"`
	TestKinds         []string `json:"test_kinds,omitempty"`
	OrderLifted       bool     `json:"order_lifted,omitempty"`
	Note              *Text    `json:"note,omitempty"`
	// CheckIns is how many daily health check-ins release needs: one on
	// each of the last CheckIns local days in the province's zone, today
	// included, all at or after the anchor.
	CheckIns int `json:"checkins,omitempty"`
}

// MaxCheckInDays bounds release.checkins: a resident's history keeps the
// newest 32 check-ins, so a longer streak could never be seen.
const MaxCheckInDays = 30

// Text is a message for people in Chinese and English.
type Text struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
	// JA and KO are optional: without them the note reads as English in
	// Japanese and Korean, and `hcx policy check` says so.
	JA string `json:"ja,omitempty"`
	KO string `json:"ko,omitempty"`
}

func (r Release) automatic() bool { return r.Days > 0 || r.NegativeTests > 0 || r.CheckIns > 0 }

type expr struct {
	src string
	ast *cel.Ast
	prg cel.Program
}

// Option changes how a rule set is loaded.
type Option func(*options)

type options struct {
	hash func([]byte) []byte
}

// WithHash makes the rule set carry its version: the first 16 bytes of
// hash(Canonical()), in hex. The node passes SM3.
func WithHash(hash func([]byte) []byte) Option {
	return func(o *options) { o.hash = hash }
}

// LoadFile reads, parses, compiles and type-checks a rule file. A *LoadError
// names the file, the rule and the line:column of every problem found.
func LoadFile(path string, opts ...Option) (*RuleSet, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return Parse(path, src, opts...)
}

// Province is the province whose rules these are.
func (rs *RuleSet) Province() hcx.ProvinceCode { return rs.province }

// Name is the rule file's display name, such as "北京市 Beijing".
func (rs *RuleSet) Name() string { return rs.name }

// File is the name the rules were loaded from.
func (rs *RuleSet) File() string { return rs.file }

// Location is the province's time zone, in which rules are evaluated.
func (rs *RuleSet) Location() *time.Location { return rs.loc }

// Source is the rule file's bytes as read.
func (rs *RuleSet) Source() []byte { return rs.src }

// Canonical is the rule set as deterministic JSON, independent of the YAML's
// layout, comments, descriptions and of how each CEL expression is spaced:
// the bytes the policy version is the hash of.
func (rs *RuleSet) Canonical() []byte { return rs.canonical }

// Version is hex(hash(Canonical())[:16]) when the rules were loaded WithHash,
// "" otherwise.
func (rs *RuleSet) Version() string { return rs.version }

// Rules are the rules in file order.
func (rs *RuleSet) Rules() []*Rule { return rs.rules }

// Vaccinated is the condition of the vaccination mark, as written.
func (rs *RuleSet) Vaccinated() string { return rs.vaccinated.src }

// Problem is one thing wrong in a rule file.
type Problem struct {
	File      string
	Line, Col int    // 1-based; 0 when unknown
	Rule      string // "" for problems outside a rule
	Field     string
	Message   string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Col)
	}
	b.WriteString(": ")
	if p.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", p.Rule)
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadError is a rule file that was refused, with every problem found.
type LoadError struct {
	File     string
	Problems []Problem
}

func (e *LoadError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid rules: " + e.Problems[0].String()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("invalid rules: %d problems in %s:\n%s", len(e.Problems), e.File, strings.Join(lines, "\n"))
}

// Unwrap makes hcx.ClassOf see an invalid-input error.
func (e *LoadError) Unwrap() error {
	return &hcx.Error{Class: hcx.EInvalid, Code: "invalid_rules", Message: "invalid rule file"}
}

// parser collects problems while walking the YAML tree.
type parser struct {
	file     string
	src      []byte
	lines    []string
	problems []Problem
	rule     string
}

func (p *parser) addf(n *yaml.Node, field, format string, args ...any) {
	pr := Problem{File: p.file, Rule: p.rule, Field: field, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Col = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

// fields walks a mapping node, calling set for each key it allows and
// refusing unknown and repeated keys.
func (p *parser) fields(n *yaml.Node, what string, allowed []string, set func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.addf(n, "", "%s must be a mapping (key: value lines), not %s", what, kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(allowed, k.Value) {
			p.addf(k, "", "unknown field %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))
			continue
		}
		if seen[k.Value] {
			p.addf(k, "", "field %q given twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		set(k.Value, k, v)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "empty"
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.addf(n, field, "want text, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(n *yaml.Node, field string, min, max int) int {
	if n.Kind != yaml.ScalarNode {
		p.addf(n, field, "want a whole number, got %s", kindName(n))
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < min || v > max {
		p.addf(n, field, "want a whole number from %d to %d, got %q", min, max, n.Value)
		return 0
	}
	return v
}

func (p *parser) boolean(n *yaml.Node, field string) bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.addf(n, field, "want true or false, got %s", kindName(n))
	}
	return b
}

func (p *parser) strings(n *yaml.Node, field string) []string {
	if n.Kind != yaml.SequenceNode {
		p.addf(n, field, "want a list, such as [a, b], got %s", kindName(n))
		return nil
	}
	var out []string
	for _, c := range n.Content {
		if s, ok := p.str(c, field); ok {
			out = append(out, s)
		}
	}
	return out
}

// Parse is LoadFile from bytes; name is the file name used in errors.
func Parse(name string, src []byte, opts ...Option) (*RuleSet, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{file: name, src: src, lines: strings.Split(string(src), "\n")}
	fail := func() error { return &LoadError{File: name, Problems: p.problems} }

	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		pr := Problem{File: name, Message: strings.TrimPrefix(err.Error(), "yaml: ")}
		// yaml.v3 reports "line N: ..." inside the message.
		if i := strings.Index(pr.Message, "line "); i >= 0 {
			rest := pr.Message[i+5:]
			if j := strings.IndexByte(rest, ':'); j > 0 {
				if l, err := strconv.Atoi(rest[:j]); err == nil {
					pr.Line, pr.Col = l, 1
					pr.Message = strings.TrimSpace(pr.Message[:i] + rest[j+1:])
				}
			}
		}
		p.problems = append(p.problems, pr)
		return nil, fail()
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.addf(nil, "", "the file is empty: want province, zone and rules")
		return nil, fail()
	}
	root := doc.Content[0]

	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: build CEL environment: %w", err)
	}
	rs := &RuleSet{file: name, src: src, zone: DefaultZone}
	var rulesNode, vaccNode *yaml.Node
	p.fields(root, "the rule file", []string{"province", "name", "zone", "vaccinated", "rules"}, func(key string, k, v *yaml.Node) {
		switch key {
		case "province":
			if s, ok := p.str(v, key); ok {
				rs.province = hcx.ProvinceCode(s)
				if err := rs.province.Validate(); err != nil {
					p.addf(v, key, "%s", strings.TrimPrefix(err.Error(), "province: "))
				}
			}
		case "name":
			rs.name, _ = p.str(v, key)
		case "zone":
			if s, ok := p.str(v, key); ok {
				rs.zone = s
			}
			if rs.zone == "" || rs.zone == "Local" {
				p.addf(v, key, "name an IANA zone such as Asia/Shanghai")
			} else if _, err := time.LoadLocation(rs.zone); err != nil {
				p.addf(v, key, "unknown time zone %q: want an IANA name such as Asia/Shanghai or Asia/Urumqi", rs.zone)
			}
		case "vaccinated":
			vaccNode = v
		case "rules":
			rulesNode = v
		}
	})
	if root.Kind != yaml.MappingNode {
		return nil, fail()
	}
	if rs.province == "" {
		p.addf(root, "province", "missing: name the province, such as province: \"110000\"")
	}
	if loc, err := time.LoadLocation(rs.zone); err == nil {
		rs.loc = loc
	}

	if vaccNode == nil {
		rs.vaccinated = p.compile(env, nil, "vaccinated", "vax.complete", cel.BoolType)
	} else if s, ok := p.str(vaccNode, "vaccinated"); ok {
		rs.vaccinated = p.compile(env, vaccNode, "vaccinated", s, cel.BoolType)
	}

	if rulesNode == nil {
		p.addf(root, "rules", "missing: a rule file needs at least one rule")
	} else if rulesNode.Kind != yaml.SequenceNode {
		p.addf(rulesNode, "rules", "want a list of rules (lines starting with '- name:'), got %s", kindName(rulesNode))
	} else {
		names := map[string]int{}
		for i, rn := range rulesNode.Content {
			r := p.parseRule(env, i, rn)
			if r == nil {
				continue
			}
			if prev, dup := names[r.Name]; dup {
				p.addf(rn, "name", "the name is also used by the rule on line %d: rule names must be unique", prev)
			}
			names[r.Name] = rn.Line
			rs.rules = append(rs.rules, r)
		}
	}
	p.rule = ""
	if len(p.problems) > 0 {
		return nil, fail()
	}

	rs.order = append([]*Rule(nil), rs.rules...)
	sort.SliceStable(rs.order, func(i, j int) bool {
		return rs.order[i].Colour.Severity() > rs.order[j].Colour.Severity()
	})
	rs.canonical, err = rs.makeCanonical()
	if err != nil {
		return nil, fmt.Errorf("policy: canonical form: %w", err)
	}
	if o.hash != nil {
		h := o.hash(rs.canonical)
		if len(h) > 16 {
			h = h[:16]
		}
		rs.version = hex.EncodeToString(h)
	}
	return rs, nil
}

var ruleFields = []string{"name", "description", "colour", "reasons", "when", "since", "release"}
var releaseFields = []string{"days", "calendar_days", "negative_tests", "test_interval_hours", "test_kinds", "order_lifted", "note", "checkins"}

func (p *parser) parseRule(env *cel.Env, i int, n *yaml.Node) *Rule {
	p.rule = fmt.Sprintf("#%d", i+1)
	if n.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == "name" && n.Content[j+1].Kind == yaml.ScalarNode && n.Content[j+1].Value != "" {
				p.rule = n.Content[j+1].Value
			}
		}
	}
	r := &Rule{Line: n.Line}
	var whenN, sinceN *yaml.Node
	p.fields(n, "a rule", ruleFields, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			r.Name, _ = p.str(v, key)
			if strings.TrimSpace(r.Name) != r.Name || strings.ContainsAny(r.Name, " \t\n") {
				p.addf(v, key, "rule names are one word, such as positive-lab-result")
			}
		case "description":
			r.Description, _ = p.str(v, key)
		case "colour":
			if s, ok := p.str(v, key); ok {
				r.Colour = hcx.Colour(s)
				if r.Colour.Validate() != nil {
					p.addf(v, key, "unknown colour %q: want green, yellow or red", s)
				}
			}
		case "reasons":
			for _, s := range p.strings(v, key) {
				rc := hcx.Reason(s)
				if err := rc.Validate(); err != nil {
					p.addf(v, key, "%v", err)
					continue
				}
				r.Reasons = append(r.Reasons, rc)
			}
		case "when":
			whenN = v
		case "since":
			sinceN = v
		case "release":
			p.release(v, &r.Release)
		}
	})
	if n.Kind != yaml.MappingNode {
		return nil
	}
	if r.Name == "" {
		p.addf(n, "name", "missing: every rule needs a name, such as name: positive-lab-result")
	}
	if r.Colour == "" {
		p.addf(n, "colour", "missing: want green, yellow or red")
	}
	if len(r.Reasons) == 0 {
		p.addf(n, "reasons", "missing: give at least one reason code, such as reasons: [lab.positive]")
	}
	if whenN == nil {
		p.addf(n, "when", "missing: the condition under which the rule holds, such as when: labs.positive_count > 0")
	} else if s, ok := p.str(whenN, "when"); ok {
		r.When = s
		r.when = p.compile(env, whenN, "when", s, cel.BoolType)
	}
	if sinceN != nil {
		if s, ok := p.str(sinceN, "since"); ok {
			r.Since = s
			r.since = p.compile(env, sinceN, "since", s, cel.TimestampType)
		}
	}
	if r.Release.OrderLifted && r.Release.automatic() {
		p.addf(n, "release", "order_lifted cannot be combined with days, negative_tests or checkins: the order decides")
	}
	if r.Colour == hcx.Green && (r.Release.automatic() || r.Release.OrderLifted) {
		p.addf(n, "release", "a green rule has nothing to release")
	}
	return r
}

func (p *parser) release(n *yaml.Node, r *Release) {
	p.fields(n, "release", releaseFields, func(key string, k, v *yaml.Node) {
		field := "release." + key
		switch key {
		case "days":
			r.Days = p.integer(v, field, 0, 365)
		case "calendar_days":
			r.CalendarDays = p.boolean(v, field)
		case "negative_tests":
			r.NegativeTests = p.integer(v, field, 0, 50)
		case "test_interval_hours":
			r.TestIntervalHours = p.integer(v, field, 0, 24*30)
		case "test_kinds":
			for _, s := range p.strings(v, field) {
				if s != "pcr" && s != "antigen" {
					p.addf(v, field, "unknown test kind %q: want pcr or antigen", s)
				}
				r.TestKinds = append(r.TestKinds, s)
			}
		case "order_lifted":
			r.OrderLifted = p.boolean(v, field)
		case "checkins":
			r.CheckIns = p.integer(v, field, 0, MaxCheckInDays)
		case "note":
			t := &Text{}
			p.fields(v, field, []string{"zh", "en", "ja", "ko"}, func(key string, k, v *yaml.Node) {
				s, _ := p.str(v, field+"."+key)
				switch key {
				case "zh":
					t.ZH = s
				case "en":
					t.EN = s
				case "ja":
					t.JA = s
				case "ko":
					t.KO = s
				}
			})
			if t.ZH == "" || t.EN == "" {
				p.addf(v, field, "a note needs both zh and en texts")
			}
			r.Note = t
		}
	})
	if r.NegativeTests > 0 && r.TestIntervalHours == 0 {
		r.TestIntervalHours = 24
	}
	if r.NegativeTests > 0 && len(r.TestKinds) == 0 {
		r.TestKinds = []string{"pcr"}
	}
}

// compile parses and type-checks one CEL expression that must produce want.
// n is the YAML node the expression came from, for positions; nil for a
// built-in default.
func (p *parser) compile(env *cel.Env, n *yaml.Node, field, src string, want *cel.Type) *expr {
	if strings.TrimSpace(src) == "" {
		p.addf(n, field, "the expression is empty")
		return nil
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			line, col := p.position(n, e.Location.Line(), e.Location.Column())
			msg := e.Message
			if snippet := snippetAt(src, e.Location.Line(), e.Location.Column()); snippet != "" {
				msg += "\n" + snippet
			}
			p.problems = append(p.problems, Problem{File: p.file, Line: line, Col: col, Rule: p.rule, Field: field, Message: msg})
		}
		return nil
	}
	if !ast.OutputType().IsExactType(want) {
		noun := map[*cel.Type]string{cel.BoolType: "true or false (a bool)", cel.TimestampType: "a time (a timestamp)"}[want]
		p.addf(n, field, "the expression gives %s, but %s must give %s", ast.OutputType(), field, noun)
		return nil
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		p.addf(n, field, "%v", err)
		return nil
	}
	return &expr{src: src, ast: ast, prg: prg}
}

// position maps a CEL error location (1-based line, 0-based column within
// the expression) to the line:column of the rule file.
func (p *parser) position(n *yaml.Node, line, col int) (int, int) {
	if n == nil {
		return 0, 0
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// The text starts on the line after the indicator. A literal keeps
		// line breaks; a folded scalar joins its lines with spaces.
		first := n.Line + 1
		if n.Style == yaml.LiteralStyle {
			// Columns count from the block's indentation, that of its first line.
			return first + line - 1, p.indent(first) + col + 1
		}
		off := col
		for l := first; l <= len(p.lines); l++ {
			text := strings.TrimSpace(p.lines[l-1])
			if off <= len(text) {
				return l, p.indent(l) + off + 1
			}
			off -= len(text) + 1
		}
		return first, 1
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		return n.Line + line - 1, n.Column + col + 1
	}
	if line > 1 {
		return n.Line + line - 1, p.indent(n.Line+line-1) + col + 1
	}
	return n.Line, n.Column + col
}

func (p *parser) indent(line int) int {
	if line < 1 || line > len(p.lines) {
		return 0
	}
	s := p.lines[line-1]
	return len(s) - len(strings.TrimLeft(s, " \t"))
}

// snippetAt renders the expression's line with a caret under the column.
func snippetAt(src string, line, col int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	l := lines[line-1]
	if col < 0 || col > len(l) {
		return ""
	}
	return "    | " + l + "\n    | " + strings.Repeat(".", col) + "^"
}

type canonicalRule struct {
	Name    string       `json:"name"`
	Colour  hcx.Colour   `json:"colour"`
	Reasons []hcx.Reason `json:"reasons"`
	When    string       `json:"when"`
	Since   string       `json:"since,omitempty"`
	Release Release      `json:"release"`
}

type canonicalSet struct {
	Format     string          `json:"format"`
	Province   string          `json:"province"`
	Zone       string          `json:"zone"`
	Vaccinated string          `json:"vaccinated"`
	Rules      []canonicalRule `json:"rules"`
}

func unparse(e *expr) (string, error) {
	if e == nil {
		return "", nil
	}
	return cel.AstToString(e.ast)
}

func (rs *RuleSet) makeCanonical() ([]byte, error) {
	c := canonicalSet{Format: Format, Province: string(rs.province), Zone: rs.zone, Rules: []canonicalRule{}}
	var err error
	if c.Vaccinated, err = unparse(rs.vaccinated); err != nil {
		return nil, err
	}
	for _, r := range rs.rules {
		cr := canonicalRule{Name: r.Name, Colour: r.Colour, Reasons: r.Reasons, Release: r.Release}
		if cr.When, err = unparse(r.when); err != nil {
			return nil, err
		}
		if cr.Since, err = unparse(r.since); err != nil {
			return nil, err
		}
		c.Rules = append(c.Rules, cr)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
