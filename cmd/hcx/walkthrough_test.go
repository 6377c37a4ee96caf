package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/auth/passkeytest"
	"github.com/hcxfed/hcx/devidp"
)

// The README's walkthrough is the one hcx dev prints, with hcx dev's
// default addresses.
func TestREADMEWalkthroughIsTheOneHcxDevPrints(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := devWalkthrough("http://127.0.0.1:8744", "http://127.0.0.1:8751", "http://127.0.0.1:8700", "")
	if !strings.Contains(string(readme), "```sh\n"+want+"\n```") {
		t.Errorf("README.md does not carry the walkthrough hcx dev prints; paste this into its ```sh block:\n%s", want)
	}
}

// The walkthrough works as printed: build hcx, start hcx dev, take the
// commands it prints and run them, step by step, in bash with curl, as a
// person at a terminal would.
func TestWalkthroughRunsAsPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the hcx binary and runs hcx dev: not in -short")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("the walkthrough is shell commands, and this machine has no bash")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the walkthrough calls curl, and this machine has none")
	}
	tmp := t.TempDir()
	bin, work := filepath.Join(tmp, "bin"), filepath.Join(tmp, "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}
	build := exec.Command(goTool(t), "build", "-o", filepath.Join(bin, "hcx"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")

	guide := startHcxDev(t, work, env, freePortBase(t))
	steps := walkthroughSteps(t, guide)
	if len(steps) != 8 {
		t.Fatalf("found %d steps in the printed walkthrough, want 8:\n%s", len(steps), guide)
	}
	sh := startShell(t, bash, work, env)
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = sh.run(t, s)
	}

	// 2: the operator's enrolment code registered 张三.
	if !strings.Contains(out[1], `"registered":true`) || !regexp.MustCompile(`"subject":"[a-z2-7]{26,52}"`).MatchString(out[1]) {
		t.Fatalf("step 2 (enrolment code) printed %q", out[1])
	}
	// 3 and 4: the code started 张三's session, which opens their code.
	if !strings.Contains(out[2], `"subject"`) || !strings.HasPrefix(strings.TrimSpace(out[3]), "HCX1:") {
		t.Fatalf("steps 3-4 (enrol, code) printed %q and %q", out[2], out[3])
	}
	// 5: the feed's signed post turned 张三 red at Guangdong.
	if !strings.Contains(out[4], `"colour":"red"`) {
		t.Fatalf("step 5 (lab result) printed %q", out[4])
	}
	// 6: Sichuan's checkpoint sees red with the masked name. The
	// attestation reaches Sichuan through the hub within a second; a
	// person typing never sees the gap, a script may: scan again as a
	// person would.
	verified := out[5]
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(verified, `"colour":"red"`) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		verified = sh.run(t, steps[5])
	}
	for _, want := range []string{`"valid":true`, `"colour":"red"`, `"issuer":"440000"`, `"name":"张*"`, `"id_tail":"0028"`, `"lab.positive"`} {
		if !strings.Contains(verified, want) {
			t.Errorf("step 6 (verify at Sichuan) printed %q, lacking %s", verified, want)
		}
	}
	if strings.Contains(verified, "张三") || strings.Contains(verified, "440106199003070028") {
		t.Errorf("the checkpoint saw the full name or document number: %q", verified)
	}
	// 7: the auditor reads the trail (the operator's enrolment with the
	// reason, the resident's use of it, the feed's post) and the hub's
	// attestation.
	lines := strings.SplitN(strings.TrimSpace(out[6]), "\n", 2)
	if len(lines) != 2 {
		t.Fatalf("step 7 (auditor) printed %q, want two answers", out[6])
	}
	var trail struct {
		Entries []struct {
			Role   string `json:"role"`
			Action string `json:"action"`
			Why    string `json:"why"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &trail); err != nil {
		t.Fatalf("step 7: the audit trail %q: %v", lines[0], err)
	}
	var actions []string
	for _, e := range trail.Entries {
		actions = append(actions, e.Role+" "+e.Action)
		if e.Action == "enrolment.issue" && e.Why != "ID card checked at the counter" {
			t.Errorf("the enrolment's trail entry says why %q", e.Why)
		}
	}
	if got := strings.Join(actions, ", "); got != "operator enrolment.issue, resident enrolment.use, feed lab.post" {
		t.Errorf("the audit trail holds %q", got)
	}
	// The hub member the guide names serves what it has applied; a member
	// that lags (a busy machine) answers with a smaller "applied" and
	// catches up within moments: read again as a person would.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(lines[1], `"col":"red"`) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		again := strings.SplitN(strings.TrimSpace(sh.run(t, steps[6])), "\n", 2)
		if len(again) == 2 {
			lines[1] = again[1]
		}
	}
	if !strings.Contains(lines[1], `"col":"red"`) || !strings.Contains(lines[1], `"iss":"440000"`) {
		t.Errorf("step 7: the hub's attestations about 张三 read %q", lines[1])
	}
	// 8: a device enrolled by CSR and approved by the operator verifies
	// with its own certificate.
	if !strings.Contains(out[7], "\nissued\n") || !strings.Contains(out[7], `"colour":"red"`) || !strings.Contains(out[7], `"name":"张*"`) {
		t.Errorf("step 8 (a device of one's own) printed %q", out[7])
	}
}

// goTool is the go command of the toolchain running the test.
func goTool(t *testing.T) string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build hcx with")
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// freePortBase picks a --port-base whose ports hcx dev listens on are free
// now (the identity provider, three hub members with their Raft ports, the
// four nodes).
func freePortBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		// Below Linux's ephemeral ports (32768 on), which other tests'
		// :0 listeners take.
		base := 10000 + 200*rand.IntN(110)
		ports := []int{base - 10, base, base + 1, base + 2, base + 100, base + 101, base + 102}
		for _, p := range devProvinces {
			ports = append(ports, base+10*int(p[0]-'0')+int(p[1]-'0'))
		}
		free := true
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port base for hcx dev")
	return 0
}

// startHcxDev starts `hcx dev --port-base base` in dir (its data in
// dir/hcx-data, where hcx dev token looks by default) and returns what it
// printed up to "Press Ctrl-C to stop.". It is interrupted at cleanup.
func startHcxDev(t *testing.T, dir string, env []string, base int) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "..", "bin", "hcx"), "dev", "--port-base", fmt.Sprint(base))
	cmd.Dir, cmd.Env = dir, env
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("hcx dev did not stop within 20 s of Ctrl-C")
		}
	})
	printed := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if sc.Text() == "Press Ctrl-C to stop." {
				printed <- b.String()
				io.Copy(io.Discard, stdout) // hcx dev never blocks writing
				return
			}
		}
		printed <- ""
	}()
	select {
	case g := <-printed:
		if g == "" {
			t.Fatalf("hcx dev stopped before printing its guide:\n%s", stderr.String())
		}
		return g
	case <-time.After(90 * time.Second):
		t.Fatalf("hcx dev printed no guide within 90 s:\n%s", stderr.String())
		return ""
	}
}

// walkthroughSteps cuts the printed walkthrough into its steps: the
// indented block after "Walkthrough:", the lines before "# 1." (the
// addresses) going with the first step, each "# N." comment starting the
// next.
func walkthroughSteps(t *testing.T, guide string) []string {
	t.Helper()
	_, after, ok := strings.Cut(guide, "\nWalkthrough:")
	if !ok {
		t.Fatalf("the guide has no walkthrough:\n%s", guide)
	}
	var steps []string
	var cur strings.Builder
	started := false
	for _, line := range strings.Split(after, "\n")[1:] {
		if line != "" && !strings.HasPrefix(line, "  ") {
			if started {
				break
			}
			continue // the walkthrough's introduction
		}
		started = true
		cmd := strings.TrimPrefix(line, "  ")
		if regexp.MustCompile(`^# [2-9]\. `).MatchString(cmd) {
			steps = append(steps, cur.String())
			cur.Reset()
		}
		cur.WriteString(cmd + "\n")
	}
	return append(steps, cur.String())
}

