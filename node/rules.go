package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// Rules over the API (issue 16): the province's operators read the rules in
// force, check a candidate rule file against them (its problems and a diff),
// see what a candidate would decide for one resident, and publish it. A
// publish writes the node's rule file and reloads it as a SIGHUP does
// (ReloadRulesAs): the trail records the change, every resident is decided
// again and the new policy is published to the hub.

// Audit actions of the rules routes.
const (
	// ActionRulesExplain: an operator saw how the rules decide one
	// resident, which shows the resident's facts.
	ActionRulesExplain = "rules.explain"
)

// MaxCandidateRules bounds a candidate rule file sent to the node: rule
// files are a few kilobytes; the bound also bounds the diff's work.
const MaxCandidateRules = 64 << 10

// CodeRulesChanged: a publish named a base version that is no longer in
// force (someone published meanwhile); the operator checks again.
const CodeRulesChanged = "rules_changed"

// RulesInForce is what an operator sees of the rules a node decides with.
type RulesInForce struct {
	Version  string           `json:"version"`
	Province hcx.ProvinceCode `json:"province"`
	Name     string           `json:"name"`
	Zone     string           `json:"zone"`
	// File is the rule file's base name: where it lives on the node's
	// disk is the node's business.
	File       string        `json:"file"`
	Source     string        `json:"source"`
	LoadedAt   time.Time     `json:"loaded_at"`
	Vaccinated string        `json:"vaccinated"`
	Rules      []RuleSummary `json:"rules"`
}

// RuleSummary is one rule as written, in file order.
type RuleSummary struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Colour      hcx.Colour     `json:"colour"`
	Reasons     []ReasonText   `json:"reasons"`
	When        string         `json:"when"`
	Since       string         `json:"since,omitempty"`
	Release     policy.Release `json:"release"`
	Line        int            `json:"line"`
}

// RulesInForce returns the rules in force.
func (n *Node) RulesInForce() *RulesInForce {
	cur := n.rules.Load()
	rs := cur.rs
	out := &RulesInForce{Version: cur.version, Province: rs.Province(), Name: rs.Name(), Zone: rs.Location().String(),
		File: filepath.Base(n.cfg.RulesPath), Source: string(rs.Source()), LoadedAt: cur.loadedAt,
		Vaccinated: rs.Vaccinated(), Rules: []RuleSummary{}}
	for _, r := range rs.Rules() {
		out.Rules = append(out.Rules, RuleSummary{Name: r.Name, Description: r.Description, Colour: r.Colour,
			Reasons: reasonTexts(r.Reasons), When: r.When, Since: r.Since, Release: r.Release, Line: r.Line})
	}
	return out
}

