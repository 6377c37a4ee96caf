package node_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/consensus"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// End to end: a real hub whose leader submits every checkpoint to two
// province nodes as witnesses (over HTTP, with its hub certificate's
// request tokens) and serves their cosignatures; a node that requires 2
// becomes ready on them, and a device that requires 2 installs its bundle.
func TestNodesWitnessTheHubAndANodeRequiringTwoTrustsIt(t *testing.T) {
	f := newFed(t, 1)
	lns := map[hcx.ProvinceCode]net.Listener{}
	var prefixes []string
	for _, p := range []hcx.ProvinceCode{"440000", "510000"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[p] = ln
		prefixes = append(prefixes, "http://"+ln.Addr().String()+"/v1/witness")
	}
	hub := startHubWith(t, f, 0, 1, func(c *consensus.Config) { c.Witnesses = prefixes }, f.batch(t, 1, 0, 10, hcx.Red))
	gd, _ := runNodeWith(t, f, t.TempDir(), func(c *node.Config) {
		c.Province, c.Signer, c.RulesPath = "440000", f.provs["440000"], "../configs/rules/440000.yaml"
		c.Hub = exchange.NewHubClient(hub.URLs(), &http.Client{Timeout: 10 * time.Second}).SignWith(f.provs["440000"], nil)
	}, hub.URLs()...)
	sc, _ := runNodeWith(t, f, t.TempDir(), func(c *node.Config) { c.Cosignatures, c.BundleInterval = 2, time.Nanosecond }, hub.URLs()...)
	serveNodeOn(t, gd, lns["440000"])
	serveNodeOn(t, sc, lns["510000"])

	waitFor(t, "Sichuan's node to be ready on a checkpoint both nodes cosigned", func() bool {
		return sc.Ready() == nil && sc.Checkpoints().Witnessed >= 2
	})
	for _, n := range []*node.Node{gd, sc} {
		if m := metricsOf(n); strings.Contains(m, `hcx_node_witness_cosigned_total{province="`+string(n.Province())+`"} 0`) {
			t.Errorf("%s's node cosigned nothing:\n%s", n.Province(), m)
		}
	}
	before := sc.Checkpoints().Witnessed
	submit(t, f, hub.URLs()[0], f.batch(t, 2, 10, 10, hcx.Red))
	waitFor(t, "a newer checkpoint cosigned by both", func() bool { return sc.Checkpoints().Witnessed > before && sc.Ready() == nil })

	b, err := sc.VerificationBundle()
	if err != nil {
		t.Fatal(err)
	}
	raw := bundleBytes(t, b)
	if err := deviceOf(t, f, 2).Install(bytes.NewReader(raw), nil); err != nil {
		t.Fatalf("a device requiring 2 cosignatures: %v", err)
	}
	if err := deviceOf(t, f, 3).Install(bytes.NewReader(raw), nil); !errors.Is(err, exchange.ErrTooFewCosignatures) || !strings.Contains(err.Error(), "2 valid of the 3 required") {
		t.Errorf("a device requiring 3 of the 2 witnesses: %v; want too few, 2 of 3", err)
	}
}