// shell is a bash reading commands on its standard input, as at a
// terminal; run sends one step and returns what it printed.
type shell struct {
	in    io.Writer
	lines chan string
	err   *syncBuffer
}

const stepDone = "@@hcx-walkthrough-step-done"

func startShell(t *testing.T, bash, dir string, env []string) *shell {
	t.Helper()
	cmd := exec.Command(bash, "--noprofile", "--norc")
	cmd.Dir, cmd.Env = dir, env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh := &shell{in: in, lines: make(chan string, 1024), err: &syncBuffer{}}
	cmd.Stderr = sh.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			sh.lines <- sc.Text()
		}
		close(sh.lines)
	}()
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return sh
}

func (sh *shell) run(t *testing.T, step string) string {
	t.Helper()
	if _, err := io.WriteString(sh.in, step+"\necho "+stepDone+"\n"); err != nil {
		t.Fatalf("bash: %v (stderr: %s)", err, sh.err.String())
	}
	var out strings.Builder
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-sh.lines:
			if !ok {
				t.Fatalf("bash ended during the step\n%s\nstderr: %s", step, sh.err.String())
			}
			if line == stepDone {
				if testing.Verbose() {
					t.Logf("%s=> %s", step, out.String())
				}
				return out.String()
			}
			out.WriteString(line + "\n")
		case <-timeout:
			t.Fatalf("the step did not finish within 30 s:\n%s\nprinted: %s\nstderr: %s", step, out.String(), sh.err.String())
		}
	}
}

