package node

import (
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// TestTheFollowerDecidesRevocationAtTheCommitTime: a batch dated before its
// key's revocation but committed after it is refused by a follower, whatever
// at it carries; one committed before the revocation still counts.
func TestTheFollowerDecidesRevocationAtTheCommitTime(t *testing.T) {
	pki := newTestPKI(t, "440000", "510000")
	revokedAt := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	tl2 := exchange.TrustList{At: time.Now().Unix(), Ver: 2,
		Revoked: []exchange.Revocation{{KID: pki.provs["440000"].KID, At: revokedAt.Unix()}}}
	for _, s := range pki.provs {
		tl2.Certs = append(tl2.Certs, exchange.TrustedCertOf(s))
	}
	revocation, err := exchange.SealTrustList(pki.root, &tl2)
	if err != nil {
		t.Fatal(err)
	}
	at := revokedAt.Add(-time.Minute) // signed before the revocation
	batch := func(seq uint64, sub hcx.Subject) string {
		b, err := exchange.SealBatch(pki.provs["440000"], &exchange.Batch{Iss: "440000", Seq: seq, At: at.Unix(), SKV: 1,
			Atts: []hcx.Attestation{{Subject: sub, Colour: hcx.Red, Reasons: []hcx.Reason{hcx.ReasonLabPositive}, Eff: at.Unix(), Exp: at.Add(time.Hour).Unix(), PolicyV: "00", N: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	honest, stolen := hcx.Subject("aaaaaaaaaaaaaaaaaaaaaaaaab"), hcx.Subject("aaaaaaaaaaaaaaaaaaaaaaaaac")
	sc := openTestNode(t, pki, "510000", t.TempDir(), time.Now)
	defer sc.Close()
	page := exchange.Entries{
		Entries: []string{pki.trustList(t, 1), batch(1, honest), revocation, batch(2, stolen)},
		Times:   []int64{at.Unix(), at.Add(30 * time.Second).Unix(), revokedAt.Add(time.Minute).Unix(), revokedAt.Add(2 * time.Minute).Unix()},
	}
	if err := sc.apply(0, page); err != nil {
		t.Fatal(err)
	}
	has := func(sub hcx.Subject) bool {
		var found bool
		err := sc.db.View(func(txn *badger.Txn) error {
			var a exchange.LoggedAttestation
			var err error
			found, err = getJSON(txn, pForeign+string(sub)+"/440000", &a)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	if !has(honest) {
		t.Error("the batch committed before the revocation was dropped")
	}
	if has(stolen) {
		t.Error("the batch committed after the revocation counts, because of the at its signer wrote")
	}
	if got := sc.metrics.followRejected.Load(); got != 1 {
		t.Errorf("%d entries rejected, want 1", got)
	}
}
