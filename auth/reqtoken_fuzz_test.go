package auth

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/hcxfed/hcx"
)

// FuzzTokenClaims feeds arbitrary payloads to the request-token reader: it
// never panics, refuses with token_malformed, and what it accepts has one
// spelling (it re-encodes to the same bytes).
func FuzzTokenClaims(f *testing.F) {
	f.Add([]byte(`{"htm":"POST","htu":"http://127.0.0.1:8080/v1/feeds/labs?x=1","bh":"` + BodyHash(nil) + `","iat":1800000000,"jti":"AAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`{"htm":"GET","htu":"https://hub.example/v1/entries","bh":"` + BodyHash([]byte("x")) + `","iat":1,"jti":"AAAAAAAAAAAAAAAAAAAAAA","jti":"B"}`))
	f.Add([]byte(`{"htm":"get","htu":"ftp://x","bh":"","iat":-1,"jti":""}`))
	f.Add([]byte(`{ "htm":"POST"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := ParseTokenClaims(payload)
		if err != nil {
			var e *hcx.Error
			if !errors.As(err, &e) || e.Code != "token_malformed" || e.Class != hcx.EUnauthorized {
				t.Fatalf("error %v is not a 401 token_malformed", err)
			}
			return
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseTokenClaims(again)
		if err != nil || *c2 != *c {
			t.Fatalf("accepted %q but its re-encoding %q reads %v, %v", payload, again, c2, err)
		}
	})
}
