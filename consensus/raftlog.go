package consensus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// raftLog is Raft's hclog.Logger written to slog. Each record keeps Raft's
// own level (Trace and Debug are slog's Debug; Info, Warn and Error stay as
// they are) and its key-value pairs as attributes: the earlier adapter
// printed hclog's text through one writer at WARN, so a lost election and a
// routine "entering follower state" looked alike, and errors looked like
// warnings (issue 15). Which levels are shown is the slog handler's
// decision, never this adapter's.
//
// Once the member's stop has begun (stopping), Raft's warnings and errors
// are logged at DEBUG: a closing transport, peers that are closing too and
// the elections among the remaining members are what a stop does, and an
// operator who pressed Ctrl-C is not to be told of them as faults.
//
// A warning or error Raft repeats about the same peer (every heartbeat to a
// member that is down: several a second, for as long as it is down) is
// logged once per raftRepeatWindow; the next line says how many were left
// out ("repeated").
type raftLog struct {
	log      *slog.Logger
	name     string
	implied  []any
	stopping *atomic.Bool
	repeats  *repeats
}

// raftRepeatWindow is how long the same warning about the same peer is
// not logged again.
const raftRepeatWindow = 10 * time.Second

// repeats are the warnings and errors logged within the window, shared by
// a logger and its children.
type repeats struct {
	mu   sync.Mutex
	now  func() time.Time
	seen map[string]*repeat
}

type repeat struct {
	at      time.Time // last logged
	skipped int       // since then
}

// maxRepeatKeys bounds the table: Raft's messages are constants and the
// peers few, so a full table is cleared rather than managed.
const maxRepeatKeys = 256

// admit says whether a record with key may be logged now, and how many
// like it were left out since the last that was.
func (r *repeats) admit(key string) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if e, ok := r.seen[key]; ok && now.Sub(e.at) < raftRepeatWindow {
		e.skipped++
		return false, 0
	}
	skipped := 0
	if e, ok := r.seen[key]; ok {
		skipped = e.skipped
	}
	if len(r.seen) >= maxRepeatKeys {
		clear(r.seen)
	}
	r.seen[key] = &repeat{at: now}
	return true, skipped
}

// newHCLog is the hclog.Logger of member log's Raft, transport and
// snapshot store; stopping may be nil.
func newHCLog(log *slog.Logger, stopping *atomic.Bool) hclog.Logger {
	return &raftLog{log: log.With("component", "raft"), name: "raft", stopping: stopping,
		repeats: &repeats{now: time.Now, seen: map[string]*repeat{}}}
}

// raftPeerOf is what a record's key-values say of the peer it is about.
func raftPeerOf(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "peer", "target", "server-id", "id":
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

// slogLevel maps an hclog level to slog's; ok is false for Off.
func slogLevel(l hclog.Level) (slog.Level, bool) {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug, true
	case hclog.Warn:
		return slog.LevelWarn, true
	case hclog.Error:
		return slog.LevelError, true
	case hclog.Off:
		return 0, false
	default: // Info and NoLevel
		return slog.LevelInfo, true
	}
}

func (l *raftLog) Log(level hclog.Level, msg string, args ...any) {
	sl, ok := slogLevel(level)
	if ok && sl > slog.LevelInfo && l.stopping != nil && l.stopping.Load() {
		sl = slog.LevelDebug
		args = append(args[:len(args):len(args)], "stopping", true)
	}
	if !ok || !l.log.Enabled(context.Background(), sl) {
		return
	}
	args = slices.Clone(args)
	if sl >= slog.LevelWarn {
		ok, skipped := l.repeats.admit(sl.String() + " " + l.name + " " + msg + " " + raftPeerOf(append(l.implied[:len(l.implied):len(l.implied)], args...)))
		if !ok {
			return
		}
		if skipped > 0 {
			args = append(args, "repeated", skipped)
		}
	}
	if len(args)%2 == 1 { // hclog's name for a value without a key
		args = append(args[:len(args)-1], "extra_value_at_end", args[len(args)-1])
	}
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case slog.TimeKey, slog.LevelKey, slog.MessageKey, slog.SourceKey:
			// Raft's "time" (how long a peer has been silent) would
			// repeat the record's own key in a JSON line.
			args[i] = "raft_" + args[i].(string)
		}
	}
	for i, a := range args {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 { // hclog.Fmt("%+v", x)
			if format, ok := f[0].(string); ok {
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	l.log.Log(context.Background(), sl, msg, args...)
}

func (l *raftLog) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *raftLog) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *raftLog) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *raftLog) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *raftLog) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *raftLog) enabled(level hclog.Level) bool {
	sl, _ := slogLevel(level)
	return l.log.Enabled(context.Background(), sl)
}

func (l *raftLog) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *raftLog) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *raftLog) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *raftLog) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *raftLog) IsError() bool { return l.enabled(hclog.Error) }

func (l *raftLog) ImpliedArgs() []any { return l.implied }

func (l *raftLog) With(args ...any) hclog.Logger {
	return &raftLog{log: l.log.With(args...), name: l.name, implied: append(l.implied[:len(l.implied):len(l.implied)], args...), stopping: l.stopping, repeats: l.repeats}
}

func (l *raftLog) Name() string { return l.name }

func (l *raftLog) Named(name string) hclog.Logger {
	return l.ResetNamed(l.name + "." + name)
}

func (l *raftLog) ResetNamed(name string) hclog.Logger {
	return &raftLog{log: l.log.With("logger", name), name: name, implied: l.implied, stopping: l.stopping, repeats: l.repeats}
}

// SetLevel does nothing: the slog handler decides what is shown.
func (l *raftLog) SetLevel(hclog.Level) {}

func (l *raftLog) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (l *raftLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter logs each line written at opts.ForceLevel, or at the
// level its "[WARN]"-style prefix names (Info without one).
func (l *raftLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	force := hclog.NoLevel
	if opts != nil {
		force = opts.ForceLevel
	}
	return stdWriter{l: l, force: force}
}

type stdWriter struct {
	l     *raftLog
	force hclog.Level
}

func (w stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg, level := strings.TrimSpace(string(line)), w.force
		if level == hclog.NoLevel {
			level = hclog.Info
			for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
				tag := "[" + strings.ToUpper(lv.String()) + "]"
				if strings.HasPrefix(msg, tag) {
					level, msg = lv, strings.TrimSpace(strings.TrimPrefix(msg, tag))
					break
				}
			}
		}
		w.l.Log(level, msg)
	}
	return len(p), nil
}
