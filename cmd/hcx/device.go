package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hcxfed/hcx/certs"
)

// runDevice is `hcx device`: what a checkpoint device or feed system does to
// get its certificate.
func runDevice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, `hcx device — a checkpoint device's or feed system's own key

  hcx device keygen --out DIR --name NAME
      makes an SM2 key (DIR/NAME.key, 0600, never overwritten) and a certificate signing
      request for it (DIR/NAME.csr). Then either
        - file it at the province's node: POST /v1/devices/enrolments {"csr":"<PEM>","name":"NAME","role":"checkpoint"}
          an operator approves, and GET /v1/devices/enrolments/{id} answers the certificate; or
        - hand the CSR to the national CA: hcx ca issue --csr DIR/NAME.csr --role checkpoint --province 440000 --name NAME
      The key never leaves the device.
`)
		return nil
	}
	switch args[0] {
	case "keygen":
		return deviceKeygen(args[1:], stdout, stderr)
	}
	return fmt.Errorf("hcx device: unknown subcommand %q; see 'hcx device help'", args[0])
}

func deviceKeygen(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("hcx device keygen", flag.ContinueOnError)
	fset.SetOutput(stderr)
	out := fset.String("out", ".", "directory for NAME.key and NAME.csr")
	name := fset.String("name", "", "the device's name, e.g. gate-7 or lab-gz-1 (lower-case letters, digits, '.', '_', '-')")
	pos, err := parseFlags(fset, args)
	if err != nil {
		return err
	}
	if err := noArgs(fset, pos); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("hcx device keygen: give --name, e.g. --name gate-7")
	}
	if err := certs.CheckName(*name); err != nil {
		return fmt.Errorf("hcx device keygen: %w", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("hcx device keygen: %w", err)
	}
	keyPath, csrPath := filepath.Join(*out, *name+".key"), filepath.Join(*out, *name+".csr")
	if _, err := os.Stat(csrPath); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hcx device keygen: %s exists; pick another name or directory (hcx never overwrites a key)", csrPath)
	}
	key, err := certs.GenerateKey()
	if err != nil {
		return err
	}
	csr, err := certs.CreateCSR(key, *name)
	if err != nil {
		return err
	}
	if err := certs.WriteKey(keyPath, key); err != nil {
		return fmt.Errorf("hcx device keygen: %w", err)
	}
	if err := os.WriteFile(csrPath, csr, 0o644); err != nil {
		return fmt.Errorf("hcx device keygen: %w", err)
	}
	fmt.Fprintf(stdout, "Key  %s (0600; it never leaves this device)\nCSR  %s\n\nEnrol at your province's node (POST /v1/devices/enrolments), or: hcx ca issue --csr %s --role checkpoint --province <code> --name %s\n",
		keyPath, csrPath, csrPath, *name)
	return nil
}
