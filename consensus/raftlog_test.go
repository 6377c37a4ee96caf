package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// records is a slog handler keeping every record, for tests that assert on
// what a member logged.
type records struct {
	mu    *sync.Mutex
	recs  *[]slog.Record
	attrs []slog.Attr
}

func newRecords() *records { return &records{mu: &sync.Mutex{}, recs: &[]slog.Record{}} }

func (h *records) Enabled(context.Context, slog.Level) bool { return true }

func (h *records) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.mu.Lock()
	*h.recs = append(*h.recs, r)
	h.mu.Unlock()
	return nil
}

func (h *records) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], as...)
	return &c
}

func (h *records) WithGroup(string) slog.Handler { return h }

// since returns the records from the n-th on.
func (h *records) since(n int) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), (*h.recs)[n:]...)
}

func (h *records) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(*h.recs)
}

func attrOf(r slog.Record, key string) string {
	v := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

func describe(r slog.Record) string {
	s := fmt.Sprintf("%s %q", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	return s
}

func TestRaftLevelsReachSlogAsRaftMeantThem(t *testing.T) {
	rec := newRecords()
	var stopping atomic.Bool
	l := newHCLog(slog.New(rec), &stopping)
	l.Trace("t")
	l.Debug("d")
	l.Info("i", "k", 1)
	l.Warn("w")
	l.Error("e", "err", "boom")
	l.Log(hclog.Off, "never")
	l.StandardLogger(nil).Print("[ERROR] raft-net: failed to accept connection")
	l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}).Print("forced")
	want := []struct {
		level slog.Level
		msg   string
	}{{slog.LevelDebug, "t"}, {slog.LevelDebug, "d"}, {slog.LevelInfo, "i"}, {slog.LevelWarn, "w"}, {slog.LevelError, "e"},
		{slog.LevelError, "raft-net: failed to accept connection"}, {slog.LevelWarn, "forced"}}
	got := rec.since(0)
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Level != w.level || got[i].Message != w.msg || attrOf(got[i], "component") != "raft" {
			t.Errorf("record %d: %s, want %s %q with component=raft", i, describe(got[i]), w.level, w.msg)
		}
	}
	if attrOf(got[2], "k") != "1" || attrOf(got[4], "err") != "boom" {
		t.Errorf("Raft's key-value pairs are lost: %s, %s", describe(got[2]), describe(got[4]))
	}
	l.Info("fmt", "servers", hclog.Fmt("%+v", []int{1, 2}), "time", time.Second, "odd")
	if r := rec.since(len(want))[0]; attrOf(r, "servers") != "[1 2]" || attrOf(r, "extra_value_at_end") != "odd" || attrOf(r, "raft_time") != "1s" || attrOf(r, "time") != "" {
		t.Errorf("hclog's formats, odd values and keys slog has: %s", describe(r))
	}
	// Once the member stops, what Raft complains of is the stop's doing.
	stopping.Store(true)
	l.With("peer", "hub-2").Error("failed to appendEntries to")
	l.Info("entering follower state")
	got = rec.since(len(want) + 1)
	if got[0].Level != slog.LevelDebug || attrOf(got[0], "stopping") != "true" || attrOf(got[0], "peer") != "hub-2" || got[1].Level != slog.LevelInfo {
		t.Errorf("while stopping: %s, %s; want the error at DEBUG marked stopping, the info at INFO", describe(got[0]), describe(got[1]))
	}
}

