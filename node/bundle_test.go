package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
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
	clock   atomic.Int64  // Unix nanoseconds
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
	// The node logs its policy and its box key when it starts, and a new
	// box key at a receipt tick by the test's clock, which moves hours
	// ahead and back: one accepted while the clock is back grew the log
	// under the comparison (a flake seen under load). So no receipt tick
	// comes during the test, and the bundle is built once the node's own
	// leaves are in the log.
	w.n, _ = runNodeWith(t, w.f, t.TempDir(), func(c *node.Config) { c.Now, c.ReceiptInterval = w.now, 24*time.Hour }, w.hub.URLs()...)
	waitFor(t, "the node's policy and box key in the log", w.n.StartPublished)
	w.entries = int(w.hub.Leader().State().Size)
	if want := 4 + batches; w.entries != want {
		t.Fatalf("the log holds %d entries, want %d: two trust lists, %d batches, the node's policy and box key", w.entries, want, batches)
	}
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

// splitBundle returns a bundle's header payload and its body.
func splitBundle(t testing.TB, raw []byte) (exchange.BundleHeader, []byte) {
	t.Helper()
	line, body, ok := bytes.Cut(raw, []byte("\n"))
	if !ok {
		t.Fatal("bundle has no header line")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(string(line), ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var h exchange.BundleHeader
	if err := json.Unmarshal(payload, &h); err != nil {
		t.Fatal(err)
	}
	return h, body
}

func resealBundle(t testing.TB, s *certs.Signer, h exchange.BundleHeader, body []byte) []byte {
	t.Helper()
	hdr, err := exchange.SealBundleHeader(s, &h)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(hdr+"\n"), body...)
}

// Every bad bundle is refused with an error naming what is wrong, and the
// device keeps the bundle it had.
func TestDeviceRefusesBadBundles(t *testing.T) {
	w := newBundleWorld(t, 99, 6)
	b := w.waitApplied(t)
	raw1 := bundleBytes(t, b)
	h, body := splitBundle(t, raw1)
	fakeHub := mustCheckpoint(t, w.f.provs["440000"], h)

	// A second bundle after more of the log, a minute later.
	submit(t, w.f, w.hub.URLs()[0], w.randomBatch(t, "440000"), w.randomBatch(t, "510000"))
	w.entries += 2
	w.clock.Add(int64(2 * time.Minute))
	b2 := w.waitApplied(t)
	raw2 := bundleBytes(t, b2)

	d := w.device(t, raw1)
	before := d.State()
	cases := []struct {
		name, want string
		raw        []byte
	}{
		{"checkpoint signed by a province key, not a hub key", "checkpoint", resealBundle(t, w.f.provs["510000"], withCheckpoint(h, fakeHub), body)},
		{"a body byte changed", "body: SM3", append(append([]byte(nil), raw1[:len(raw1)-3]...), raw1[len(raw1)-3]^1, raw1[len(raw1)-2], raw1[len(raw1)-1])},
		{"header signed by another province's key", "iss", resealBundle(t, w.f.provs["440000"], h, body)},
		{"a record short", "body", raw1[:len(raw1)-1]},
		{"a record too many", "more than", append(append([]byte(nil), raw1...), body[:exchange.BundleRecordSize]...)},
	}
	for _, c := range cases {
		err := d.Install(bytes.NewReader(c.raw), nil)
		if !errors.Is(err, exchange.ErrBadBundle) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want a bad bundle naming %q", c.name, err, c.want)
		}
		if got := d.State(); got.Header.Body != before.Header.Body || got.CheckpointSize != before.CheckpointSize {
			t.Errorf("%s: the device's bundle changed", c.name)
		}
	}

	// Forward with the consistency proof from the hub: accepted.
	p, err := exchange.NewHubClient(w.hub.URLs(), nil).SignWith(w.f.provs["510000"], nil).ConsistencyProof(context.Background(), b.Size, b2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Install(bytes.NewReader(raw2), nil); !errors.Is(err, offline.ErrRollback) {
		t.Errorf("a newer bundle without the proof linking the old log: err = %v, want a rollback refusal", err)
	}
	if err := d.Install(bytes.NewReader(raw2), p); err != nil {
		t.Fatalf("newer bundle with the proof: %v", err)
	}
	// Back to the older one: a rollback.
	if err := d.Install(bytes.NewReader(raw1), nil); !errors.Is(err, offline.ErrRollback) {
		t.Errorf("older bundle: err = %v, want a rollback refusal", err)
	}
	if d.State().Header.Size != b2.Size {
		t.Errorf("device log size %d after the refused rollback, want %d", d.State().Header.Size, b2.Size)
	}

	// Clocks: before the newest checkpoint, and past the limit.
	cpTime := time.Unix(d.State().CheckpointTime, 0)
	qr, _ := exchange.IssueCode(w.f.provs["440000"], &exchange.CodeClaims{Iss: "440000", Sub: w.subs[0], SKV: 1, Col: hcx.Green, IssuedAt: cpTime.Unix(), Expires: cpTime.Unix() + 24*3600})
	var he *hcx.Error
	if _, err := d.Verify(qr, cpTime.Add(-time.Second)); !errors.As(err, &he) || he.Code != "clock_behind" {
		t.Errorf("clock before the checkpoint: err = %v, want clock_behind", err)
	}
	if _, err := d.Verify(qr, cpTime.Add(6*time.Hour+time.Second)); !errors.As(err, &he) || he.Code != "bundle_stale" {
		t.Errorf("bundle older than its max_age: err = %v, want bundle_stale", err)
	}
	if r, err := d.Verify(qr, cpTime.Add(time.Hour)); err != nil || r.Age != time.Hour {
		t.Errorf("within the limit: %v, %v", r, err)
	}
	d.MaxAge = 30 * time.Minute // the device may only tighten the limit
	if _, err := d.Verify(qr, cpTime.Add(time.Hour)); !errors.As(err, &he) || he.Code != "bundle_stale" {
		t.Errorf("past the device's own limit: err = %v, want bundle_stale", err)
	}
	d.MaxAge = 24 * time.Hour
	if _, err := d.Verify(qr, cpTime.Add(6*time.Hour+time.Second)); !errors.As(err, &he) || he.Code != "bundle_stale" {
		t.Errorf("a device limit longer than the bundle's: err = %v, want bundle_stale", err)
	}
}

// mustCheckpoint signs a checkpoint note for h's log with s, a key that is
// not a hub key.
func mustCheckpoint(t testing.TB, s *certs.Signer, h exchange.BundleHeader) string {
	t.Helper()
	root, _ := base64.StdEncoding.DecodeString(h.Root)
	note, err := exchange.SignCheckpoint(s, h.Size, root, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return string(note)
}

func withCheckpoint(h exchange.BundleHeader, note string) exchange.BundleHeader {
	h.Checkpoint, h.Proof = note, []string{}
	return h
}
