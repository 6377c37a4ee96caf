package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadOIDCConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"issuers":[{"url":"https://idp.gd.example","client_id":"hcx-node-440000","client_secret":"s","audiences":["hcx-cli"],"provinces":["440000"]}]}`
	o, err := readOIDCConfig(write("good.json", good, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Issuers) != 1 || o.Issuers[0].ClientID != "hcx-node-440000" || o.Issuers[0].Provinces[0] != "440000" || o.Issuers[0].Audiences[0] != "hcx-cli" {
		t.Errorf("config %+v", o.Issuers)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"readable-by-others", good, "chmod 600"},
		{"unknown-field", `{"issuers":[{"url":"https://a","client_id":"c","secret":"s"}]}`, "unknown field"},
		{"no-issuers", `{"issuers":[]}`, "1 to 16"},
		{"no-client-id", `{"issuers":[{"url":"https://a"}]}`, "client_id"},
		{"twice", `{"issuers":[{"url":"https://a","client_id":"c"},{"url":"https://a","client_id":"d"}]}`, "twice"},
		{"bad-province", `{"issuers":[{"url":"https://a","client_id":"c","provinces":["440100"]}]}`, "provinces"},
	} {
		mode := os.FileMode(0o600)
		if tc.name == "readable-by-others" {
			mode = 0o644
		}
		_, err := readOIDCConfig(write(tc.name+".json", tc.body, mode))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
