package certs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

func TestCADirectoryIssuesLoadsAndRevokes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	ca, err := InitCA(dir, "test national root", now)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "root.key"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
	if _, err := InitCA(dir, "again", now); !errors.Is(err, ErrCAExists) || !strings.Contains(err.Error(), "hcx ca list") {
		t.Errorf("second InitCA: err = %v, want ErrCAExists pointing at hcx ca list", err)
	}
	gd, err := ca.Issue(IssueRequest{Role: RoleProvince, Province: "440000", Name: "province-440000", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "issued", "province-440000.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("issued key mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := ca.Issue(IssueRequest{Role: RoleProvince, Province: "440000", Name: "province-440000", NotBefore: now, NotAfter: now.Add(time.Hour)}); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("reissuing a name: err = %v, want the name is taken", err)
	}

	reopened, err := OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if reopened.Root().KID != ca.Root().KID {
		t.Errorf("reopened root kid %s, want %s", reopened.Root().KID, ca.Root().KID)
	}
	loaded, err := reopened.Load("province-440000")
	if err != nil {
		t.Fatal(err)
	}
	if loaded.KID != gd.KID || loaded.Province != "440000" || loaded.Role != RoleProvince {
		t.Errorf("loaded %s %s %s, want %s province 440000", loaded.KID, loaded.Role, loaded.Province, gd.KID)
	}
	revAt := now.Add(time.Minute).Truncate(time.Second)
	if err := reopened.Revoke(gd.KID, revAt, "key compromise"); err != nil {
		t.Fatal(err)
	}
	list, err := ca.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !list[0].Revoked() || !list[0].RevokedAt.Equal(revAt) || list[0].Reason != "key compromise" || list[0].Status(now) != "revoked" {
		t.Errorf("list = %+v, want one revoked certificate", list)
	}
	ts, err := ca.TrustStore()
	if err != nil {
		t.Fatal(err)
	}
	e, err := ts.Lookup(gd.KID)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.CheckAt(e, revAt.Add(-time.Second)); err != nil {
		t.Errorf("signed before the revocation: %v", err)
	}
	if err := ts.CheckAt(e, revAt); !errors.Is(err, ErrRevoked) {
		t.Errorf("signed at the revocation: err = %v, want ErrRevoked", err)
	}
}

func TestOpenCARefusesAReadableRootKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := InitCA(dir, "root", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "root.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("err = %v, want advice to chmod 600", err)
	}
}

func TestEnsureDevPKIMakesThenReopens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	provs := []hcx.ProvinceCode{"110000", "440000", "510000"}
	first, err := EnsureDevPKI(dir, provs, []string{"1", "2"}, now)
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsureDevPKI(dir, provs, []string{"1", "2"}, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if first.CA.Root().KID != second.CA.Root().KID {
		t.Error("second start made a new root")
	}
	for _, p := range provs {
		if first.Provinces[p].KID != second.Provinces[p].KID || second.Provinces[p].Province != p {
			t.Errorf("province %s: kid %s then %s", p, first.Provinces[p].KID, second.Provinces[p].KID)
		}
	}
	for _, h := range []string{"1", "2"} {
		if first.Hubs[h].KID != second.Hubs[h].KID || first.HubTLS[h].KID != second.HubTLS[h].KID {
			t.Errorf("hub %s changed between starts", h)
		}
	}
	list, err := second.CA.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range provs {
		if first.Feeds[p].KID != second.Feeds[p].KID || second.Feeds[p].Role != RoleFeed || second.Checkpoints[p].Province != p {
			t.Errorf("province %s: the dev feed or checkpoint changed between starts", p)
		}
	}
	// Per province a signer, a feed and a checkpoint; per hub a signer and
	// a TLS identity; the auditor.
	if got, want := len(list), 3*3+2+2+1; got != want {
		t.Errorf("%d certificates issued, want %d", got, want)
	}
	// A year and a day later the dev certificates have expired: replaced.
	later := now.Add(DevValidity + 24*time.Hour)
	third, err := EnsureDevPKI(dir, provs, []string{"1"}, later)
	if err != nil {
		t.Fatal(err)
	}
	if third.Provinces["440000"].KID == first.Provinces["440000"].KID || !third.Provinces["440000"].Cert.NotAfter.After(later) {
		t.Error("expired dev certificate was not replaced")
	}
}