// enrolledSession has province p's operator hand out an enrolment code for
// reg and uses it: the resident's subject and first session cookie.
func enrolledSession(t *testing.T, f *federation, p hcx.ProvinceCode, reg map[string]string) (hcx.Subject, *http.Cookie) {
	t.Helper()
	var e struct {
		Code    string      `json:"code"`
		Subject hcx.Subject `json:"subject"`
	}
	if st := callAs(t, f.client(), f.asOperator(t, p), "POST", f.NodeURLs[p]+"/v1/enrolments", reg, &e); st != http.StatusCreated {
		t.Fatalf("enrolment code: status %d", st)
	}
	resp, err := f.client().Post(f.NodeURLs[p]+"/v1/auth/enrol", "application/json", strings.NewReader(`{"code":"`+e.Code+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie && resp.StatusCode == http.StatusOK {
			return e.Subject, c
		}
	}
	t.Fatalf("enrol with the code: status %d, no session cookie", resp.StatusCode)
	return "", nil
}

// withCookie is a caller presenting a session cookie.
func withCookie(c *http.Cookie) caller {
	return caller{name: "session", sign: func(_ testing.TB, req *http.Request, _ []byte) { req.AddCookie(c) }}
}

// A resident enrolled with a code registers a passkey on that session
// (go-webauthn's ceremony, with passkeytest's software authenticator),
// logs out, logs in with the passkey, and opens their code, which a
// Sichuan checkpoint verifies.
func TestResidentLogsInWithAPasskeyAndOpensTheirCode(t *testing.T) {
	f := startTestFederation(t, 1)
	gd := f.NodeURLs["440000"]
	sub, first := enrolledSession(t, f, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "440106199003070028", "name": "张三"})

	// Passkeys belong to hcx dev's passkey origin, http://localhost:<port>.
	origin := strings.Replace(gd, "127.0.0.1", "localhost", 1)
	phone := passkeytest.New(origin)
	pc := &passkeytest.Client{HTTP: f.client(), URL: origin, Auth: phone}
	cred, err := pc.Register(first, "phone")
	if err != nil {
		t.Fatalf("register a passkey on the enrolment session: %v", err)
	}

	if st := callAs(t, f.client(), withCookie(first), "POST", gd+"/v1/auth/logout", nil, nil); st != http.StatusOK {
		t.Fatalf("logout: status %d", st)
	}
	if st := callAs(t, f.client(), withCookie(first), "GET", gd+"/v1/residents/"+string(sub)+"/code", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("the code with the logged-out session: status %d, want 401", st)
	}

	second, err := pc.Login(cred)
	if err != nil {
		t.Fatalf("log in with the passkey: %v", err)
	}
	if second.Value == first.Value {
		t.Fatal("the passkey login reused the ended session")
	}
	var code struct {
		Code   string     `json:"code"`
		Colour hcx.Colour `json:"colour"`
	}
	if st := callAs(t, f.client(), withCookie(second), "GET", gd+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK || code.Colour != hcx.Green {
		t.Fatalf("the code after the passkey login: status %d colour %q", st, code.Colour)
	}
	// Another resident's code stays out of reach of this session.
	other, _ := enrolledSession(t, f, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": "51010719850612004X", "name": "李四"})
	if st := callAs(t, f.client(), withCookie(second), "GET", gd+"/v1/residents/"+string(other)+"/code", nil, nil); st != http.StatusForbidden {
		t.Errorf("张三's session opened 李四's code: status %d, want 403", st)
	}

	waitReady(t, f.NodeURLs["510000"])
	var v struct {
		Valid  bool       `json:"valid"`
		Colour hcx.Colour `json:"colour"`
		Name   string     `json:"name"`
	}
	if st := callAs(t, f.client(), f.asCheckpoint("510000"), "POST", f.NodeURLs["510000"]+"/v1/verify", map[string]string{"code": code.Code}, &v); st != http.StatusOK || !v.Valid || v.Colour != hcx.Green || v.Name != "张*" {
		t.Errorf("verify at Sichuan: status %d %+v", st, v)
	}
}

// A resident logs in at their node through the dev identity provider, in
// the OIDC authorization code flow a browser follows: the node binds the
// verified document in the ID token to the resident and starts a session
// that opens their code.
func TestResidentLogsInThroughOIDCAndOpensTheirCode(t *testing.T) {
	f := startTestFederation(t, 1)
	gd := f.NodeURLs["440000"]
	user := f.devUser(t, "li-lei")
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := browser.Get(gd + "/v1/auth/oidc/login?next=/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(authURL, f.IdP.Issuer()) {
		t.Fatalf("login: status %d to %q, want a redirect to the identity provider", resp.StatusCode, authURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	callback, err := devidp.LogIn(ctx, browser, f.IdP.Issuer(), authURL, user.Name, user.Password)
	if err != nil {
		t.Fatalf("log in at the identity provider: %v", err)
	}
	if !strings.HasPrefix(callback.String(), gd) || callback.Query().Get("code") == "" {
		t.Fatalf("the provider sent the browser to %s, want the node's callback with a code", callback.Redacted())
	}
	resp, err = browser.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/v1/me" {
		t.Fatalf("callback: status %d to %q, want 303 to /v1/me", resp.StatusCode, resp.Header.Get("Location"))
	}

	session := caller{name: "li-lei", sign: func(_ testing.TB, req *http.Request, _ []byte) {
		for _, c := range jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
	}}
	var me struct {
		Subject hcx.Subject `json:"subject"`
		IDTail  string      `json:"id_tail"`
	}
	if st := callAs(t, f.client(), session, "GET", gd+"/v1/me", nil, &me); st != http.StatusOK || me.Subject == "" || me.IDTail != user.DocNumber[len(user.DocNumber)-4:] {
		t.Fatalf("/v1/me after the OIDC login: status %d %+v", st, me)
	}
	var code struct {
		Code   string     `json:"code"`
		Colour hcx.Colour `json:"colour"`
	}
	if st := callAs(t, f.client(), session, "GET", gd+"/v1/residents/"+string(me.Subject)+"/code", nil, &code); st != http.StatusOK || !strings.HasPrefix(code.Code, "HCX1:") {
		t.Fatalf("the code after the OIDC login: status %d %+v", st, code)
	}

	// The callback is good once: a stolen or replayed callback URL starts
	// no session.
	replay, _ := cookiejar.New(nil)
	thief := &http.Client{Jar: replay, Timeout: 10 * time.Second, CheckRedirect: browser.CheckRedirect}
	resp, err = thief.Get(callback.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("replayed callback: status %d, want a 4xx", resp.StatusCode)
	}
	u, _ := url.Parse(gd)
	for _, c := range replay.Cookies(u) {
		if c.Name == auth.SessionCookie {
			t.Errorf("the replayed callback started a session")
		}
	}
}
