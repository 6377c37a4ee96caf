package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

const policyUsage = `Usage: hcx policy check [--vars] FILE...
       hcx policy explain --rules FILE --facts FILE [--at TIME]

Tools for the bureau staff who write a province's colour rules. Rule and
facts formats: docs/rules.md.

Subcommands:
  hcx policy check [--vars] FILE...
      Load rule files as a node would: parse, compile and type-check every
      condition. Prints the rules, or every problem with file:line:column.
      --vars lists the variables and functions conditions can use.

  hcx policy explain --rules FILE --facts FILE [--at TIME]
      Decide one resident's colour from a facts file (JSON or YAML) and show
      why: the rule that fired, reasons, release conditions, how every rule
      fared and the values the rules saw. TIME is RFC 3339 (default: now).
`

// runPolicy is `hcx policy`: tools for the bureau staff who write rules.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, policyUsage)
		groupFlags(stdout, "policy")
		return nil
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "explain":
		return policyExplain(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, policyUsage)
	groupFlags(stderr, "policy")
	return fmt.Errorf("unknown policy command %q: want check or explain", args[0])
}

func policyCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vars := fs.Bool("vars", false, "list the variables and functions rule conditions can use")
	fs.Usage = func() { fmt.Fprint(fs.Output(), policyUsage, "\nFlags:\n"); fs.PrintDefaults() }
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if *vars {
		fmt.Fprintln(stdout, "Variables and functions for rule conditions (CEL):")
		for _, l := range policy.Vocabulary() {
			fmt.Fprintln(stdout, "  "+l)
		}
		if fs.NArg() == 0 {
			return nil
		}
		fmt.Fprintln(stdout)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, policyUsage)
		return errors.New("policy check: name at least one rule file, such as configs/rules/110000.yaml")
	}
	failed := 0
	for i, path := range fs.Args() {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		rs, err := node.LoadRules(path)
		if err != nil {
			failed++
			var le *policy.LoadError
			if errors.As(err, &le) {
				fmt.Fprintf(stdout, "%s: REFUSED, %d %s\n", path, len(le.Problems), plural(len(le.Problems), "problem", "problems"))
				for _, p := range le.Problems {
					fmt.Fprintln(stdout, "  "+strings.ReplaceAll(p.String(), "\n", "\n  "))
				}
			} else {
				fmt.Fprintf(stdout, "%s: REFUSED: %v\n", path, err)
			}
			continue
		}
		printRuleSet(stdout, rs)
	}
	if failed > 0 {
		return fmt.Errorf("policy check: %d of %d rule files refused; a node would not load them", failed, fs.NArg())
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func printRuleSet(w io.Writer, rs *policy.RuleSet) {
	fmt.Fprintf(w, "%s: OK, %d rules\n", rs.File(), len(rs.Rules()))
	name := rs.Name()
	if name == "" {
		name = rs.Province().Name()
	}
	fmt.Fprintf(w, "  province     %s %s", rs.Province(), name)
	fmt.Fprintf(w, "\n  zone         %s (rules are evaluated in this local time)\n", rs.Location())
	fmt.Fprintf(w, "  version      %s (SM3 of the canonical rules, as published to the hub)\n", rs.Version())
	fmt.Fprintf(w, "  vaccinated   %s\n\n", rs.Vaccinated())
	fmt.Fprintln(w, "  Rules, in the order they are tried (most severe colour first, then file order):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	n := 0
	for _, c := range []hcx.Colour{hcx.Red, hcx.Yellow, hcx.Green} {
		for _, r := range rs.Rules() {
			if r.Colour != c {
				continue
			}
			n++
			reasons := make([]string, len(r.Reasons))
			for i, rc := range r.Reasons {
				zh, _ := rc.Text()
				reasons[i] = string(rc) + " " + zh
			}
			fmt.Fprintf(tw, "  %d.\t%s\t%s\t%s\n", n, c, r.Name, strings.Join(reasons, ", "))
			fmt.Fprintf(tw, "  \t\twhen\t%s\n", oneLine(r.When))
			if r.Since != "" {
				fmt.Fprintf(tw, "  \t\tsince\t%s\n", oneLine(r.Since))
			}
			fmt.Fprintf(tw, "  \t\trelease\t%s\n", releaseText(r.Release))
		}
	}
	tw.Flush()
	var unknown, partial []string
	for _, r := range rs.Rules() {
		for _, rc := range r.Reasons {
			t, known := rc.Texts()
			switch missing := t.Missing(); {
			case !known:
				unknown = append(unknown, fmt.Sprintf("%s (rule %s)", rc, r.Name))
			case len(missing) > 0:
				partial = append(partial, fmt.Sprintf("%s (rule %s) lacks %s", rc, r.Name, langList(missing)))
			}
		}
		if n := r.Release.Note; n != nil {
			if missing := (hcx.Texts{n.ZH, n.EN, n.JA, n.KO}).Missing(); len(missing) > 0 {
				partial = append(partial, fmt.Sprintf("the release note of rule %s lacks %s", r.Name, langList(missing)))
			}
		}
	}
	if len(unknown) > 0 {
		fmt.Fprintf(w, "\n  note: these reason codes have no Chinese/English text yet and will be shown as codes: %s\n", strings.Join(unknown, ", "))
	}
	if len(partial) > 0 {
		fmt.Fprintf(w, "\n  warning: texts shown to people are given in zh, en, ja and ko; these lack some and read as English there (add them to reasonText in hcx.go, or ja/ko to the note): %s\n", strings.Join(partial, "; "))
	}
}

// langList names languages, such as "ja, ko".
func langList(ls []hcx.Lang) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = string(l)
	}
	return strings.Join(s, ", ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func releaseText(r policy.Release) string {
	var parts []string
	switch {
	case r.OrderLifted:
		parts = append(parts, "only when the disease-control order is lifted")
	case r.Days > 0 || r.NegativeTests > 0:
		if r.Days > 0 {
			unit := "days"
			if r.CalendarDays {
				unit = "calendar days (ends at local midnight)"
			}
			parts = append(parts, fmt.Sprintf("%d %s", r.Days, unit))
		}
		switch {
		case r.NegativeTests == 1:
			parts = append(parts, fmt.Sprintf("1 negative %s test", kinds(r.TestKinds)))
		case r.NegativeTests > 1:
			parts = append(parts, fmt.Sprintf("%d negative %s tests at least %d h apart", r.NegativeTests, kinds(r.TestKinds), r.TestIntervalHours))
		}
	default:
		parts = append(parts, "none: green when the condition stops holding")
	}
	s := strings.Join(parts, " and ")
	if r.Note != nil {
		s += "; note: " + r.Note.EN
	}
	return s
}

func kinds(ks []string) string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k
		if k == "pcr" {
			out[i] = "PCR"
		}
	}
	return strings.Join(out, " or ")
}

