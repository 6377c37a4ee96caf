package consensus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// trailHash is a well-formed trail hash made of one repeated hex digit.
func trailHash(d string) string { return strings.Repeat(d, 64) }

// TestHubLogsTrailHeadsAndRefusesOnesThatGoBack: the hub logs a province's
// trail head (protocol 1.6) outside the batch sequence, and refuses,
// without logging, a head that takes the province's trail back, one signed
// by another province and one that does not read strictly.
func TestHubLogsTrailHeadsAndRefusesOnesThatGoBack(t *testing.T) {
	p, h, ctx := trustedHub(t)
	now := time.Now().Unix()
	gd, sc := p.provs["440000"], p.provs["510000"]
	head := func(seq uint64, hash string) string {
		t.Helper()
		env, err := exchange.SealAuditHead(gd, now, seq, hash)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	five := head(5, trailHash("a"))
	first, err := h.Submit(ctx, five)
	if err != nil {
		t.Fatalf("a genuine trail head: %v", err)
	}
	if again, err := h.Submit(ctx, five); err != nil || again.Index != first.Index {
		t.Fatalf("the same bytes again: %v index %d, want %d", err, again.Index, first.Index)
	}
	// The same head signed again (another signature) is a new leaf.
	if _, err := h.Submit(ctx, head(5, trailHash("a"))); err != nil {
		t.Fatalf("the same head signed again: %v", err)
	}
	// A head is not a batch: Guangdong's first batch is still seq 1.
	if _, err := h.Submit(ctx, p.batch(t, "440000", 1, 1, 0, hcx.Red, 1)); err != nil {
		t.Fatalf("batch 1 after a trail head: %v", err)
	}

	conflict := func(name, env, field string) {
		t.Helper()
		before := h.State().Size
		_, err := h.Submit(ctx, env)
		var he *hcx.Error
		if !errors.As(err, &he) || he.Class != hcx.EConflict || he.Code != "trail_conflict" || he.Field != field {
			t.Fatalf("%s: got %v, want a trail_conflict naming %s", name, err, field)
		}
		if after := h.State().Size; after != before {
			t.Fatalf("%s: the log grew from %d to %d", name, before, after)
		}
	}
	conflict("a lower trail seq", head(4, trailHash("b")), "seq")
	conflict("the same seq with another hash", head(5, trailHash("b")), "hash")

	// Sichuan may not log a head in Guangdong's name.
	forged, err := sc.SignJWS(exchange.HdrAuditHead, []byte(fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":9,"hash":"%s"}`, now, trailHash("c"))))
	if err != nil {
		t.Fatal(err)
	}
	before := h.State().Size
	_, err = h.Submit(ctx, forged)
	var he *hcx.Error
	if !errors.Is(err, exchange.ErrWrongIssuer) || !errors.As(err, &he) || he.Class != hcx.EForbidden || he.Field != "iss" || h.State().Size != before {
		t.Fatalf("Guangdong's head signed by Sichuan: %v, log %d -> %d", err, before, h.State().Size)
	}

	for _, c := range []struct{ name, hdr, payload, field string }{
		{"reject/hash-not-hex", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":9,"hash":"%s"}`, now, strings.Repeat("g", 64)), "hash"},
		{"reject/hash-uppercase", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":9,"hash":"%s"}`, now, trailHash("A")), "hash"},
		{"reject/hash-short", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":9,"hash":"abc"}`, now), "hash"},
		{"reject/zero-hash-for-a-trail-with-entries", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":9,"hash":"%s"}`, now, exchange.TrailZeroHash), "hash"},
		{"reject/seq-negative", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":-1,"hash":"%s"}`, now, trailHash("c")), "seq"},
		{"reject/seq-missing", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"hash":"%s"}`, now, trailHash("c")), "seq"},
		{"reject/unknown-member", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.audithead.v1","iss":"440000","at":%d,"seq":9,"hash":"%s","actor":"x"}`, now, trailHash("c")), "actor"},
		{"reject/typ-of-another-kind", exchange.HdrAuditHead, fmt.Sprintf(`{"typ":"hcx.batch.v1","iss":"440000","at":%d,"seq":9,"hash":"%s"}`, now, trailHash("c")), "typ"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env, err := gd.SignJWS(c.hdr, []byte(c.payload))
			if err != nil {
				t.Fatal(err)
			}
			refusedAndNotLogged(t, ctx, h, env, c.field)
		})
	}

	// A head further on is logged; Sichuan's heads are its own affair.
	if _, err := h.Submit(ctx, head(9, trailHash("c"))); err != nil {
		t.Fatalf("a later head: %v", err)
	}
	scHead, err := exchange.SealAuditHead(sc, now, 2, trailHash("d"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Submit(ctx, scHead); err != nil {
		t.Fatalf("Sichuan's first head: %v", err)
	}

	// The last head of each province travels in a snapshot: a state
	// restored from one refuses what the snapshotted one refused.
	fresh := restoredCopy(t, p, h)
	err = fresh.db.View(func(tx *badger.Txn) error {
		var he *hcx.Error
		if err := checkTrailHead(tx, "440000", &exchange.AuditHead{Seq: 8, Hash: trailHash("e")}); !errors.As(err, &he) || he.Field != "seq" {
			return fmt.Errorf("Guangdong's head 8 after the restored 9: %v, want a conflict naming seq", err)
		}
		if err := checkTrailHead(tx, "510000", &exchange.AuditHead{Seq: 2, Hash: trailHash("f")}); !errors.As(err, &he) || he.Field != "hash" {
			return fmt.Errorf("Sichuan's head 2 with another hash after the restored one: %v, want a conflict naming hash", err)
		}
		return checkTrailHead(tx, "440000", &exchange.AuditHead{Seq: 10, Hash: trailHash("e")})
	})
	if err != nil {
		t.Fatal(err)
	}
}
