package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/offline"
)

// bundleWorld is a real hub and a real Sichuan node that followed a random
// log, with the node's clock in the test's hands.
type bundleWorld struct {
	f       *fed
	hub     *consensus.Cluster
	n       *node.Node
	clock   atomic.Int64 // Unix nanoseconds
	revoked *certs.Signer // a Guangdong key the second trust list revokes
	subs    []hcx.Subject
	seq     map[hcx.ProvinceCode]uint64
	nextN   map[string]uint64
	rng     *rand.Rand
	entries int
}

func (w *bundleWorld) now() time.Time { return time.Unix(0, w.clock.Load()) }

var bundleReasons = []hcx.Reason{hcx.ReasonLabPositive, hcx.ReasonContactClose, hcx.ReasonTravelRisk, hcx.ReasonOrderCDC, hcx.ReasonClear}

// randomBatch seals a batch by prov of random attestations about the
// world's subjects: random colours, reason sets, eff/exp around now, and
// per-subject sequences that sometimes supersede, sometimes repeat.
func (w *bundleWorld) randomBatch(t testing.TB, prov hcx.ProvinceCode) string {
	t.Helper()
	now := time.Now().Unix()
	w.seq[prov]++
	b := &exchange.Batch{Iss: prov, Seq: w.seq[prov], At: now, SKV: 1}
	for i := 0; i < 1+w.rng.IntN(12); i++ {
		sub := w.subs[w.rng.IntN(len(w.subs))]
		k := string(prov) + "/" + string(sub)
		w.nextN[k] += uint64(w.rng.IntN(2)) // 0: the same n again, which does not supersede
		if w.nextN[k] == 0 {
			w.nextN[k] = 1
		}
		var rs []hcx.Reason
		for _, r := range bundleReasons {
			if w.rng.IntN(3) == 0 {
				rs = append(rs, r)
			}
		}
		eff := now + int64(w.rng.IntN(4*3600)) - 2*3600
		b.Atts = append(b.Atts, hcx.Attestation{Subject: sub, Colour: []hcx.Colour{hcx.Green, hcx.Yellow, hcx.Red}[w.rng.IntN(3)], Reasons: rs,
			Eff: eff, Exp: eff + 60 + int64(w.rng.IntN(4*3600)), PolicyV: "00112233445566778899aabbccddeeff", N: w.nextN[k]})
	}
	s, err := exchange.SealBatch(w.f.provs[prov], b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newBundleWorld starts the hub with the trust list, a second trust list
// that adds and revokes a Guangdong key, and batches random batches, and
// a node that follows it.
func newBundleWorld(t testing.TB, seed uint64, batches int) *bundleWorld {
	t.Helper()
	w := &bundleWorld{f: newFed(t, 1), seq: map[hcx.ProvinceCode]uint64{}, nextN: map[string]uint64{}, rng: rand.New(rand.NewPCG(seed, 12))}
	w.clock.Store(time.Now().UnixNano())
	for i := 0; i < 24; i++ {
		w.subs = append(w.subs, certs.SubjectKey{Version: 1, Key: bytes.Repeat([]byte{7}, 32)}.Subject(hcx.DocCNID, "bundle-"+strconv.Itoa(i)))
	}
	now := time.Now()
	var err error
	w.revoked, err = certs.Issue(w.f.root, certs.IssueRequest{Role: certs.RoleProvince, Province: "440000", Name: "province-440000-old", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tl := &exchange.TrustList{At: now.Unix(), Ver: 2, Revoked: []exchange.Revocation{{KID: w.revoked.KID, At: now.Unix() - 60}}}
	for _, s := range []*certs.Signer{w.f.provs["440000"], w.f.provs["510000"], w.f.hubs[0][0], w.revoked} {
		tl.Certs = append(tl.Certs, exchange.TrustedCertOf(s))
	}
	tl2, err := exchange.SealTrustList(w.f.root, tl)
	if err != nil {
		t.Fatal(err)
	}
	entries := []string{tl2}
	for i := 0; i < batches; i++ {
		entries = append(entries, w.randomBatch(t, []hcx.ProvinceCode{"440000", "510000"}[w.rng.IntN(2)]))
	}
	w.hub = startHub(t, w.f, 0, 1, entries...)
	w.entries = 1 + len(entries)
	w.n, _ = runNodeAt(t, w.f, t.TempDir(), w.now, w.hub.URLs()...)
	w.waitApplied(t)
	return w
}

// waitApplied waits until the node applied every entry and verified a
// checkpoint for its tree, so it can build a bundle.
func (w *bundleWorld) waitApplied(t testing.TB) *node.Bundle {
	t.Helper()
	var b *node.Bundle
	waitFor(t, fmt.Sprintf("node applies %d entries and can build a bundle", w.entries), func() bool {
		if w.n.Applied() != uint64(w.entries) {
			return false
		}
		var err error
		b, err = w.n.VerificationBundle()
		if err != nil && !errors.Is(err, node.ErrNoCheckpoint) {
			t.Fatal(err)
		}
		return err == nil && b.Size == uint64(w.entries)
	})
	return b
}

// bundleBytes reads a built bundle's file (the node replaces it later).
func bundleBytes(t testing.TB, b *node.Bundle) []byte {
	t.Helper()
	raw, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != b.Bytes {
		t.Fatalf("bundle file is %d bytes, the node says %d", len(raw), b.Bytes)
	}
	return raw
}

func (w *bundleWorld) device(t testing.TB, raw []byte) *offline.Device {
	t.Helper()
	d, err := offline.Open(t.TempDir(), w.f.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Install(bytes.NewReader(raw), nil); err != nil {
		t.Fatal(err)
	}
	return d
}

// randomCode is a code of one of the kinds a checkpoint meets: valid (any
// colour, dynamic or offline lifetime, issued a while ago), expired,
// tampered, signed by a revoked key, by a key from another root, malformed.
func (w *bundleWorld) randomCode(t testing.TB, at time.Time) (string, string) {
	t.Helper()
	prov := []hcx.ProvinceCode{"440000", "510000"}[w.rng.IntN(2)]
	signer := w.f.provs[prov]
	kind := []string{"valid", "valid", "valid", "expired", "forged", "revoked", "unknown", "malformed"}[w.rng.IntN(8)]
	iat := at.Unix() - int64(w.rng.IntN(3600))
	ttl := []int64{60, 24 * 3600}[w.rng.IntN(2)]
	switch kind {
	case "expired":
		iat, ttl = at.Unix()-7200, 60
	case "revoked":
		prov, signer = "440000", w.revoked
	case "unknown":
		other := newFed(t)
		signer = other.provs[prov]
	case "malformed":
		return []string{"", "HCX1:", "HCX1:abc.def.ghi", "not a code", exchange.CodePrefix + strings.Repeat("A", 40)}[w.rng.IntN(5)], kind
	}
	if kind == "valid" && ttl == 60 {
		iat = at.Unix() - int64(w.rng.IntN(50))
	}
	c := &exchange.CodeClaims{Iss: prov, Sub: w.subs[w.rng.IntN(len(w.subs))], SKV: 1, Col: []hcx.Colour{hcx.Green, hcx.Yellow, hcx.Red}[w.rng.IntN(3)],
		Name: "张*", IDTail: "0028", Vaccinated: w.rng.IntN(2) == 0, IssuedAt: iat, Expires: iat + ttl}
	qr, err := exchange.IssueCode(signer, c)
	if err != nil {
		t.Fatal(err)
	}
	if kind == "forged" {
		i := strings.LastIndex(qr, ".") + 5
		b := []byte(qr)
		if b[i] = 'A'; qr[i] == 'A' {
			b[i] = 'B'
		}
		qr = string(b)
	}
	return qr, kind
}

// answerJSON is the JSON of an answer or of its error as the routes give
// it: the stable code and the message.
func answerJSON(t testing.TB, v *exchange.Verification, err error) string {
	t.Helper()
	if err != nil {
		var he *hcx.Error
		if !errors.As(err, &he) {
			t.Fatalf("error without a code: %v", err)
		}
		b, _ := json.Marshal(map[string]string{"code": he.Code, "error": err.Error()})
		return string(b)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func bundleSeeds() int {
	if s, err := strconv.Atoi(os.Getenv("HCX_BUNDLE_SEEDS")); err == nil && s > 0 {
		return s
	}
	return 8
}

// The offline verifier answers exactly what the node answers at the same
// log size and clock, over many random logs, codes and clocks.
func TestOfflineVerifierAnswersAsTheNodeOverRandomLogs(t *testing.T) {
	ctx := context.Background()
	for seed := 1; seed <= bundleSeeds(); seed++ {
		t.Run("seed"+strconv.Itoa(seed), func(t *testing.T) {
			w := newBundleWorld(t, uint64(seed), 6+seed%5)
			b := w.waitApplied(t)
			d := w.device(t, bundleBytes(t, b))
			cpTime := time.Unix(d.State().CheckpointTime, 0)
			kinds := map[string]int{}
			colours := map[hcx.Colour]int{}
			for i := 0; i < 150; i++ {
				at := cpTime.Add(time.Duration(w.rng.Int64N(int64(5 * time.Hour))))
				if i%10 == 0 {
					at = cpTime
				}
				w.clock.Store(at.UnixNano())
				qr, kind := w.randomCode(t, at)
				v, err := w.n.Verify(ctx, qr)
				res, derr := d.Verify(qr, at)
				var dv *exchange.Verification
				if res != nil {
					dv = res.Verification
					if res.Age != at.Sub(cpTime) {
						t.Fatalf("age %s, want %s", res.Age, at.Sub(cpTime))
					}
				}
				online, offl := answerJSON(t, v, err), answerJSON(t, dv, derr)
				if online != offl {
					t.Fatalf("%s code at %s:\nnode:    %s\noffline: %s", kind, at.UTC().Format(time.RFC3339), online, offl)
				}
				if err == nil {
					colours[v.Colour]++
					if v.LogIndex != b.Size {
						t.Fatalf("log index %d, want the bundle's %d", v.LogIndex, b.Size)
					}
				}
				kinds[kind]++
			}
			if colours[hcx.Red]+colours[hcx.Yellow] == 0 || b.Header.Count == 0 {
				t.Errorf("the log gave no non-green answer (%v, %d records): the comparison tested little", colours, b.Header.Count)
			}
			t.Logf("kinds %v colours %v records %d", kinds, colours, b.Header.Count)
		})
	}
}
