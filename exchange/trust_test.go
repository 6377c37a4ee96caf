package exchange

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// federationCA is a CA directory with two Guangdong signers (a rotation in
// progress), a Sichuan signer and a hub member.
type federationCA struct {
	ca           *certs.CA
	gdOld, gdNew *certs.Signer
	sc, hub      *certs.Signer
	start        time.Time
}

func newFederationCA(t testing.TB) *federationCA {
	t.Helper()
	start := time.Unix(1763780000, 0)
	ca, err := certs.InitCA(t.TempDir(), "test national root", start)
	if err != nil {
		t.Fatal(err)
	}
	f := &federationCA{ca: ca, start: start}
	issue := func(name string, role certs.Role, prov hcx.ProvinceCode) *certs.Signer {
		s, err := ca.Issue(certs.IssueRequest{Role: role, Province: prov, Name: name, NotBefore: start, NotAfter: start.Add(30 * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f.gdOld = issue("province-440000", certs.RoleProvince, "440000")
	f.gdNew = issue("province-440000.2", certs.RoleProvince, "440000")
	f.sc = issue("province-510000", certs.RoleProvince, "510000")
	f.hub = issue("hub-1", certs.RoleHub, "")
	return f
}

func (f *federationCA) emptyStore(t testing.TB) *certs.TrustStore {
	t.Helper()
	ts, err := certs.NewTrustStore(f.ca.Root().Cert)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func (f *federationCA) sealedList(t testing.TB, at time.Time) (*TrustList, string) {
	t.Helper()
	tl, err := BuildTrustList(f.ca, at, 0)
	if err != nil {
		t.Fatal(err)
	}
	compact, err := SealTrustList(f.ca.Root(), tl)
	if err != nil {
		t.Fatal(err)
	}
	return tl, compact
}

func batchAt(t *testing.T, s *certs.Signer, seq uint64, at time.Time) string {
	t.Helper()
	b := &Batch{Iss: s.Province, Seq: seq, At: at.Unix(), SKV: 1, Atts: []hcx.Attestation{{
		Subject: "abcdefghijklmnopqrstuvwxyz", Colour: hcx.Red, Reasons: []hcx.Reason{"lab.positive"},
		Eff: at.Unix(), Exp: at.Add(14 * 24 * time.Hour).Unix(), PolicyV: "00", N: seq,
	}}}
	compact, err := SealBatch(s, b)
	if err != nil {
		t.Fatal(err)
	}
	return compact
}

func TestTrustListVersionsOnlyMoveForward(t *testing.T) {
	f := newFederationCA(t)
	v1, first := f.sealedList(t, f.start)
	v2, second := f.sealedList(t, f.start.Add(time.Minute))
	if v1.Ver != 1 || v2.Ver != 2 {
		t.Fatalf("versions %d, %d; want 1, 2", v1.Ver, v2.Ver)
	}
	ts := f.emptyStore(t)
	if _, err := ApplyTrustList(ts, first); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyTrustList(ts, second); err != nil {
		t.Fatal(err)
	}
	for name, compact := range map[string]string{"reject/older-list": first, "reject/same-version-again": second} {
		t.Run(name, func(t *testing.T) {
			if _, err := ApplyTrustList(ts, compact); !errors.Is(err, certs.ErrStaleTrustList) {
				t.Errorf("err = %v, want ErrStaleTrustList", err)
			}
			if ts.Version() != 2 {
				t.Errorf("version %d after a refused list, want 2", ts.Version())
			}
		})
	}
}

func TestTrustListMustBeSignedByTheRoot(t *testing.T) {
	f := newFederationCA(t)
	tl, good := f.sealedList(t, f.start)
	parts := strings.Split(good, ".")
	unsignedHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"` + f.ca.Root().KID + `","typ":"hcx-trust+jws"}`))
	other, err := certs.InitCA(t.TempDir(), "a rogue root", f.start)
	if err != nil {
		t.Fatal(err)
	}
	byRogue, err := SealTrustList(other.Root(), &TrustList{At: f.start.Unix(), Ver: 99, Certs: tl.Certs})
	if err != nil {
		t.Fatal(err)
	}
	byProvince, err := f.gdOld.SignJWS(HdrTrust, []byte(`{"typ":"hcx.trust.v1","iss":"root","at":1763780000,"ver":99,"certs":[],"revoked":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	lying := *tl
	lying.Ver = 50
	lying.Certs = append([]TrustedCert(nil), tl.Certs...)
	lying.Certs[0].Role = certs.RoleAuditor
	lyingJWS, err := SealTrustList(f.ca.Root(), &lying)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		compact string
		want    error
	}{
		{"reject/unsigned", unsignedHeader + "." + parts[1] + ".", certs.ErrMalformed},
		{"reject/tampered-payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"hcx.trust.v1","iss":"root","at":1,"ver":1000,"certs":[],"revoked":[]}`)) + "." + parts[2], certs.ErrSignature},
		{"reject/signed-by-another-root", byRogue, certs.ErrUnknownKey},
		{"reject/signed-by-a-province", byProvince, certs.ErrWrongRole},
		{"reject/role-listed-differs-from-certificate", lyingJWS, certs.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := f.emptyStore(t)
			if _, err := ts.Add(f.gdOld.Cert.Raw); err != nil { // as if learnt from an earlier list
				t.Fatal(err)
			}
			if _, err := ApplyTrustList(ts, tc.compact); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if ts.Version() != 0 || len(ts.Entries()) != 1 {
				t.Errorf("a refused list changed the store: version %d, %d entries", ts.Version(), len(ts.Entries()))
			}
		})
	}
}

// TestRotationAndRevocationThroughTheLog follows the life of a province key:
// two Guangdong signers valid at once, then the old one revoked by a newer
// trust list. Everything goes through the same paths a node and the hub use
// (Open for envelopes, VerifyCode for codes).
func TestRotationAndRevocationThroughTheLog(t *testing.T) {
	f := newFederationCA(t)
	_, v1 := f.sealedList(t, f.start)
	ts := f.emptyStore(t)
	if _, err := ApplyTrustList(ts, v1); err != nil {
		t.Fatal(err)
	}
	t0 := f.start.Add(time.Hour)
	before := batchAt(t, f.gdOld, 1, t0)
	for name, s := range map[string]*certs.Signer{"old": f.gdOld, "new": f.gdNew} {
		if _, err := Open(ts, batchAt(t, s, 2, t0)); err != nil {
			t.Errorf("rotation: batch from the %s Guangdong signer: %v", name, err)
		}
	}

	revokedAt := t0.Add(10 * time.Minute)
	if err := f.ca.Revoke(f.gdOld.KID, revokedAt, "superseded"); err != nil {
		t.Fatal(err)
	}
	_, v2 := f.sealedList(t, revokedAt)
	if _, err := ApplyTrustList(ts, v2); err != nil {
		t.Fatal(err)
	}

	t.Run("batch-signed-before-revocation-still-verifies", func(t *testing.T) {
		env, err := Open(ts, before)
		if err != nil {
			t.Fatal(err)
		}
		if env.Signer.KID != f.gdOld.KID || env.At >= revokedAt.Unix() {
			t.Errorf("verified %s at %d", env.Signer.KID, env.At)
		}
	})
	t.Run("reject/batch-signed-after-revocation", func(t *testing.T) {
		_, err := Open(ts, batchAt(t, f.gdOld, 3, revokedAt.Add(time.Second)))
		if !errors.Is(err, certs.ErrRevoked) || !strings.Contains(err.Error(), revokedAt.UTC().Format(time.RFC3339)) {
			t.Errorf("err = %v, want ErrRevoked naming %s", err, revokedAt.UTC().Format(time.RFC3339))
		}
	})
	t.Run("new-signer-still-accepted", func(t *testing.T) {
		if _, err := Open(ts, batchAt(t, f.gdNew, 3, revokedAt.Add(time.Second))); err != nil {
			t.Error(err)
		}
	})
	t.Run("reject/batch-naming-another-province", func(t *testing.T) {
		b := &Batch{Iss: "510000", Seq: 1, At: t0.Unix(), SKV: 1, Atts: []hcx.Attestation{{Subject: "abcdefghijklmnopqrstuvwxyz", Colour: hcx.Red, Eff: 1, Exp: 2, N: 1}}}
		compact, err := SealBatch(f.gdNew, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ts, compact); !errors.Is(err, ErrWrongIssuer) {
			t.Errorf("err = %v, want ErrWrongIssuer", err)
		}
	})
	t.Run("codes-follow-the-revocation", func(t *testing.T) {
		code := func(s *certs.Signer, iat time.Time) string {
			qr, err := IssueCode(s, &CodeClaims{Iss: "440000", Sub: "abcdefghijklmnopqrstuvwxyz", SKV: 1, Col: hcx.Green, Name: "张*", IDTail: "0014", IssuedAt: iat.Unix(), Expires: iat.Add(OfflineCodeTTL).Unix()})
			if err != nil {
				t.Fatal(err)
			}
			return qr
		}
		now := revokedAt.Add(time.Minute)
		// Revocation is decided when the code is presented (PROTOCOL.md §6):
		// an offline code issued before the revocation stops counting too.
		if _, _, err := VerifyCode(ts, code(f.gdOld, revokedAt.Add(-time.Minute)), now); !errors.Is(err, ErrKeyRevoked) {
			t.Errorf("offline code issued before the revocation, shown after it: err = %v, want key_revoked", err)
		}
		if _, _, err := VerifyCode(ts, code(f.gdOld, revokedAt.Add(-time.Minute)), revokedAt.Add(-time.Second)); err != nil {
			t.Errorf("offline code issued and shown before the revocation: %v", err)
		}
		if _, _, err := VerifyCode(ts, code(f.gdOld, revokedAt.Add(time.Second)), now); !errors.Is(err, ErrKeyRevoked) {
			t.Errorf("code issued after the revocation: err = %v, want key_revoked", err)
		}
		if _, _, err := VerifyCode(ts, code(f.gdNew, revokedAt.Add(time.Second)), now); err != nil {
			t.Errorf("code from the new signer: %v", err)
		}
	})
	t.Run("offline-verifier-learns-everything-from-the-newest-list", func(t *testing.T) {
		fresh := f.emptyStore(t)
		if _, err := ApplyTrustList(fresh, v2); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(fresh, before); err != nil {
			t.Errorf("old batch with only the newest list: %v", err)
		}
		if _, err := Open(fresh, batchAt(t, f.gdOld, 4, revokedAt)); !errors.Is(err, certs.ErrRevoked) {
			t.Errorf("err = %v, want ErrRevoked", err)
		}
	})
}

// TestPublishTrustListToHub publishes twice through a stand-in for the hub's
// HTTP API (PROTOCOL.md §5) and checks the version is taken above the log's.
func TestPublishTrustListToHub(t *testing.T) {
	f := newFederationCA(t)
	var mu sync.Mutex
	var log []string
	var newest string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/trust":
			if newest == "" {
				http.Error(w, `{"error":{"code":"not_found","message":"no trust list yet"}}`, http.StatusNotFound)
				return
			}
			w.Write([]byte(newest))
		case r.Method == http.MethodPost && r.URL.Path == "/v1/entries":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			newest = string(b)
			log = append(log, newest)
			fmt.Fprintf(w, `{"index":%d,"leaf_hash":"AA=="}`, len(log)-1)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	hub := NewHubClient([]string{srv.URL}, srv.Client())
	ctx := context.Background()
	tl, res, err := PublishTrustList(ctx, f.ca, hub, f.start)
	if err != nil {
		t.Fatal(err)
	}
	if tl.Ver != 1 || res.Index != 0 || len(tl.Certs) != 4 {
		t.Errorf("first publish: version %d index %d certs %d", tl.Ver, res.Index, len(tl.Certs))
	}
	// Another CA process moved the log ahead: the next version goes above it.
	mu.Lock()
	ahead, err := SealTrustList(f.ca.Root(), &TrustList{At: f.start.Unix(), Ver: 7})
	newest = ahead
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tl, _, err = PublishTrustList(ctx, f.ca, hub, f.start.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if tl.Ver != 8 {
		t.Errorf("version %d after the log's 7, want 8", tl.Ver)
	}
	ts := f.emptyStore(t)
	for _, leaf := range log {
		if _, err := ApplyTrustList(ts, leaf); err != nil {
			t.Fatal(err)
		}
	}
	if ts.Version() != 8 {
		t.Errorf("store version %d, want 8", ts.Version())
	}
}
