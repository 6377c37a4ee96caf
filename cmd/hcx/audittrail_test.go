package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// TestAuditChecksAProvincesTrailThroughItsNode: Guangdong's node logs its
// trail heads (every 200 ms here); hcx audit --trail reads the trail from
// the node over HTTP with the auditor's request tokens and finds nothing;
// a node that serves its trail cut below a logged head (and signs the cut
// head) is reported as trail_truncated naming the province and the head.
func TestAuditChecksAProvincesTrailThroughItsNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := startFederation(ctx, federationConfig{
		Dir: t.TempDir(), Provinces: devProvinces, HubMembers: 1,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		AuditHeadEvery: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	gd := f.Nodes["440000"]
	op := auth.NewContext(context.Background(), &auth.Principal{Role: auth.RoleOperator, Actor: "oidc:https://idp.test#op-1", Name: "op-1", Province: "440000", Method: auth.MethodBearer})
	for i := 0; i < 4; i++ {
		if err := gd.AuditRead(op, node.ActionResidentReadIdentity, "", "a test"); err != nil {
			t.Fatal(err)
		}
	}
	head, err := gd.VerifyAuditTrail()
	if err != nil {
		t.Fatal(err)
	}
	want := "hcx_node_audit_head_logged_seq{province=\"440000\"} " + strconv.FormatUint(head.Seq, 10) + "\n"
	deadline := time.Now().Add(20 * time.Second)
	for {
		var b bytes.Buffer
		gd.WriteMetrics(&b)
		if strings.Contains(b.String(), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("head %d never logged", head.Seq)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitSettled(t, f)
	checkpointNow(t, f)
	url := f.NodeURLs["440000"]

	state := filepath.Join(t.TempDir(), "audit")
	rep, err := runAuditCLI(t, f, state, f.HubURLs, "--trail", "440000="+url)
	if err != nil || len(rep.Findings) != 0 || len(rep.Trails) != 1 || rep.Trails[0] != "440000" {
		t.Fatalf("an honest trail: err %v, trails %v, findings %v, unreachable %v", err, rep.Trails, rep.Findings, rep.Unreachable)
	}

	// The node now serves its trail cut after entry head.Seq-1, and vouches
	// for the cut end with its own key.
	cut := lyingMember(t, f, url, map[string]func([]byte) []byte{"/v1/audit": func(b []byte) []byte {
		var page node.AuditPage
		if json.Unmarshal(b, &page) != nil {
			return b
		}
		var kept []node.AuditRecord
		for _, e := range page.Entries {
			if e.Seq < head.Seq {
				kept = append(kept, e)
			}
		}
		if len(kept) == 0 {
			return b
		}
		last := kept[len(kept)-1]
		page.Entries, page.More, page.Head = kept, false, node.AuditHead{Seq: last.Seq, Hash: last.Hash}
		if page.SignedHead, err = exchange.SealAuditHead(f.PKI.Provinces["440000"], time.Now().Unix(), last.Seq, last.Hash); err != nil {
			t.Error(err)
		}
		b, _ = json.Marshal(page)
		return b
	}})
	rep, err = runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), f.HubURLs, "--trail", "440000="+cut)
	found := false
	for _, fd := range rep.Findings {
		found = found || (fd.Kind == audit.KindTrailTruncated && fd.Province == "440000" && fd.Seq == head.Seq)
	}
	if !errors.Is(err, errFindings) || !found {
		t.Fatalf("a trail cut below its logged head %d: err %v, findings %v", head.Seq, err, rep.Findings)
	}
}

// TestAuditTrailFlagRefusesBadValues: each bad --trail value is refused
// before anything is read, naming what is wrong.
func TestAuditTrailFlagRefusesBadValues(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"440000", "want CODE=URL"},
		{"44=http://127.0.0.1:8801", "CODE"},
		{"999999=http://127.0.0.1:8801", "CODE"},
		{"440000=127.0.0.1:8801", "URL"},
		{"440000=ftp://127.0.0.1/", "URL"},
		{"440000=", "URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runAudit(context.Background(), []string{"--hub", "http://127.0.0.1:1", "--dir", t.TempDir(), "--trail", c.name}, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), "-trail") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("--trail %q: %v, want an error about -trail saying %q", c.name, err, c.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	err := runAudit(context.Background(), []string{"--hub", "http://127.0.0.1:1", "--trail", "440000=http://a:1", "--trail", "440000=http://b:1"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Fatalf("the same province twice: %v", err)
	}
}

// TestNodeRefusesANegativeAuditHeadEvery: hcx node refuses a negative
// --audit-head-every, naming the flag, before it opens anything.
func TestNodeRefusesANegativeAuditHeadEvery(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runNode(context.Background(), []string{"--audit-head-every", "-1m"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--audit-head-every") {
		t.Fatalf("--audit-head-every -1m: %v", err)
	}
}
