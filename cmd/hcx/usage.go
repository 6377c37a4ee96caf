package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
)

// Every command's help has one layout (issue 15):
//
//	Usage: hcx CMD …
//
//	One paragraph saying what it does.
//
//	Flags:
//	  -flag …
//
// `hcx CMD -h` prints it to stdout and exits 0; a bad flag prints the error
// and the usage to stderr and exits 2.

// setUsage gives fs the house layout: synopsis lines (each starting
// "hcx …"), a description paragraph, then the flags.
func setUsage(fs *flag.FlagSet, description string, synopses ...string) {
	fs.Usage = func() {
		w := fs.Output()
		for i, s := range synopses {
			if i == 0 {
				fmt.Fprintf(w, "Usage: %s\n", s)
			} else {
				fmt.Fprintf(w, "       %s\n", s)
			}
		}
		fmt.Fprintf(w, "\n%s\n\nFlags:\n", description)
		fs.PrintDefaults()
	}
}

// parseCmdFlags parses args into fs. On -h or --help the usage goes to stdout
// and the result is flag.ErrHelp, which run turns into success; on a bad
// flag the error and the usage go to fs's output (stderr).
func parseCmdFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		out = stdout
	}
	_, _ = out.Write(buf.Bytes())
	return err
}

// isHelp reports whether arg asks for help rather than naming a subcommand.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// groupFlags ends the help of a command made of subcommands (hcx ca,
// device, policy, verify), whose flags are each subcommand's own.
func groupFlags(w io.Writer, cmd string) {
	fmt.Fprintf(w, "\nFlags:\n  each subcommand has its own: run 'hcx %s <subcommand> -h'\n", cmd)
}
