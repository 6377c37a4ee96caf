package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hcxfed/hcx/qrimg/qrimgtest"
)

// hcxVerify runs `hcx verify args…` and returns its stdout and stderr.
func hcxVerify(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"verify"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// A checkpoint device syncs a bundle with its real certificate, then
// answers codes offline, as text and as a photo, exactly as /v1/verify.
func TestVerifyOfflineAnswersAsTheNode(t *testing.T) {
	x := newBatchFixture(t, 3)
	ca := filepath.Join(x.f.Dir, "ca")
	dir := filepath.Join(t.TempDir(), "device")
	syncArgs := []string{"sync", "--node", x.url, "--cert", filepath.Join(ca, "issued", "checkpoint-440000.crt"),
		"--key", filepath.Join(ca, "issued", "checkpoint-440000.key"), "--root", filepath.Join(ca, "root.crt"), "--dir", dir}
	// No federation here has 63 witnesses: a device that requires 63
	// cosignatures refuses every bundle, saying how many of how many.
	_, _, err := hcxVerify(t, append(syncArgs, "--cosignatures", "63")...)
	if err == nil || !strings.Contains(err.Error(), "valid of the 63 required") || !strings.Contains(err.Error(), "keeps the bundle it had") {
		t.Fatalf("sync requiring 63 cosignatures: %v; want a refusal saying how many of 63", err)
	}
	if _, _, err := hcxVerify(t, append(syncArgs, "--cosignatures", "2", "--witnesses", "a")...); err == nil || !strings.Contains(err.Error(), "can never be met") {
		t.Fatalf("sync requiring 2 of 1 named witness: %v", err)
	}
	if out, _, err := hcxVerify(t, "status", "--dir", dir); err == nil {
		t.Fatalf("status after refused syncs: %q; want no bundle", out)
	}
	out, _, err := hcxVerify(t, syncArgs...)
	if err != nil || !strings.Contains(out, "bundle updated") {
		t.Fatalf("first sync: %q, %v", out, err)
	}
	if out, _, err := hcxVerify(t, syncArgs...); err != nil || !strings.Contains(out, "bundle unchanged") {
		t.Fatalf("second sync of the same bundle: %q, %v", out, err)
	}
	if out, _, err := hcxVerify(t, "status", "--dir", dir); err != nil || !strings.Contains(out, "province 440000") {
		t.Fatalf("status: %q, %v", out, err)
	}

	codes := map[string]string{}
	for i, r := range x.residents {
		codes["resident"+string(rune('0'+i))+"-"+string(r.colour)] = r.code
	}
	for kind, c := range x.bad {
		codes[kind] = c
	}
	for kind, code := range codes {
		_, want := x.single(t, code)
		out, errOut, err := hcxVerify(t, "--dir", dir, code)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if got := withoutCheckedAt(t, bytes.TrimSpace([]byte(out))); got != want {
			t.Errorf("%s:\noffline    %s\n/v1/verify %s", kind, got, want)
		}
		if !strings.Contains(errOut, "old (limit 6h0m0s)") {
			t.Errorf("%s: no staleness line on stderr: %q", kind, errOut)
		}
	}

	// A photo of the red resident's code.
	img, err := qrimgtest.Photo{Size: 700, Module: 6, Seed: 1}.Code(x.residents[1].code)
	if err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(photo, img, 0o600); err != nil {
		t.Fatal(err)
	}
	_, want := x.single(t, x.residents[1].code)
	out, _, err = hcxVerify(t, "--dir", dir, "--image", photo)
	if got := withoutCheckedAt(t, bytes.TrimSpace([]byte(out))); err != nil || got != want {
		t.Errorf("--image: %s (%v), want %s", got, err, want)
	}
	// The device may tighten the limit, so a bundle seconds old is fine
	// and one older than a nanosecond is not.
	out, _, _ = hcxVerify(t, "--dir", dir, "--max-age", "1ns", x.residents[0].code)
	if !strings.Contains(out, `"code":"bundle_stale"`) {
		t.Errorf("--max-age 1ns: %s, want bundle_stale", out)
	}
	if out, _, err := hcxVerify(t, "-h"); err != nil || !strings.Contains(out, "hcx verify sync") {
		t.Errorf("-h: %v %q", err, out)
	}

	// The route's own bad inputs.
	var e apiError
	if st := callAs(t, x.f.client(), x.gate, "GET", x.url+"/v1/verify/bundle?from=99999999", nil, &e); st != http.StatusConflict || e.Error.Code != "bundle_newer" {
		t.Errorf("from past the node's log: %d %+v, want 409 bundle_newer", st, e)
	}
	if st := callAs(t, x.f.client(), x.gate, "GET", x.url+"/v1/verify/bundle?from=x", nil, &e); st != http.StatusBadRequest || !strings.HasPrefix(e.Error.Message, "from:") {
		t.Errorf("from=x: %d %+v, want 400 naming from", st, e)
	}
}
