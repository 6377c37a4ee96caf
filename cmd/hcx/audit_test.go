package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx/audit"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/exchange"
)

// lyingMember is a hub member as an HTTP proxy in front of it shows it: every
// answer to path passes through lie. It signs what it forwards afresh with
// the auditor's key (the token names the URL called).
func lyingMember(t *testing.T, f *federation, member string, lie map[string]func([]byte) []byte) string {
	t.Helper()
	target, err := url.Parse(member)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		ErrorLog: log.New(io.Discard, "", 0),
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Accept-Encoding")
			if err := auth.SignRequest(r.Out, nil, f.PKI.Auditor, time.Now()); err != nil {
				t.Error(err)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			fn := lie[resp.Request.URL.Path]
			if fn == nil || resp.StatusCode != http.StatusOK {
				return nil
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			b = fn(b)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// runAuditCLI runs hcx audit with --json and returns its report and error.
func runAuditCLI(t *testing.T, f *federation, state string, hubs []string, extra ...string) (*audit.Report, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args := append([]string{"--hub", strings.Join(hubs, ","), "--dir", f.Dir, "--state", state, "--json"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := runAudit(ctx, args, &out, &errOut)
	var rep audit.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("hcx audit %v: %v; no JSON report (%v): %s", args, err, jerr, errOut.String())
	}
	return &rep, err
}

func hasFinding(rep *audit.Report, kind, member string, index *uint64, detail string) bool {
	for _, f := range rep.Findings {
		if f.Kind == kind && strings.Contains(f.Member, member) && strings.Contains(f.Detail, detail) &&
			(index == nil || (f.Index != nil && *f.Index == *index)) {
			return true
		}
	}
	return false
}

// checkpointNow is a member's current checkpoint once it covers the whole
// settled log.
func checkpointNow(t *testing.T, f *federation) *exchange.Checkpoint {
	t.Helper()
	hub := exchange.NewHubClient(f.HubURLs[:1], nil).SignWith(f.PKI.Auditor, nil)
	size := f.Hub.Leader().State().Size
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		note, err := hub.Checkpoint(context.Background())
		if err == nil {
			cp, err := exchange.ParseCheckpoint(note)
			if err == nil && cp.Size == size {
				return cp
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of size %d within 20 s", size)
	return nil
}

func TestAuditOfARealHub(t *testing.T) {
	f := startTestFederation(t, 3)
	waitSettled(t, f)
	submitRedBatches(t, f, 3)
	waitSettled(t, f)
	cp := checkpointNow(t, f)
	if cp.Size < 3 {
		t.Fatalf("the dev log has %d leaves, the test needs 3", cp.Size)
	}
	leaves, err := exchange.NewHubClient(f.HubURLs[:1], nil).SignWith(f.PKI.Auditor, nil).Entries(context.Background(), 0, 2, 0)
	if err != nil || len(leaves.Entries) != 2 {
		t.Fatalf("entries: %v %v", err, leaves)
	}
	var hubKey = f.PKI.Hubs[firstKey(f.PKI.Hubs)]

	t.Run("an honest hub has no findings, and a restart resumes", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "audit")
		rep, err := runAuditCLI(t, f, state, f.HubURLs)
		if err != nil || len(rep.Findings) != 0 || rep.Size < cp.Size || rep.Checkpoints != 3 {
			t.Fatalf("err %v, report %+v", err, rep)
		}
		again, err := runAuditCLI(t, f, state, f.HubURLs)
		if err != nil || again.Start != rep.Size {
			t.Fatalf("the second run started at %d, want %d (err %v)", again.Start, rep.Size, err)
		}
		// A member that now shows a checkpoint for a smaller tree, signed
		// by a real hub key with the true root, rolled the log back.
		one := exchange.LogHasher{}.HashLeaf([]byte(leaves.Entries[0]))
		small, err := exchange.SignCheckpoint(hubKey, 1, one, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		liar := lyingMember(t, f, f.HubURLs[1], map[string]func([]byte) []byte{"/v1/checkpoint": func([]byte) []byte { return small }})
		rep, err = runAuditCLI(t, f, state, []string{f.HubURLs[0], liar})
		if !errors.Is(err, errFindings) || !hasFinding(rep, audit.KindCheckpoint, liar, nil, "cannot shrink") {
			t.Fatalf("a smaller checkpoint: err %v, findings %v", err, rep.Findings)
		}
	})

	t.Run("a member answering another leaf is named with the index", func(t *testing.T) {
		liar := lyingMember(t, f, f.HubURLs[1], map[string]func([]byte) []byte{"/v1/entries": func(b []byte) []byte {
			var page exchange.Entries
			if json.Unmarshal(b, &page) != nil {
				return b
			}
			for i := range page.Entries {
				if page.Start+uint64(i) == 1 { // one byte of leaf 1
					e := []byte(page.Entries[i])
					e[len(e)-3] ^= 1
					page.Entries[i] = string(e)
				}
			}
			b, _ = json.Marshal(page)
			return b
		}})
		rep, err := runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), []string{f.HubURLs[0], liar, f.HubURLs[2]})
		one := uint64(1)
		if !errors.Is(err, errFindings) || !hasFinding(rep, audit.KindLeaf, liar, &one, "index 1") ||
			!hasFinding(rep, audit.KindCheckpoint, liar, nil, "leaves it served") {
			t.Fatalf("err %v, findings %v", err, rep.Findings)
		}
		for _, fd := range rep.Findings {
			if fd.Member != liar {
				t.Errorf("an honest member is blamed: %v", fd)
			}
		}
		// Read from the liar first: the forged leaf does not verify.
		rep, _ = runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), []string{liar, f.HubURLs[0]})
		if !hasFinding(rep, audit.KindEnvelope, "", &one, "") || !hasFinding(rep, audit.KindLeaf, f.HubURLs[0], &one, "") {
			t.Fatalf("liar first: findings %v", rep.Findings)
		}
	})

	t.Run("a checkpoint with a bad signature", func(t *testing.T) {
		liar := lyingMember(t, f, f.HubURLs[2], map[string]func([]byte) []byte{"/v1/checkpoint": func(b []byte) []byte {
			i := bytes.LastIndexByte(bytes.TrimRight(b, "\n"), ' ')
			sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b[i+1:])))
			if err != nil {
				t.Error(err)
				return b
			}
			sig[len(sig)-1] ^= 1
			return append(b[:i+1:i+1], base64.StdEncoding.EncodeToString(sig)+"\n"...)
		}})
		rep, err := runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), []string{f.HubURLs[0], liar})
		if !errors.Is(err, errFindings) || !hasFinding(rep, audit.KindCheckpoint, liar, nil, "not signed by a hub key") {
			t.Fatalf("err %v, findings %v", err, rep.Findings)
		}
	})

	t.Run("two signed checkpoints for one size are a split view", func(t *testing.T) {
		other := append([]byte(nil), cp.Root...)
		other[0] ^= 1
		forged, err := exchange.SignCheckpoint(hubKey, cp.Size, other, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		gossip := filepath.Join(t.TempDir(), "seen-by-sichuan.note")
		if err := os.WriteFile(gossip, forged, 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), f.HubURLs[:1], "--gossip", gossip)
		if !errors.Is(err, errFindings) || !hasFinding(rep, audit.KindSplitView, gossip, nil, "two histories") {
			t.Fatalf("err %v, findings %v", err, rep.Findings)
		}
		for _, fd := range rep.Findings {
			if fd.Kind == audit.KindSplitView && (len(fd.Notes) != 2 || !strings.Contains(strings.Join(fd.Notes, ""), string(forged))) {
				t.Errorf("a split view carries both notes: %v", fd)
			}
		}
	})

	t.Run("an inconsistent proof", func(t *testing.T) {
		// A true, older checkpoint from another auditor, and a member whose
		// consistency proofs are altered.
		one := exchange.LogHasher{}.HashLeaf([]byte(leaves.Entries[0]))
		old, err := exchange.SignCheckpoint(hubKey, 1, one, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		gossip := filepath.Join(t.TempDir(), "old.note")
		if err := os.WriteFile(gossip, old, 0o644); err != nil {
			t.Fatal(err)
		}
		liar := lyingMember(t, f, f.HubURLs[0], map[string]func([]byte) []byte{"/v1/proof/consistency": func(b []byte) []byte {
			var p struct {
				From   uint64   `json:"from"`
				To     uint64   `json:"to"`
				Hashes []string `json:"hashes"`
			}
			if json.Unmarshal(b, &p) != nil || len(p.Hashes) == 0 {
				return b
			}
			h, _ := base64.StdEncoding.DecodeString(p.Hashes[0])
			h[0] ^= 1
			p.Hashes[0] = base64.StdEncoding.EncodeToString(h)
			b, _ = json.Marshal(p)
			return b
		}})
		rep, err := runAuditCLI(t, f, filepath.Join(t.TempDir(), "audit"), []string{liar}, "--gossip", gossip)
		if !errors.Is(err, errFindings) || !hasFinding(rep, audit.KindSplitView, "", nil, "the proof from "+liar+" fails") {
			t.Fatalf("err %v, findings %v", err, rep.Findings)
		}
	})

	t.Run("bad flags name what is missing", func(t *testing.T) {
		for _, args := range [][]string{{}, {"--hub", f.HubURLs[0]}, {"--hub", "ftp://x", "--dir", f.Dir}} {
			err := runAudit(context.Background(), args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "--") {
				t.Errorf("hcx audit %v: %v", args, err)
			}
		}
	})
}

func firstKey[V any](m map[string]V) string {
	for k := range m {
		return k
	}
	return ""
}
