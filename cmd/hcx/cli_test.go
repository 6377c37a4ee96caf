package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// checkUsageLayout says what is wrong with a help text, or "" when it has
// the house layout: "Usage: hcx CMD …" (more synopsis lines indented under
// it), a blank line, a description paragraph, and a "Flags:" line.
func checkUsageLayout(text, cmd string) string {
	lines := strings.Split(text, "\n")
	if !strings.HasPrefix(lines[0], "Usage: hcx "+cmd) {
		return "first line is not \"Usage: hcx " + cmd + " …\""
	}
	i := 1
	for i < len(lines) && strings.HasPrefix(lines[i], "       hcx ") {
		i++
	}
	if i+1 >= len(lines) || lines[i] != "" || strings.TrimSpace(lines[i+1]) == "" || strings.HasSuffix(lines[i+1], ":") {
		return "no blank line and description paragraph after the synopsis"
	}
	if !slices.Contains(lines[i+1:], "Flags:") {
		return "no \"Flags:\" line"
	}
	return ""
}

// TestEveryCommandsHelpGoesToStdoutAndSucceeds runs `hcx CMD -h`,
// `hcx CMD --help` and `hcx help CMD` for every command through run, as
// main does: no error (exit 0), the usage in the house layout on stdout,
// nothing on stderr.
func TestEveryCommandsHelpGoesToStdoutAndSucceeds(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				if err := run(context.Background(), args, &stdout, &stderr); err != nil {
					t.Fatalf("hcx %s: %v (exit 2), want success", strings.Join(args, " "), err)
				}
				if stderr.Len() != 0 {
					t.Errorf("stderr %q, want nothing", stderr.String())
				}
				if bad := checkUsageLayout(stdout.String(), c.name); bad != "" {
					t.Errorf("%s:\n%s", bad, stdout.String())
				}
			})
		}
	}
	// Subcommands too: `hcx ca init -h` is as much a help as `hcx ca -h`.
	subs := [][]string{{"dev", "token"}, {"dev", "init"}, {"dev", "idp"}, {"device", "keygen"}, {"device", "enrol"},
		{"device", "fetch"}, {"device", "token"}, {"verify", "sync"}, {"verify", "status"}, {"feed", "push"},
		{"policy", "check"}, {"policy", "explain"}}
	for _, s := range caSubcommands {
		subs = append(subs, []string{"ca", s.name})
	}
	for _, sub := range subs {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), append(sub, "-h"), &stdout, &stderr); err != nil || stderr.Len() != 0 {
			t.Errorf("hcx %v -h: err %v, stderr %q; want success and nothing on stderr", sub, err, stderr.String())
		}
		want := strings.Join(sub, " ")
		if sub[0] == "policy" {
			want = "policy" // one usage for both, listing both
		}
		if bad := checkUsageLayout(stdout.String(), want); bad != "" {
			t.Errorf("hcx %v -h: %s:\n%s", sub, bad, stdout.String())
		}
	}
	for _, args := range [][]string{nil, {"-h"}, {"--help"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil || stderr.Len() != 0 || !strings.Contains(stdout.String(), "Usage: hcx <command>") {
			t.Errorf("hcx %v: err %v, stdout %q, stderr %q", args, err, stdout.String(), stderr.String())
		}
	}
}

// TestABadFlagFailsWithUsageOnStderr: a flag a command does not have is an
// error (exit 2) naming it, with the usage on stderr and nothing on stdout.
func TestABadFlagFailsWithUsageOnStderr(t *testing.T) {
	for _, args := range [][]string{
		{"dev", "-no-such-flag"}, {"node", "-no-such-flag"}, {"hub", "-no-such-flag"},
		{"audit", "-no-such-flag"}, {"bench", "-no-such-flag"}, {"probe", "-no-such-flag"},
		{"feed", "push", "-no-such-flag"}, {"policy", "check", "-no-such-flag"}, {"ca", "init", "-no-such-flag"},
		{"device", "keygen", "-no-such-flag"}, {"verify", "sync", "-no-such-flag"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if err == nil || errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), "no-such-flag") {
			t.Errorf("hcx %v: err %v, want one naming the flag", args, err)
		}
		if stdout.Len() != 0 || !strings.Contains(stderr.String(), "Usage: hcx "+args[0]) {
			t.Errorf("hcx %v: stdout %q, stderr %q; want the usage on stderr only", args, stdout.String(), stderr.String())
		}
	}
}

