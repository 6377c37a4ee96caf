package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hcxfed/hcx/certs"
)

// TestDevInitWritesWhatComposeMounts runs `hcx dev init` twice into one
// directory and opens every file docker-compose.yml hands a member, as the
// member's own loaders do; the second run keeps the first run's material.
func TestDevInitWritesWhatComposeMounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "material")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"dev", "init", "--dir", dir, "--hubs", "3"}, &out, &out); err != nil {
		t.Fatalf("dev init: %v\n%s", err, out.String())
	}
	root1, err := os.ReadFile(filepath.Join(dir, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	keys1, err := os.ReadFile(filepath.Join(dir, "keys", "440000.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"dev", "init", "--dir", dir, "--hubs", "3"}, &out, &out); err != nil {
		t.Fatalf("dev init again: %v", err)
	}
	if root2, _ := os.ReadFile(filepath.Join(dir, "ca", "root.crt")); !bytes.Equal(root1, root2) {
		t.Error("a second dev init replaced the root")
	}
	if keys2, _ := os.ReadFile(filepath.Join(dir, "keys", "440000.json")); !bytes.Equal(keys1, keys2) {
		t.Error("a second dev init replaced a node's keys")
	}
	issued := filepath.Join(dir, "ca", "issued")
	if _, err := certs.ReadTLSRoot(filepath.Join(dir, "ca", certs.TLSRootCertFile)); err != nil {
		t.Fatalf("tls root: %v", err)
	}
	for _, i := range []string{"1", "2", "3"} {
		s, err := certs.LoadSigner(filepath.Join(issued, "hub-"+i+".crt"), filepath.Join(issued, "hub-"+i+".key"))
		if err != nil || s.Role != certs.RoleHub {
			t.Errorf("hub-%s signer: %v", i, err)
		}
		if _, err := certs.LoadTLSIdentity(filepath.Join(issued, "hub-"+i+"-tls.crt"), filepath.Join(issued, "hub-"+i+"-tls.key")); err != nil {
			t.Errorf("hub-%s member TLS: %v", i, err)
		}
	}
	subjects := map[string]bool{}
	for _, p := range devProvinces {
		host := "node-" + string(p)
		for _, h := range []string{host, "hub-1"} {
			c, err := certs.ReadCert(filepath.Join(issued, "api-"+h+".crt"))
			if err != nil {
				t.Fatalf("server certificate of %s: %v", h, err)
			}
			if !slices.Contains(c.DNSNames, h) || !slices.Contains(c.DNSNames, "localhost") {
				t.Errorf("server certificate of %s names %v, want %s and localhost", h, c.DNSNames, h)
			}
		}
		s, err := certs.LoadSigner(filepath.Join(issued, "province-"+string(p)+".crt"), filepath.Join(issued, "province-"+string(p)+".key"))
		if err != nil || s.Role != certs.RoleProvince {
			t.Errorf("province %s signer: %v", p, err)
		}
		k, err := readNodeKeys(filepath.Join(dir, "keys", string(p)+".json")) // refuses a file others may read
		if err != nil {
			t.Fatalf("keys of %s: %v", p, err)
		}
		subjects[k.SubjectKey] = true
		if _, err := os.Stat(filepath.Join(dir, "rules", string(p)+".yaml")); err != nil {
			t.Errorf("rules of %s: %v", p, err)
		}
	}
	if len(subjects) != 1 {
		t.Errorf("the provinces got %d different subject keys; they share one", len(subjects))
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hubs", "2"}, "--hubs 2"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--dir", filepath.Join(dir, "keys", "440000.json", "x")}, "--dir"},
	} {
		var o bytes.Buffer
		err := run(context.Background(), append([]string{"dev", "init"}, tc.args...), &o, &o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dev init %v: err = %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