// startRecordedCluster starts a 3-member loopback cluster logging to the
// records it returns.
func startRecordedCluster(t *testing.T) (*Cluster, *records) {
	t.Helper()
	p := newPKI(t, 3)
	rec := newRecords()
	cc := ClusterConfig{N: 3, Dir: t.TempDir(), RootDER: p.root.Cert.Raw, Signers: p.hubs, Logger: slog.New(rec), NoAPI: true, InsecurePlaintext: true, Tune: fastTune}
	c, err := StartCluster(ctxT(t, 30*time.Second), cc)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func TestCleanStopOfAThreeMemberClusterWarnsOfNothingAndLeaderChangesAreLogged(t *testing.T) {
	c, rec := startRecordedCluster(t)
	// Every member logs the leader it learnt, and the membership
	// changes it saw as hub-2 and hub-3 joined and were promoted.
	leaderSeen := map[string]bool{}
	added, promoted := 0, 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, r := range rec.since(0) {
			switch r.Message {
			case "leader changed":
				if attrOf(r, "new") == c.Leader().ID() && attrOf(r, "term") != "" && attrOf(r, "term") != "0" {
					leaderSeen[attrOf(r, "member")] = true
				}
			case "member added":
				if attrOf(r, "member") == "hub-1" && attrOf(r, "suffrage") == "nonvoter" {
					added++
				}
			case "member suffrage changed":
				if attrOf(r, "member") == "hub-1" && attrOf(r, "new") == "voter" {
					promoted++
				}
			}
			if r.Level == slog.LevelError {
				t.Errorf("a healthy start logged %s", describe(r))
			}
		}
		if len(leaderSeen) == 3 && added == 2 && promoted == 2 || time.Now().After(deadline) {
			break
		}
		leaderSeen, added, promoted = map[string]bool{}, 0, 0
		time.Sleep(50 * time.Millisecond)
	}
	if len(leaderSeen) != 3 || added != 2 || promoted != 2 {
		for _, r := range rec.since(0) {
			t.Logf("%s", describe(r))
		}
		t.Fatalf("members logging the leader at INFO: %v; hub-1 logged %d non-voters added, %d promoted; want 3, 2, 2", leaderSeen, added, promoted)
	}
	mark := rec.len()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rec.since(mark) {
		if r.Level >= slog.LevelWarn {
			t.Errorf("a clean stop logged %s", describe(r))
		}
	}
}

// A leader stopping on its own hands leadership over, and the members left
// log the new leader; the stopping member warns of nothing.
func TestALeaderStoppingAloneHandsOverWithoutWarning(t *testing.T) {
	c, rec := startRecordedCluster(t)
	t.Cleanup(func() { c.Close() })
	old := c.Leader()
	mark := rec.len()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rec.since(mark) {
		if attrOf(r, "member") == old.ID() && r.Level >= slog.LevelWarn {
			t.Errorf("the leader's clean stop logged %s", describe(r))
		}
		if strings.Contains(r.Message, "leadership not handed over") {
			t.Errorf("the transfer failed: %s", describe(r))
		}
	}
	ctx := ctxT(t, 10*time.Second)
	var next *Hub
	for next == nil && ctx.Err() == nil {
		for _, h := range c.Members {
			if h != old && h.IsLeader() {
				next = h
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next == nil {
		t.Fatal("no new leader")
	}
	for ctx.Err() == nil {
		for _, r := range rec.since(mark) {
			if r.Message == "leader changed" && attrOf(r, "old") == old.ID() && attrOf(r, "new") == next.ID() && attrOf(r, "member") != old.ID() {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no member logged the change from %s to %s", old.ID(), next.ID())
}

// A member that is down makes the leader's Raft report every heartbeat
// and append to it, several times a second: the same warning about the
// same peer is logged once per raftRepeatWindow, and the next says how
// many were left out. Another peer, or another message, is its own.
func TestRaftRepeatsAboutOnePeerAreLoggedOncePerWindow(t *testing.T) {
	rec := newRecords()
	l := newHCLog(slog.New(rec), nil).(*raftLog)
	now := time.Unix(1_700_000_000, 0)
	l.repeats.now = func() time.Time { return now }
	for range 40 {
		l.Error("failed to heartbeat to", "peer", "127.0.0.1:7101", "backoff time", 250*time.Millisecond, "error", "connection refused")
		l.Error("failed to heartbeat to", "peer", "127.0.0.1:7102", "error", "EOF")
		l.Info("routine") // INFO is never held back
		now = now.Add(100 * time.Millisecond)
	}
	now = now.Add(raftRepeatWindow)
	l.Error("failed to heartbeat to", "peer", "127.0.0.1:7101", "error", "connection refused")
	var lines []string
	for _, r := range rec.since(0) {
		if r.Level == slog.LevelError {
			lines = append(lines, attrOf(r, "peer")+" repeated="+attrOf(r, "repeated"))
		}
	}
	want := []string{"127.0.0.1:7101 repeated=", "127.0.0.1:7102 repeated=", "127.0.0.1:7101 repeated=39"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("error lines %q, want %q", lines, want)
	}
	if n := len(rec.since(0)) - len(lines); n != 40 {
		t.Errorf("%d INFO lines, want 40", n)
	}
}
