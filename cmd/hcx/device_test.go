package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// A checkpoint device enrols by CSR at Guangdong's node, is approved and
// issued by the dev federation's CA, and calls the node with request
// tokens; revoked at the CA and published to the hub, it is locked out as
// soon as the node has followed the trust list: measured, under 5 s.
func TestRevokedDeviceIsLockedOutWithinSeconds(t *testing.T) {
	f := startTestFederation(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gd := f.NodeURLs["440000"]

	dir := t.TempDir()
	id := fileDeviceEnrolment(ctx, t, gd, dir, "gate-7")
	var out, errOut bytes.Buffer
	certPath := filepath.Join(dir, "gate-7.crt")
	if err := runDevice(ctx, []string{"fetch", "--node", gd, "--id", id, "--out", certPath}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "is pending") {
		t.Fatalf("fetch before approval: %v", err)
	}
	// The operators' login comes with another package; the approval is the
	// node's own, as the operator route calls it.
	opCtx := auth.NewContext(ctx, &auth.Principal{Role: auth.RoleOperator, Actor: "test:operator", Province: "440000"})
	if _, err := f.Nodes["440000"].DecideEnrolment(opCtx, id, true, "", f.Devices.IssueDevice); err != nil {
		t.Fatal(err)
	}
	if err := runDevice(ctx, []string{"fetch", "--node", gd, "--id", id, "--out", certPath}, &out, &errOut); err != nil {
		t.Fatalf("hcx device fetch: %v", err)
	}
	device, err := certs.LoadSigner(certPath, filepath.Join(dir, "gate-7.key"))
	if err != nil {
		t.Fatal(err)
	}
	if device.Role != certs.RoleCheckpoint || device.Province != "440000" {
		t.Fatalf("device certificate: %s %s", device.Role, device.Province)
	}

	signedCall := func() (int, string) {
		body := []byte(`{"code":"HCX1:not-a-code"}`)
		req, _ := http.NewRequest("POST", gd+"/v1/verify", bytes.NewReader(body))
		if err := auth.SignRequest(req, body, device, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e apiError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error.Code
	}
	// The node learns the device from the trust list it follows.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, code := signedCall()
		if st != http.StatusUnauthorized {
			// 422: authenticated, and the junk health code refused.
			if st != http.StatusUnprocessableEntity {
				t.Fatalf("device's first call: %d %s", st, code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never learnt the device's certificate: %d %s", st, code)
		}
	}

	// The curl helper's header works once.
	out.Reset()
	if err := runDevice(ctx, []string{"token", "--cert", certPath, "--key", filepath.Join(dir, "gate-7.key"), "--url", gd + "/healthz"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{200, 401} {
		req, _ := http.NewRequest("GET", gd+"/healthz", nil)
		req.Header.Set("Authorization", strings.TrimSpace(out.String()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("hcx device token header, use %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}

	start := time.Now()
	if err := f.Devices.Revoke(ctx, device.KID, "device-lost"); err != nil {
		t.Fatal(err)
	}
	for {
		st, code := signedCall()
		if st == http.StatusUnauthorized {
			if code != "revoked" {
				t.Fatalf("after revocation: %d %s, want 401 revoked", st, code)
			}
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("a revoked device still served %v after its revocation (%d %s)", time.Since(start), st, code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	lockout := time.Since(start)
	t.Logf("revoked device locked out %v after the CA revoked it (revoke, publish to the hub, node follows)", lockout)
	if lockout >= 5*time.Second {
		t.Errorf("lock-out took %v, want < 5 s", lockout)
	}
}

// hcx ca issue learns feeds, province-bound checkpoint devices and CSRs.
func TestCAIssuesFeedsAndDevicesFromCSRs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	devDir := t.TempDir()
	ca := func(args ...string) (string, error) { return runCAForTest(t, append(args, "--dir", dir)...) }
	if out, err := ca("init", "--name", "test root"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := ca("issue", "--role", "feed", "--province", "440000", "--name", "lab-gz-1"); err != nil || !strings.Contains(out, "feed 440000") {
		t.Fatalf("feed: %v\n%s", err, out)
	}
	if out, err := ca("issue", "--role", "feed", "--name", "lab-x"); err == nil {
		t.Errorf("reject/feed-without-province: issued\n%s", out)
	}
	var o, e bytes.Buffer
	if err := runDevice(context.Background(), []string{"keygen", "--out", devDir, "--name", "gate-9"}, &o, &e); err != nil {
		t.Fatal(err)
	}
	if err := runDevice(context.Background(), []string{"keygen", "--out", devDir, "--name", "gate-9"}, &o, &e); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("reject/keygen-over-an-existing-key: %v", err)
	}
	csr := filepath.Join(devDir, "gate-9.csr")
	if out, err := ca("issue", "--csr", csr, "--role", "hub", "--name", "gate-9"); err == nil || !strings.Contains(err.Error(), "checkpoint or --role feed") {
		t.Errorf("reject/csr-as-hub: %v\n%s", err, out)
	}
	out, err := ca("issue", "--csr", csr, "--role", "checkpoint", "--province", "510000", "--name", "gate-9")
	if err != nil || !strings.Contains(out, "checkpoint 510000") || !strings.Contains(out, "never left it") {
		t.Fatalf("issue --csr: %v\n%s", err, out)
	}
	cert, err := certs.ReadCert(filepath.Join(dir, "issued", "gate-9.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.ReadKey(filepath.Join(devDir, "gate-9.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.SignerFor(cert, key); err != nil {
		t.Errorf("the certificate is not for the device's key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "issued", "gate-9.key")); err == nil {
		t.Error("the CA wrote a key file for a device it never held the key of")
	}
}