func policyExplain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hcx policy explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rulesPath := fs.String("rules", "", "the province's rule file (YAML)")
	factsPath := fs.String("facts", "", "the resident's facts (JSON or YAML)")
	at := fs.String("at", "", "decide as of this time, RFC 3339 such as 2024-03-20T12:00:00+08:00 (default: now)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), policyUsage, "\nFlags:\n"); fs.PrintDefaults() }
	if err := parseCmdFlags(fs, args, stdout); err != nil {
		return err
	}
	if *rulesPath == "" || *factsPath == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, policyUsage)
		return errors.New("policy explain: give --rules FILE and --facts FILE")
	}
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("policy explain: --at %q: want RFC 3339, such as 2024-03-20T12:00:00+08:00", *at)
		}
		now = t
	}
	rs, err := node.LoadRules(*rulesPath)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*factsPath)
	if err != nil {
		return fmt.Errorf("read facts: %w", err)
	}
	f, err := policy.ParseFacts(*factsPath, data)
	if err != nil {
		return fmt.Errorf("facts: %w", err)
	}
	d, traces, err := rs.Explain(f, now)
	if err != nil {
		return err
	}
	loc := rs.Location()
	const layout = "2006-01-02 15:04 MST"
	fmt.Fprintf(stdout, "Rules    %s: %s %s, zone %s, version %s\n", rs.File(), rs.Province(), rs.Province().Name(), loc, rs.Version())
	fmt.Fprintf(stdout, "Facts    %s\n", *factsPath)
	fmt.Fprintf(stdout, "At       %s (%s)\n\n", now.In(loc).Format(layout), now.UTC().Format(time.RFC3339))

	fmt.Fprintf(stdout, "Colour   %s\n", d.Colour.Label())
	fmt.Fprintf(stdout, "Rule     %s\n", d.Rule)
	for i, rc := range d.Reasons {
		zh, en := rc.Text()
		label := "Reasons"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(stdout, "%-8s %s  %s (%s)\n", label, rc, zh, en)
	}
	if d.Rule != "default" {
		fmt.Fprintf(stdout, "Since    %s\n", d.Since.Format(layout))
	}
	mark := "no"
	if d.Vaccinated {
		mark = "yes (疫苗接种已完成)"
	}
	fmt.Fprintf(stdout, "Vaccination mark  %s\n", mark)
	if len(d.Released) > 0 {
		fmt.Fprintf(stdout, "Released from     %s (their conditions hold, but their release conditions are met)\n", strings.Join(d.Released, ", "))
	}

	if len(d.Release) > 0 {
		fmt.Fprintln(stdout, "\nTo be released (解除条件):")
		for _, c := range d.Release {
			t := c.Texts()
			fmt.Fprintf(stdout, "  - %s  [%s]\n    %s\n    %s\n    %s\n", t.In(hcx.LangEN), c.Rule, t.In(hcx.LangZH), t.In(hcx.LangJA), t.In(hcx.LangKO))
		}
	}

	fmt.Fprintln(stdout, "\nEvery rule, in file order:")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, t := range traces {
		var verdict string
		switch {
		case t.Err != nil:
			verdict = "ERROR: " + t.Err.Error()
		case !t.Holds:
			verdict = "does not hold"
		case t.Released:
			verdict = fmt.Sprintf("holds, but released (counted from %s)", t.Since.In(loc).Format(layout))
		case t.Rule.Name == d.Rule:
			verdict = "HOLDS: decides the colour"
		case t.Rule.Colour == d.Colour:
			verdict = "holds: adds its reasons and release conditions"
		default:
			verdict = "holds, but a more severe rule decides"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.Rule.Colour, t.Rule.Name, verdict)
	}
	tw.Flush()

	fmt.Fprintln(stdout, "\nWhat the rules saw:")
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, v := range rs.Values(f, now) {
		if v.Text == "never" || v.Text == "0" || v.Text == `""` || v.Text == "false" || v.Text == "[]" || v.Text == "0.0" {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", v.Name, v.Text)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "  (variables not shown are 0, false, empty or never)")
	return nil
}
