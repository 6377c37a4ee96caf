package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestHubWitnessFlagsAreCheckedAtStart: a witness that is not a URL, or a
// --witness-ca that cannot be read, stops hcx hub with a message naming
// the flag's problem, before anything listens.
func TestHubWitnessFlagsAreCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	for _, args := range [][]string{{"init", "--name", "test root"}, {"issue", "--role", "hub", "--name", "hub-1"}} {
		if out, err := runCAForTest(t, append(args, "--dir", ca)...); err != nil {
			t.Fatalf("hcx ca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	base := []string{"-id", "hub-1", "-dir", filepath.Join(dir, "hub-1"), "-raft", "127.0.0.1:0", "-http", "127.0.0.1:0", "-insecure-plaintext-members",
		"-root", filepath.Join(ca, "root.crt"), "-cert", filepath.Join(ca, "issued", "hub-1.crt"), "-key", filepath.Join(ca, "issued", "hub-1.key")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"reject/witness-not-a-url", []string{"-witness", "node-110000:8711/v1/witness"}, "submission prefix"},
		{"reject/witness-twice", []string{"-witness", "http://a:1/v1/witness,http://a:1/v1/witness"}, "listed twice"},
		{"reject/witness-ca-missing", []string{"-witness", "https://a:1/v1/witness", "-witness-ca", filepath.Join(dir, "nope.crt")}, "-witness-ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runHub(context.Background(), append(append([]string{}, base...), tc.args...), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