// RuleProblem is one problem of a candidate rule file: where (1-based line
// and column, 0 when unknown), in which rule and field, and what.
type RuleProblem struct {
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Rule    string `json:"rule,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// RulesCheck is the answer of a check: whether the candidate would load at
// this node, its version, and what it changes against the file in force.
type RulesCheck struct {
	OK       bool             `json:"ok"`
	Version  string           `json:"version,omitempty"`
	Province hcx.ProvinceCode `json:"province,omitempty"`
	Problems []RuleProblem    `json:"problems"`
	// Diff is the unified diff of the source in force to the candidate,
	// "" when they are the same bytes.
	Diff string `json:"diff"`
	// Same: the candidate decides as the rules in force do (the same
	// version); publishing it changes nothing.
	Same bool `json:"same"`
	// InForce is the version the diff is against: what a publish names
	// as its base_version.
	InForce string `json:"in_force"`
}

// candidateName names a candidate in problems and diffs.
const candidateName = "candidate"

// loadCandidate loads a candidate rule file as this node would load it and
// lists its problems: a file that does not compile, or is for another
// province. A nil rule set comes with at least one problem; an error is the
// node's own failure.
func (n *Node) loadCandidate(src []byte) (*policy.RuleSet, []RuleProblem, error) {
	rs, err := exchange.ParseRules(candidateName, src)
	if err != nil {
		var le *policy.LoadError
		var he *hcx.Error
		switch {
		case errors.As(err, &le):
			out := make([]RuleProblem, 0, len(le.Problems))
			for _, p := range le.Problems {
				out = append(out, RuleProblem{Line: p.Line, Col: p.Col, Rule: p.Rule, Field: p.Field, Message: p.Message})
			}
			return nil, out, nil
		case errors.As(err, &he) && he.Class == hcx.EInvalid:
			return nil, []RuleProblem{{Message: he.Message}}, nil
		}
		return nil, nil, err
	}
	if rs.Province() != n.cfg.Province {
		return nil, []RuleProblem{{Field: "province", Message: fmt.Sprintf("the rules are for province %s, this node is %s", rs.Province(), n.cfg.Province)}}, nil
	}
	return rs, nil, nil
}

// CheckRules checks a candidate rule file against the rules in force. A
// candidate that does not load is an answer (OK false, with its problems),
// not an error.
func (n *Node) CheckRules(src []byte) (*RulesCheck, error) {
	cur := n.rules.Load()
	rs, problems, err := n.loadCandidate(src)
	if err != nil {
		return nil, err
	}
	c := &RulesCheck{OK: rs != nil, Problems: problems, InForce: cur.version,
		Diff: unifiedDiff("in force/"+filepath.Base(n.cfg.RulesPath), candidateName, cur.rs.Source(), src)}
	if c.Problems == nil {
		c.Problems = []RuleProblem{}
	}
	if rs != nil {
		c.Version, c.Province, c.Same = rs.Version(), rs.Province(), rs.Version() == cur.version
	}
	return c, nil
}

// ExplainRequest asks how rules decide one resident: the rules in force, or
// a candidate rule file when Rules is set, at At (now when zero).
type ExplainRequest struct {
	Subject hcx.Subject
	Rules   []byte
	At      time.Time
}

// RulesExplanation is how a rule set decides one resident.
type RulesExplanation struct {
	Subject hcx.Subject `json:"subject"`
	// Policy is the version of the rules explained; Candidate says they
	// are the request's candidate, not the rules in force.
	Policy    string    `json:"policy"`
	Candidate bool      `json:"candidate"`
	At        time.Time `json:"at"`
	// Current is the resident's decision as the node holds it now (by
	// the rules it was decided with, Current.Policy).
	Current  CurrentDecision   `json:"current"`
	Decision ExplainedDecision `json:"decision"`
	// Trace is every rule, in file order: whether it holds and why.
	Trace []RuleTrace `json:"trace"`
	// Values are the summary variables the rules saw (policy.Values).
	Values []ExplainedValue `json:"values"`
}

// CurrentDecision is the node's own decision for a resident as stored.
type CurrentDecision struct {
	Colour hcx.Colour `json:"colour"`
	Rule   string     `json:"rule"`
	Since  time.Time  `json:"since"`
	Policy string     `json:"policy"`
}

// ExplainedDecision is a decision with every text a person reads.
type ExplainedDecision struct {
	Colour     hcx.Colour    `json:"colour"`
	Rule       string        `json:"rule"`
	Reasons    []ReasonText  `json:"reasons"`
	Since      *time.Time    `json:"since,omitempty"` // the deciding rule's anchor; none for the default rule
	Vaccinated bool          `json:"vaccinated"`
	Release    []ReleaseText `json:"release"`
	Held       []string      `json:"held"`
	Released   []string      `json:"released"`
}

// ReleaseText is one release condition: the rule it comes from, its kind
// (policy.CondWait, ...) and its texts, {"zh", "en", "ja", "ko"}.
type ReleaseText struct {
	Rule  string    `json:"rule"`
	Kind  string    `json:"kind"`
	Texts hcx.Texts `json:"texts"`
}

// RuleTrace is how one rule fared.
type RuleTrace struct {
	Rule     string        `json:"rule"`
	Colour   hcx.Colour    `json:"colour"`
	Holds    bool          `json:"holds"`
	Released bool          `json:"released"`
	Decides  bool          `json:"decides"`
	Since    *time.Time    `json:"since,omitempty"`
	Release  []ReleaseText `json:"release,omitempty"`
	Error    string        `json:"error,omitempty"`
	// Why says in English why the rule does or does not count.
	Why string `json:"why"`
}

// ExplainedValue is one variable as the rules saw it.
type ExplainedValue struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// ExplainResident decides one resident under the rules in force, or under
// a candidate, from the facts the node decides them from (decisionFacts),
// and says how every rule fared. It writes nothing but the trail entry
// (ActionRulesExplain, before anything is read: the answer shows the
// resident's facts). A candidate that does not load is EUnprocessable
// naming `rules`, with its problems; an unknown subject ErrUnknownResident.
func (n *Node) ExplainResident(ctx context.Context, req ExplainRequest) (*RulesExplanation, error) {
	entry, err := callerEntry(ctx, ActionRulesExplain, req.Subject)
	if err != nil {
		return nil, err
	}
	cur := n.rules.Load()
	rs, version := cur.rs, cur.version
	if req.Rules != nil {
		cand, problems, err := n.loadCandidate(req.Rules)
		if err != nil {
			return nil, err
		}
		if cand == nil {
			return nil, rulesProblems("rules", problems)
		}
		rs, version = cand, cand.Version()
	}
	at := req.At
	if at.IsZero() {
		at = n.cfg.Now()
	}
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	w := &write{}
	w.record(entry)
	err = n.write(w)
	release()
	if err != nil {
		return nil, err
	}

	var rec residentRecord
	var st colourState
	var facts *policy.Facts
	err = n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(req.Subject), &rec)
		if err != nil {
			return err
		}
		if !found {
			return ErrUnknownResident
		}
		if _, err := getJSON(txn, pState+string(req.Subject), &st); err != nil {
			return err
		}
		facts, err = loadFacts(txn, req.Subject)
		return err
	})
	if err != nil {
		return nil, err
	}
	held := n.status(&st, rec.Registered)
	n.decisionFacts(&rec, &st, facts)
	d, traces, err := rs.Explain(facts, at)
	if err != nil {
		// Explain reports rule errors in the traces; an error here is
		// the vaccination mark's condition failing at run time.
		return nil, hcx.Errorf(hcx.EUnprocessable, "rules_failed", "the rules fail for this resident: %v", err)
	}
	loc := rs.Location()
	out := &RulesExplanation{Subject: req.Subject, Policy: version, Candidate: req.Rules != nil, At: at.In(loc),
		Current: CurrentDecision{Colour: held.Colour, Rule: held.Rule, Since: held.Since, Policy: held.Policy},
		Decision: ExplainedDecision{Colour: d.Colour, Rule: d.Rule, Reasons: reasonTexts(d.Reasons), Vaccinated: d.Vaccinated,
			Release: releaseTexts(d.Release), Held: nonNil(d.Held), Released: nonNil(d.Released)}}
	if d.Rule != "default" && !d.Since.IsZero() {
		s := d.Since.In(loc)
		out.Decision.Since = &s
	}
	for _, t := range traces {
		rt := RuleTrace{Rule: t.Rule.Name, Colour: t.Rule.Colour, Holds: t.Holds, Released: t.Released,
			Decides: t.Rule.Name == d.Rule, Release: releaseTexts(t.Release), Why: traceWhy(&t, &d)}
		if t.Err != nil {
			rt.Error = t.Err.Error()
		}
		if t.Holds && !t.Since.IsZero() {
			s := t.Since.In(loc)
			rt.Since = &s
		}
		out.Trace = append(out.Trace, rt)
	}
	for _, v := range rs.Values(facts, at) {
		out.Values = append(out.Values, ExplainedValue{Name: v.Name, Text: v.Text})
	}
	return out, nil
}

// traceWhy says why a rule does or does not count, as `hcx policy explain`
// does.
func traceWhy(t *policy.Trace, d *policy.Decision) string {
	switch {
	case t.Err != nil:
		return "the rule fails at run time: " + t.Err.Error()
	case !t.Holds:
		return "does not hold: its condition is false (" + strings.Join(strings.Fields(t.Rule.When), " ") + ")"
	case t.Released:
		return "holds, but its release conditions are met"
	case t.Rule.Name == d.Rule:
		return "holds: decides the colour"
	case t.Rule.Colour == d.Colour:
		return "holds: adds its reasons and release conditions"
	}
	return "holds, but a more severe rule decides"
}

func releaseTexts(cs []policy.Condition) []ReleaseText {
	out := make([]ReleaseText, 0, len(cs))
	for _, c := range cs {
		out = append(out, ReleaseText{Rule: c.Rule, Kind: c.Kind, Texts: c.Texts()})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// rulesProblems is the error of a candidate that does not load: which field
// of the request carried it, and its problems.
func rulesProblems(field string, problems []RuleProblem) error {
	msg := "the rules do not load"
	if len(problems) > 0 {
		msg += ": " + problems[0].Message
		if len(problems) > 1 {
			msg += fmt.Sprintf(" (and %d more problems)", len(problems)-1)
		}
	}
	return &hcx.Error{Class: hcx.EUnprocessable, Code: "invalid_rules", Field: field, Message: msg,
		Detail: map[string]any{"problems": problems}}
}

// RulesPublished is the answer of a publish: the version now in force and
// the one before.
type RulesPublished struct {
	Version string `json:"version"`
	Was     string `json:"was"`
	// Unchanged: the source decides as the rules in force do (the same
	// version), so nothing was written.
	Unchanged bool `json:"unchanged,omitempty"`
}

// PublishRules makes src the province's rules, on behalf of the principal
// in ctx, if base is still the version in force: it writes the rule file
// atomically (the previous file kept as <file>.prev), synced before it
// answers, and reloads it (ReloadRulesAs: the trail entry, the re-decision
// of every resident and the publication to the hub follow). It returns
// EConflict CodeRulesChanged when base is not the version in force,
// EUnprocessable naming `source` when src does not load for this province,
// and changes nothing then. Publishes are serialised, so of two against
// the same base exactly one wins.
func (n *Node) PublishRules(ctx context.Context, src []byte, base string) (*RulesPublished, error) {
	if _, err := callerEntry(ctx, ActionRulesReload, ""); err != nil {
		return nil, err
	}
	if len(src) == 0 {
		return nil, hcx.Invalidf("source", "the rule file is empty")
	}
	if base == "" {
		return nil, hcx.Invalidf("base_version", "name the version your check was against (the in_force of the check)")
	}
	rs, problems, err := n.loadCandidate(src)
	if err != nil {
		return nil, err
	}
	if rs == nil {
		return nil, rulesProblems("source", problems)
	}
	n.publishMu.Lock()
	defer n.publishMu.Unlock()
	cur := n.rules.Load()
	if cur.version != base {
		return nil, &hcx.Error{Class: hcx.EConflict, Code: CodeRulesChanged, Field: "base_version",
			Message: fmt.Sprintf("the rules in force are %s, not %s: they were changed meanwhile; check your rules again", cur.version, base),
			Detail:  map[string]any{"version": cur.version}}
	}
	if rs.Version() == cur.version {
		return &RulesPublished{Version: cur.version, Was: cur.version, Unchanged: true}, nil
	}
	path := n.cfg.RulesPath
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the rule file in force: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	perm := fi.Mode().Perm()
	if err := writeFileSynced(path+".prev", old, perm); err != nil {
		return nil, n.notWritable("keep the previous rule file", err)
	}
	if err := writeFileSynced(path, src, perm); err != nil {
		return nil, n.notWritable("write the rule file", err)
	}
	if err := n.ReloadRulesAs(ctx); err != nil {
		// Not in force (the trail could not record it, say): the file
		// goes back to the rules that are, so that a restart or a SIGHUP
		// does not put in force what the operator was told failed.
		if rerr := writeFileSynced(path, old, perm); rerr != nil {
			n.log.Error("the rule file could not be put back after a failed publish", "file", path, "err", rerr)
		}
		return nil, err
	}
	now := n.rules.Load().version
	if now != rs.Version() {
		// A SIGHUP meanwhile reloads the file just written; only a hand
		// edit of the file between the write and the reload gets here.
		return nil, fmt.Errorf("rules %s were written but %s are in force: the file changed under the publish", rs.Version(), now)
	}
	return &RulesPublished{Version: now, Was: cur.version}, nil
}

// CodeRulesNotWritable: the node cannot write its rule file (a read-only
// mount, say), so rules cannot be published over the API.
const CodeRulesNotWritable = "rules_not_writable"

// notWritable is the error of a rule file the node could not write while
// doing what: unavailable, saying why without the node's paths (the log
// has them) and what to do instead.
func (n *Node) notWritable(what string, err error) error {
	n.log.Error("rules not published: "+what, "file", n.cfg.RulesPath, "err", err)
	cause := err
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		cause = pe.Err
	case errors.As(err, &le):
		cause = le.Err
	}
	return &hcx.Error{Class: hcx.EUnavailable, Code: CodeRulesNotWritable, Err: err,
		Message: fmt.Sprintf("the node could not %s (%v): publishing over the API needs the rule file and its directory writable by the node; meanwhile edit the file and reload with SIGHUP", what, cause)}
}

// writeFileSynced replaces path with data so that a crash leaves either the
// old file or the new one, and the new one on disk once it returns: a
// temporary file in the same directory, synced, renamed over path, and the
// directory synced so that the rename is durable. The file gets perm.
func writeFileSynced(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, nothing to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := errors.Join(f.Chmod(perm), f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
