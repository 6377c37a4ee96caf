package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

func runCAForTest(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runCA(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestCACommandLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustCA := func(args ...string) string {
		t.Helper()
		out, err := runCAForTest(t, append(args, "--dir", dir)...)
		if err != nil {
			t.Fatalf("hcx ca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if out := mustCA("init", "--name", "test root"); !strings.Contains(out, "hcx ca issue") {
		t.Errorf("init does not say what to do next:\n%s", out)
	}
	if _, err := runCAForTest(t, "init", "--dir", dir); err == nil || !strings.Contains(err.Error(), "hcx ca list") {
		t.Errorf("second init: err = %v, want a pointer to hcx ca list", err)
	}
	mustCA("issue", "--role", "province", "--province", "440000", "--name", "province-440000")
	mustCA("issue", "--role", "province", "--province", "440000", "--name", "province-440000.2")
	mustCA("issue", "--tls", "--name", "hub-1-tls", "--member", "hub-1", "--dns", "localhost", "--ip", "127.0.0.1")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"reject/province-not-provincial", []string{"issue", "--role", "province", "--province", "440100", "--name", "x"}, "provincial-level"},
		{"reject/name-taken", []string{"issue", "--role", "auditor", "--name", "province-440000"}, "taken"},
		{"reject/no-role", []string{"issue", "--name", "y"}, "give --role"},
		{"reject/tls-without-member-id", []string{"issue", "--tls", "--name", "hub-2-tls", "--ip", "127.0.0.1"}, "give --member"},
		{"reject/revoke-without-reason", []string{"revoke", "--name", "province-440000"}, "--reason"},
		{"reject/unknown-certificate", []string{"revoke", "--name", "nope", "--reason", "x"}, "hcx ca list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := runCAForTest(t, append(tc.args, "--dir", dir)...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	st, err := os.Stat(filepath.Join(dir, "issued", "province-440000.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("issued key: %v, mode %v", err, st.Mode().Perm())
	}
	mustCA("revoke", "province-440000", "--reason", "superseded", "--at", "2025-11-22T08:00:00+08:00")
	list := mustCA("list")
	for _, want := range []string{"province-440000.2", "hub (tls)", "revoked 2025-11-22T00:00:00Z (superseded)"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	if out := mustCA("inspect", "province-440000.2"); !strings.Contains(out, "hcx province signing") || !strings.Contains(out, "checked        ok") {
		t.Errorf("inspect:\n%s", out)
	}
	if out := mustCA("inspect", "province-440000"); !strings.Contains(out, "REJECTED: key was revoked") {
		t.Errorf("inspect of a revoked certificate:\n%s", out)
	}

	// The trust list file applies to a store that knows only the root.
	tlPath := filepath.Join(t.TempDir(), "trust.jws")
	mustCA("trustlist", "--out", tlPath)
	b, err := os.ReadFile(tlPath)
	if err != nil {
		t.Fatal(err)
	}
	root, err := certs.ReadCert(filepath.Join(dir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := certs.NewTrustStore(root)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := exchange.ApplyTrustList(ts, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if tl.Ver != 1 || len(tl.Certs) != 2 || len(tl.Revoked) != 1 {
		t.Errorf("trust list v%d with %d certs and %d revocations, want v1, 2, 1", tl.Ver, len(tl.Certs), len(tl.Revoked))
	}
}
