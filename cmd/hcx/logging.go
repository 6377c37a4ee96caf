package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// quietRaft drops Raft's own records below Error: a healthy cluster start
// logs elections and log catch-up as warnings, which is noise to a newcomer
// running `hcx dev`. Everything else passes through; -v shows all.
type quietRaft struct {
	slog.Handler
	raft bool
}

func (h quietRaft) Enabled(ctx context.Context, l slog.Level) bool {
	if h.raft && l < slog.LevelError {
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
