package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// submitRedBatches logs Guangdong batches 1..n, one red attestation each.
func submitRedBatches(t *testing.T, f *federation, n uint64) {
	t.Helper()
	gd := f.PKI.Provinces["440000"]
	submit := exchange.NewHubClient(f.HubURLs, nil).SignWith(gd, nil)
	for seq := uint64(1); seq <= n; seq++ {
		now := time.Now()
		b := &exchange.Batch{Iss: "440000", Seq: seq, At: now.Unix(), SKV: 1, Atts: []hcx.Attestation{{
			Subject: hcx.Subject(strings.Repeat(string(rune('a'+seq)), 26)), Colour: hcx.Red, Reasons: []hcx.Reason{"lab.positive"},
			Eff: now.Unix(), Exp: now.Add(24 * time.Hour).Unix(), PolicyV: "00", N: seq}}}
		raw, err := exchange.SealBatch(gd, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := submit.Submit(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
	}
}

// freeAddr is a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startWatch runs hcx audit --watch in the background until the test ends.
func startWatch(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- runAudit(ctx, append(args, "--watch", "200ms"), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hcx audit --watch: %v", err)
		}
	})
	return logs
}

// getText GETs url and returns the status and body.
func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flipCosignature is a lie about a note: the last byte of the signature of
// every witness line is flipped; the hub's own line is kept.
func flipCosignature(b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "— "+exchange.WitnessNamePrefix) {
			continue
		}
		j := strings.LastIndexByte(l, ' ')
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(l[j+1:]))
		if err != nil {
			continue
		}
		raw[len(raw)-1] ^= 1
		lines[i] = l[:j+1] + base64.StdEncoding.EncodeToString(raw) + "\n"
	}
	return []byte(strings.Join(lines, ""))
}

