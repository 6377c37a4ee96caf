package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// logFlags are the logging flags of every long-running command: -v and
// --log-format.
type logFlags struct {
	verbose *bool
	format  *string
}

func addLogFlags(fs *flag.FlagSet) *logFlags {
	return &logFlags{
		verbose: fs.Bool("v", false, "debug logging: Raft's own records and every health probe's request line too"),
		format:  fs.String("log-format", "", "log format on stderr: json (one object per line) or text (default: text when stderr is a terminal, json otherwise)"),
	}
}

// logger is the command's logger on stderr (newLogger); quiet commands log
// only warnings and errors unless -v.
func (lf *logFlags) logger(stderr io.Writer, quiet bool) (*slog.Logger, error) {
	return newLogger(stderr, *lf.format, *lf.verbose, quiet)
}

// newLogger is the one logger constructor of the commands that run until
// interrupted (docs/logging.md): JSON lines for log collectors by default,
// text for a person when w is a terminal, or as format says. Records are
// INFO and above (WARN and above when quiet), everything with verbose;
// Raft's own records below WARN only with verbose (quietRaft).
func newLogger(w io.Writer, format string, verbose, quiet bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	switch {
	case verbose:
		level = slog.LevelDebug
	case quiet:
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			h = slog.NewTextHandler(w, opts)
		} else {
			h = slog.NewJSONHandler(w, opts)
		}
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
	if !verbose {
		h = quietRaft{Handler: h}
	}
	return slog.New(h), nil
}

// quietRaft drops Raft's own records below WARN. They keep Raft's levels
// (consensus maps them one to one), but its INFO records are the
// play-by-play of every election and configuration change, several lines
// per member for each; the hub member says the same at INFO in one line
// each ("leader changed", "member added"). -v shows them all.
type quietRaft struct {
	slog.Handler
	raft bool
}

func (h quietRaft) Enabled(ctx context.Context, l slog.Level) bool {
	if h.raft && l < slog.LevelWarn {
		return false
	}
	return h.Handler.Enabled(ctx, l)
}

func (h quietRaft) WithAttrs(as []slog.Attr) slog.Handler {
	raft := h.raft
	for _, a := range as {
		if a.Key == "component" && a.Value.String() == "raft" {
			raft = true
		}
	}
	return quietRaft{Handler: h.Handler.WithAttrs(as), raft: raft}
}

func (h quietRaft) WithGroup(name string) slog.Handler {
	return quietRaft{Handler: h.Handler.WithGroup(name), raft: h.raft}
}

// onHangup calls reload each time the process gets SIGHUP, until ctx ends:
// operators edit a province's rule file and `kill -HUP` the process.
func onHangup(ctx context.Context, reload func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				reload()
			}
		}
	}()
}
