package exchange

import (
	"encoding/base64"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/configs"
)

// FuzzVerifyCode feeds QR texts to VerifyCode. A code verifies only if it is,
// byte for byte, one the province signed: no other spelling of a signed code
// (header, payload or signature) may verify, and whatever verifies has valid
// claims. The seeds are codes signed in this run and their near misses.
func FuzzVerifyCode(f *testing.F) {
	fed, ts := trustedFederation(f)
	now := fed.start.Add(time.Minute)
	signed := map[string]bool{}
	for _, c := range []CodeClaims{
		{Iss: "440000", Sub: "abcdefghijklmnopqrstuvwxyz", SKV: 1, Col: "green", Name: "张*", IDTail: "0014", Vaccinated: true, IssuedAt: now.Unix() - 5, Expires: now.Unix() + 55},
		{Iss: "440000", Sub: "zyxwvutsrqponmlkjihgfedcba", SKV: 2, Col: "red", Name: "A*", IDTail: "004X", IssuedAt: now.Unix() - 3600, Expires: now.Unix() + 3600},
	} {
		qr, err := IssueCode(fed.gdOld, &c)
		if err != nil {
			f.Fatal(err)
		}
		signed[qr[len(CodePrefix):]] = true
		f.Add(qr)
		f.Add(qr[:len(qr)-3])
		f.Add(strings.Replace(qr, ".", "..", 1))
	}
	f.Add("HCX1:")
	f.Add("HCX1:a.b.c")
	f.Fuzz(func(t *testing.T, qr string) {
		c, _, err := VerifyCode(ts, qr, now)
		if err != nil {
			return
		}
		if tok := strings.TrimSpace(qr)[len(CodePrefix):]; !signed[tok] {
			t.Fatalf("a code nobody signed verifies: %q", qr)
		}
		if c.Sub.Validate() != nil || c.Col.Validate() != nil {
			t.Fatalf("verified claims are not valid: %+v", c)
		}
	})
}

// FuzzParseRules loads rule files. Loading never panics, and a file that loads
// loads again to the same version and canonical form, for its own province.
func FuzzParseRules(f *testing.F) {
	err := fs.WalkDir(configs.Rules, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := configs.Rules.ReadFile(path)
		f.Add(b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("province: \"440000\"\nzone: Asia/Shanghai\nrules: []\n"))
	f.Add([]byte("{{{ not : [ yaml"))
	f.Fuzz(func(t *testing.T, src []byte) {
		rs, err := ParseRules("fuzz.yaml", src)
		if err != nil {
			return
		}
		again, err := ParseRules("fuzz.yaml", src)
		if err != nil {
			t.Fatalf("loaded once, then not: %v", err)
		}
		if rs.Version() != again.Version() || !reflect.DeepEqual(rs.Canonical(), again.Canonical()) {
			t.Fatalf("two loads differ: %s / %s", rs.Version(), again.Version())
		}
		if len(rs.Version()) != 32 {
			t.Fatalf("version %q is not 16 bytes of hex", rs.Version())
		}
		if err := rs.Province().Validate(); err != nil {
			t.Fatalf("rules load for a province that is not one: %v", err)
		}
		// What loads can be published, and the publication reads back.
		p := PolicyPublication{Typ: TypPolicy, Iss: rs.Province(), At: 1, Pol: rs.Version(), Rules: base64.StdEncoding.EncodeToString(src)}
		if err := p.Validate(); err != nil {
			t.Fatalf("rules that load do not validate as a publication: %v", err)
		}
	})
}