// TestHelpListsExactlyTheCommandsMainDispatches reads the command names
// back from `hcx help` and runs each, and checks main.go's doc comment and
// the counts the summaries state.
func TestHelpListsExactlyTheCommandsMainDispatches(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	_, list, ok := strings.Cut(stdout.String(), "Commands:\n")
	if !ok {
		t.Fatalf("no Commands: in %q", stdout.String())
	}
	var listed []string
	for _, l := range strings.Split(list, "\n") {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		listed = append(listed, strings.Fields(l)[0])
	}
	var dispatched []string
	for _, c := range commands() {
		dispatched = append(dispatched, c.name)
	}
	if !slices.Equal(listed, dispatched) {
		t.Errorf("hcx help lists %v, main dispatches %v", listed, dispatched)
	}
	for _, name := range listed {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{name, "-h"}, &out, &errOut); err != nil {
			t.Errorf("listed command %q does not run: %v", name, err)
		}
	}
	var unknown bytes.Buffer
	if err := run(context.Background(), []string{"nosuch"}, &unknown, &unknown); err == nil {
		t.Error("an unknown command succeeded")
	}

	// The package comment names commands as "hcx X": each must exist, and
	// every command must be named.
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.TrimPrefix(f.Doc.Text(), "Command hcx is ")
	var named []string
	for _, m := range regexp.MustCompile(`\bhcx ([a-z]+)`).FindAllStringSubmatch(doc, -1) {
		if m[1] == "help" {
			continue
		}
		named = append(named, m[1])
		if !slices.Contains(dispatched, m[1]) {
			t.Errorf("main.go's doc comment promises hcx %s, which main does not dispatch", m[1])
		}
	}
	for _, d := range dispatched {
		if !slices.Contains(named, d) {
			t.Errorf("main.go's doc comment does not mention hcx %s", d)
		}
	}

	words := map[int]string{1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
	if dev := commands()[0]; dev.name != "dev" || !strings.Contains(dev.summary, words[len(devProvinces)]+" province nodes") {
		t.Errorf("hcx dev's summary %q does not say it runs %s province nodes", dev.summary, words[len(devProvinces)])
	}
}

// TestREADMEStatesTheGoVersionGoModNeeds: the README names go.mod's exact
// go version, so a reader with an older 1.26 is told before the build fails.
func TestREADMEStatesTheGoVersionGoModNeeds(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no go line in go.mod")
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Go " + string(m[1]) + " or newer"; !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not say %q", want)
	}
}

// TestMakeDevPassesHostAndDir: make dev HOST=… DIR=… reaches hcx dev's
// --host and --dir, flags hcx dev has (make -n prints without running).
func TestMakeDevPassesHostAndDir(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine")
	}
	out, err := exec.Command("make", "-s", "-n", "-C", filepath.Join("..", ".."), "dev", "HOST=127.0.0.9", "DIR=/tmp/somewhere").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n dev: %v\n%s", err, out)
	}
	if got := string(out); !strings.Contains(got, "cmd/hcx dev --host 127.0.0.9 --dir /tmp/somewhere") {
		t.Errorf("make dev runs %q", got)
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"dev", "-h"}, &help, &help); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-host string", "-dir string"} {
		if !strings.Contains(help.String(), f) {
			t.Errorf("hcx dev has no %s flag", f)
		}
	}
}

// repoPath matches a relative path whose first element is a directory at
// the repository's root, such as docs/x.md or cmd/hcx/x.go:42.
var repoPath = regexp.MustCompile(`(^|[^A-Za-z0-9_./:~$-])([A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)+)`)

