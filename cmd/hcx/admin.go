package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hcxfed/hcx/api"
)

// adminFlagHelp is the help of --admin on the commands that take it.
const adminFlagHelp = "listen address of the admin listener serving Go's pprof profiles under /debug/pprof/ (off when empty; unauthenticated: loopback or a management network only)"

// startAdmin serves the admin listener (api.NewAdminServer) on addr until
// stop is called, with its requests in log's access log; with addr empty it
// serves nothing.
func startAdmin(addr string, stdout io.Writer, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", addr, err)
	}
	srv := api.NewAdminServer()
	srv.Handler = api.AccessLog(srv.Handler, log)
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stdout, "admin listener (pprof) on http://%s/debug/pprof/\n", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