// TestTheAuditorWitnessesTheHubAndReportsABadCosignature: hcx audit --watch
// is a witness of the hub on its listener (hub members only); the hub's
// leader submits to it, and every member then serves the checkpoint with
// the auditor's cosignature at GET /v1/checkpoint/witnessed. A member that
// serves a cosignature that does not verify is a bad_cosignature finding
// naming it and the witness, in the report and in --watch's /metrics.
func TestTheAuditorWitnessesTheHubAndReportsABadCosignature(t *testing.T) {
	addr := freeAddr(t)
	f := startTestFederationWith(t, federationConfig{Dir: t.TempDir(), HubMembers: 3, Witnesses: []string{"http://" + addr + "/v1/witness"}})
	liar := lyingMember(t, f, f.HubURLs[1], map[string]func([]byte) []byte{"/v1/checkpoint": flipCosignature})
	logs := startWatch(t, "--hub", strings.Join(append(f.HubURLs, liar), ","), "--dir", f.Dir, "--state", filepath.Join(t.TempDir(), "audit"), "--metrics", addr)
	submitRedBatches(t, f, 3)
	waitSettled(t, f)

	auditor := exchange.WitnessesOf(f.Nodes["440000"].Trust(), time.Now())
	var mine []exchange.Witness
	for _, w := range auditor {
		if w.KID == f.PKI.Auditor.KID {
			mine = append(mine, w)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("the trust list names the auditor as a witness %d times, want once", len(mine))
	}
	var note []byte
	var last error
	defer func() {
		if t.Failed() {
			t.Logf("the last answer: %v", last)
		}
	}()
	size := f.Hub.Leader().State().Size
	waitUntil(t, "every member serving the auditor's cosignature on the newest checkpoint", 40*time.Second, func() bool {
		note = nil
		for _, u := range f.HubURLs {
			b, err := exchange.NewHubClient([]string{u}, nil).WitnessedCheckpoint(context.Background())
			if err != nil {
				last = err
				return false
			}
			cp, err := exchange.ParseCheckpoint(b)
			if err == nil && cp.Size < size {
				err = fmt.Errorf("%s serves a witnessed checkpoint of size %d, below %d", u, cp.Size, size)
			}
			if err == nil {
				err = cp.RequireCosignatures(mine, 1, time.Now())
			}
			if err != nil {
				last = err
				return false
			}
			if note != nil && !bytes.Equal(note, b) {
				last = fmt.Errorf("members serve different witnessed notes (the log may have grown):\n%s\n%s", note, b)
				return false
			}
			note = b
		}
		return true
	})
	if !strings.Contains(string(note), "— "+mine[0].Name+" ") {
		t.Fatalf("the witnessed note lacks the auditor's line:\n%s", note)
	}
	if _, m := getText(t, f.Hub.Leader().URL()+"/metrics"); strings.Contains(m, "hcx_hub_witnessed_size 0\n") ||
		!strings.Contains(m, `hcx_hub_witness_failures_total{witness="http://`+addr+`/v1/witness"}`) ||
		strings.Contains(m, `hcx_hub_witness_cosigned_total{witness="http://`+addr+`/v1/witness"} 0`) {
		t.Errorf("the leader's metrics lack the witnessed size or the auditor's cosignatures:\n%s", m)
	}

	t.Run("the watch's metrics show the cosigned checkpoints and the findings, healthz is ok", func(t *testing.T) {
		waitUntil(t, "a bad_cosignature finding in /metrics", 20*time.Second, func() bool {
			_, m := getText(t, "http://"+addr+"/metrics")
			return strings.Contains(m, `hcx_audit_findings_total{kind="bad_cosignature"}`) && !strings.Contains(m, `hcx_audit_findings_total{kind="bad_cosignature"} 0`)
		})
		_, m := getText(t, "http://"+addr+"/metrics")
		for _, want := range []string{"hcx_audit_size ", `hcx_audit_findings_total{kind="leaf"} 0`, "hcx_audit_witness_conflicts_total 0"} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %q:\n%s", want, m)
			}
		}
		if strings.Contains(m, "hcx_audit_witness_cosigned_total 0\n") {
			t.Errorf("/metrics: the witness cosigned nothing:\n%s", m)
		}
		if code, body := getText(t, "http://"+addr+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
			t.Errorf("/healthz = %d %q, want 200 ok", code, body)
		}
	})

	t.Run("a one-shot audit names the member and the witness", func(t *testing.T) {
		rep, err := runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), []string{f.HubURLs[0], liar})
		if !errors.Is(err, errFindings) || !hasFinding(rep, audit.KindCosignature, liar, nil, mine[0].Name) {
			t.Fatalf("err %v, findings %v", err, rep.Findings)
		}
		for _, fd := range rep.Findings {
			if fd.Kind != audit.KindCosignature || fd.Member != liar || fd.Witness != mine[0].Name {
				t.Errorf("unexpected finding: %+v", fd)
			}
		}
	})

	t.Run("the witness takes checkpoints from hub members only", func(t *testing.T) {
		u := "http://" + addr + "/v1/witness/add-checkpoint"
		body := []byte("old 0\n\n" + string(note))
		resp, err := http.Post(u, "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("without a token: %d, want 401", resp.StatusCode)
		}
		for _, c := range []struct {
			signer *certs.Signer
			want   int
		}{{f.PKI.Provinces["440000"], http.StatusForbidden}, {f.PKI.Hubs["hub-2"], http.StatusConflict}} {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &auth.SigningTransport{Signer: c.signer}}
			resp, err := hc.Post(u, "text/plain", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s certificate: %d %s, want %d", c.signer.Role, resp.StatusCode, b, c.want)
			}
		}
		if strings.Contains(logs.String(), "contradicts") {
			t.Errorf("a stale old size was logged as a conflict:\n%s", logs)
		}
	})
}

// TestAuditWatchHealthzFailsWhileNoMemberAnswers: /healthz says 503 and why
// while the passes fail, and /metrics counts the failures. (And a hub
// without witnesses answers the witnessed checkpoint with 404.)
func TestAuditWatchHealthzFailsWhileNoMemberAnswers(t *testing.T) {
	f := startTestFederation(t, 1)
	code, body := getText(t, f.HubURLs[0]+"/v1/checkpoint/witnessed")
	if code != http.StatusNotFound || !strings.Contains(body, `"no_checkpoint"`) {
		t.Errorf("GET /v1/checkpoint/witnessed without witnesses = %d %s, want 404 no_checkpoint", code, body)
	}
	var ae *exchange.APIError
	if _, err := exchange.NewHubClient(f.HubURLs, nil).WitnessedCheckpoint(context.Background()); !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Code != "no_checkpoint" {
		t.Errorf("HubClient.WitnessedCheckpoint: %v, want 404 no_checkpoint", err)
	}
	addr := freeAddr(t)
	startWatch(t, "--hub", "http://"+freeAddr(t), "--dir", f.Dir, "--state", filepath.Join(t.TempDir(), "audit"), "--metrics", addr)
	waitUntil(t, "/healthz to fail", 10*time.Second, func() bool {
		code, body := getText(t, "http://"+addr+"/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no hub member answered")
	})
	_, m := getText(t, "http://"+addr+"/metrics")
	if !strings.Contains(m, "hcx_audit_run_failures_total ") || strings.Contains(m, "hcx_audit_run_failures_total 0\n") {
		t.Errorf("/metrics does not count the failed passes:\n%s", m)
	}
}