// TestEveryPathDocsAndHelpPointAtExists: every relative repository path
// that README.md, docs/*.md or a command's help names is there. URLs,
// absolute paths, $VARS, ~ and placeholders (<x>, {x}, DIR/…) are not paths
// in the repository and are skipped.
func TestEveryPathDocsAndHelpPointAtExists(t *testing.T) {
	root := filepath.Join("..", "..")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	topDirs := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			topDirs[e.Name()] = true
		}
	}
	texts := map[string]string{}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, p := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		texts[rel] = string(b)
	}
	for _, c := range commands() {
		var out bytes.Buffer
		if err := run(context.Background(), []string{c.name, "-h"}, &out, &out); err != nil {
			t.Fatal(err)
		}
		texts["hcx "+c.name+" -h"] = out.String()
	}
	if len(texts) < 3 {
		t.Fatalf("read only %d texts", len(texts))
	}
	checked := 0
	for name, text := range texts {
		for _, m := range repoPath.FindAllStringSubmatch(text, -1) {
			p := strings.TrimRight(m[2], ".,:;")
			if !topDirs[strings.Split(p, "/")[0]] {
				continue
			}
			checked++
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Errorf("%s points at %s, which does not exist", name, p)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no path checked: the pattern finds nothing")
	}

	// A bare NAME.md (PROTOCOL.md, DESIGN.md) must be a file in the
	// repository, not a brief the reader does not have.
	mds := map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != root {
			return filepath.SkipDir
		}
		if strings.HasSuffix(d.Name(), ".md") {
			mds[d.Name()] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bareMD := regexp.MustCompile(`(^|[^A-Za-z0-9_./-])([A-Z][A-Z0-9_-]*\.md)\b`)
	for name, text := range texts {
		for _, m := range bareMD.FindAllStringSubmatch(text, -1) {
			if !mds[m[2]] {
				t.Errorf("%s points at %s, which is not in the repository", name, m[2])
			}
		}
	}
	t.Logf("%d path references checked", checked)
}

// TestDefaultsAgreeWithHcxDev: a member or node started on its own with no
// address flags sits where `hcx dev` puts it, read from the defaults each
// command's help prints, so an operator moving from the dev federation to
// separate processes keeps the URLs they learned (issue 15 found the hub
// on 7000/7100 while hcx dev's hub-1 answers on 8700/8800).
func TestDefaultsAgreeWithHcxDev(t *testing.T) {
	defaultOf := func(args []string, flagName string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), append(args, "-h"), &stdout, &stderr); err != nil {
			t.Fatalf("hcx %v -h: %v", args, err)
		}
		m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(flagName) + ` \w+\n(?:\s{4,}.*\n)*?\s{4,}.*\(default "?([^")]*)"?\)`).FindStringSubmatch(stdout.String())
		if m == nil {
			t.Fatalf("hcx %v -h: no default for -%s in:\n%s", args, flagName, stdout.String())
		}
		return m[1]
	}
	host := defaultOf([]string{"dev"}, "host")
	base, err := strconv.Atoi(defaultOf([]string{"dev"}, "port-base"))
	if err != nil {
		t.Fatal(err)
	}
	dir := defaultOf([]string{"dev"}, "dir")
	for _, c := range []struct {
		args       []string
		flag, want string
	}{
		{[]string{"hub"}, "http", fmt.Sprintf("%s:%d", host, base)},     // hub-1's API
		{[]string{"hub"}, "raft", fmt.Sprintf("%s:%d", host, base+100)}, // hub-1's Raft
		{[]string{"hub"}, "id", "hub-1"},
		{[]string{"dev", "idp"}, "listen", fmt.Sprintf("%s:%d", host, base-10)},
	} {
		if got := defaultOf(c.args, c.flag); got != c.want {
			t.Errorf("hcx %v -%s defaults to %q; hcx dev runs it at %q", c.args, c.flag, got, c.want)
		}
	}
	// The defaults the node and the hub fill in when -listen and -dir are
	// left out, against the layout hcx dev builds (its federation config).
	for _, p := range devProvinces {
		listen, nd := nodeDefaults(p, "", "")
		prefix, _ := strconv.Atoi(string(p)[:2])
		if want := fmt.Sprintf("%s:%d", host, base+prefix); listen != want {
			t.Errorf("hcx node -province %s listens at %s by default; hcx dev runs it at %s", p, listen, want)
		}
		if want := filepath.Join(dir, "nodes", string(p)); nd != want {
			t.Errorf("hcx node -province %s keeps its state in %s by default; hcx dev in %s", p, nd, want)
		}
	}
	if got, want := hubDir(dir, "hub-2"), filepath.Join(dir, "hub", "hub-2"); got != want {
		t.Errorf("hcx hub -id hub-2 keeps its state in %s by default; hcx dev in %s", got, want)
	}
}
