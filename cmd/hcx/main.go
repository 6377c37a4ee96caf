// Command hcx is the one binary of the health-code exchange: a province node
// (hcx node), a hub member (hcx hub), the national CA (hcx ca), a device's
// key (hcx device), the rule tools (hcx policy), the auditor (hcx audit), a
// bureau's bulk feed (hcx feed), the benchmarks (hcx bench), the offline
// verifier (hcx verify), a healthcheck (hcx probe), and hcx dev, a whole
// federation in one process. `hcx help` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // rules are evaluated in each province's zone, even in a scratch image
)

// command is one subcommand: it reads its own flags from args and writes
// readable output to stdout; errors say what went wrong and what to do.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run a whole federation locally: a hub and four province nodes", runDev},
		{"node", "run one province node", runNode},
		{"hub", "run one member of the national hub's Raft cluster", runHub},
		{"ca", "the national root CA: init, issue, revoke, list, inspect", runCA},
		{"device", "a checkpoint device's or feed's own key and certificate request: keygen", runDevice},
		{"policy", "check and explain a province's colour rules", runPolicy},
		{"audit", "the national auditor: verify the hub log and its checkpoints, find split views", runAudit},
		{"feed", "a bureau's bulk feed: push FILE to a node, in signed chunks", runFeed},
		{"bench", "load a running federation (hcx dev): verify, batch, issue, feed; with the raw SM2 baseline", runBench},
		{"verify", "the offline verifier: sync a node's bundle, then check codes without a network", runVerify},
		{"probe", "a healthcheck: GET URL, exit 0 on 200 (for images without curl)", runProbe},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcx:", err)
		os.Exit(2)
	}
}

// run is main without the process: `hcx help CMD` is `hcx CMD -h`, and a
// command's -h (flag.ErrHelp, its usage already on stdout) is success.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) >= 2 && args[0] == "help" {
		args = []string{args[1], "-h"}
	}
	if len(args) == 0 || isHelp(args[0]) {
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q: see the list above", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "hcx — federated health-code exchange\n\nUsage: hcx <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'hcx <command> -h' for a command's flags.")
}
