package node_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// alterStoredLeaf changes one byte of leaf idx where a stopped hub member
// keeps it: the key "l" || idx (8 bytes, big-endian) of the badger state
// named by dir/fsm/CURRENT (consensus/fsm.go).
func alterStoredLeaf(t *testing.T, dir string, idx uint64) {
	t.Helper()
	name := "fsm-0"
	if b, err := os.ReadFile(filepath.Join(dir, "fsm", "CURRENT")); err == nil {
		name = strings.TrimSpace(string(b))
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "fsm", name)).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := binary.BigEndian.AppendUint64([]byte("l"), idx)
	err = db.Update(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		// One base64url character of the envelope's signature.
		if v[len(v)-2] == 'A' {
			v[len(v)-2] = 'B'
		} else {
			v[len(v)-2] = 'A'
		}
		return txn.Set(key, v)
	})
	if err != nil {
		t.Fatalf("alter leaf %d: %v", idx, err)
	}
}

// TestTamperedLeafIsNamedByAuditorAndFollower is issue 13 item 4 for a
// leaf changed on one member's disk: a member of a real 3-member hub is
// stopped, one byte of one stored leaf is changed in its badger store, and
// it is started again. The auditor, reading every member, names that
// member and the index; a node following the log from that member refuses
// it as a fork naming the member, and applies nothing from it.
func TestTamperedLeafIsNamedByAuditorAndFollower(t *testing.T) {
	f := newFed(t, 3)
	hub := startHub(t, f, 0, 3, f.batch(t, 1, 0, 10, hcx.Red), f.batch(t, 2, 10, 10, hcx.Red), f.batch(t, 3, 20, 10, hcx.Red))
	for _, u := range hub.URLs() {
		checkpointOf(t, u, 4)
	}
	const altered = 2
	victim := hub.Members[2]
	victimURL := victim.URL()
	cfg := hub.MemberConfig(2)
	cfg.RaftAddr, cfg.HTTPAddr = victim.RaftAddr(), strings.TrimPrefix(victimURL, "http://")
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	alterStoredLeaf(t, cfg.Dir, altered)
	h, err := consensus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hub.Members[2] = h // closed with the cluster
	if h.URL() != victimURL {
		t.Fatalf("the member came back at %s, not %s", h.URL(), victimURL)
	}
	checkpointOf(t, victimURL, 4)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := audit.OpenVerifier(t.TempDir(), f.root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rep, err := audit.Run(ctx, audit.Config{Hub: exchange.NewHubClient(hub.URLs(), nil).SignWith(f.provs["510000"], nil)}, v)
	if err != nil {
		t.Fatal(err)
	}
	named := false
	for _, fd := range rep.Findings {
		if fd.Member != victimURL {
			t.Errorf("the auditor blames an honest member: %v", fd)
		}
		if fd.Kind == audit.KindLeaf && fd.Index != nil && *fd.Index == altered {
			named = true
		}
	}
	if !named {
		t.Fatalf("the auditor's findings do not name %s at index %d: %v", victimURL, altered, rep.Findings)
	}

	n, _ := runNode(t, f, t.TempDir(), victimURL)
	var fork *node.ForkError
	waitFor(t, "the follower to report the fork", func() bool { return errors.As(n.Ready(), &fork) })
	if fork.Member != victimURL || fork.Size != 4 {
		t.Errorf("fork = %v; want one at size 4 naming %s", fork, victimURL)
	}
	if got := n.Applied(); got != 0 {
		t.Errorf("the follower applied %d entries from the altered member", got)
	}
}
