package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/offline"
	"github.com/hcxfed/hcx/qrimg"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

const verifyUsage = `Usage: hcx verify sync --node URL --cert C --key K --root ROOT.crt --dir DIR [flags]
       hcx verify [--dir DIR] [--max-age D] (CODE… | --image PHOTO | < codes.txt)
       hcx verify status [--dir DIR]

The offline verifier of a checkpoint device: while online it syncs a node's
verification bundle, then checks codes without a network.

Subcommands:
  hcx verify sync --node URL --cert C --key K --root ROOT.crt --dir DIR [--ca TLS-ROOT.crt]
                  [--cosignatures K [--witnesses KID,KID…]]
      while online: downloads the node's verification bundle as the checkpoint device C/K,
      checks it against the national root ROOT.crt (trust list, signatures, the hub's
      checkpoint, no rollback) and keeps it in DIR. With --cosignatures K, the bundle's
      checkpoint must also carry K valid cosignatures by witnesses of its trust list
      (narrowed to --witnesses), or the device keeps the bundle it had.
  hcx verify [--dir DIR] [--max-age D] CODE…
  hcx verify [--dir DIR] [--max-age D] --image PHOTO
  hcx verify [--dir DIR] [--max-age D] < codes.txt
      offline: one JSON line per code, as POST /v1/verify answers it, or the batch route's
      per-item {"error":…}; how old the bundle is goes to stderr. --max-age can only
      tighten the limit the node signed into the bundle.
  hcx verify status [--dir DIR]
      the bundle's log size, checkpoint and age.
`

// runVerify is `hcx verify`.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, verifyUsage)
			groupFlags(stdout, "verify")
			return nil
		case "sync":
			return verifySync(ctx, args[1:], stdout, stderr)
		case "status":
			return verifyStatus(args[1:], stdout)
		}
	}
	return verifyCodes(args, os.Stdin, stdout, stderr, time.Now)
}

func verifyFlags(name string, stderr io.Writer) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet("hcx verify"+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "hcx-verify", "the device's bundle directory")
	root := fs.String("root", "", "the national root certificate (root.crt), PEM or DER")
	return fs, dir, root
}

// openDevice opens dir; the root is pinned in dir at the first sync.
func openDevice(dir, rootPath string) (*offline.Device, error) {
	pinned := dir + "/root.crt"
	if rootPath == "" {
		rootPath = pinned
	}
	der, err := certs.ReadCertificateFile(rootPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && rootPath == pinned {
			return nil, fmt.Errorf("%s has no bundle yet: run 'hcx verify sync --dir %s --root ROOT.crt …' while online", dir, dir)
		}
		return nil, fmt.Errorf("--root: %w", err)
	}
	if rootPath != pinned {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if old, err := certs.ReadCertificateFile(pinned); err == nil && string(old) != string(der) {
			return nil, fmt.Errorf("--root is not the national root %s was synced with; use another --dir", dir)
		}
		if err := os.WriteFile(pinned, certs.CertPEM(der), 0o600); err != nil {
			return nil, err
		}
	}
	return offline.Open(dir, der)
}

func verifySync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dir, root := verifyFlags(" sync", stderr)
	setUsage(fs, "While online: downloads the node's verification bundle as the checkpoint\ndevice C/K, checks it against the national root and keeps it in DIR.", "hcx verify sync --node URL --cert C --key K --root ROOT.crt --dir DIR [flags]")
	nodeURL := fs.String("node", "", "the province node's URL")
	certPath := fs.String("cert", "", "the checkpoint device's certificate (PEM)")
	keyPath := fs.String("key", "", "the device's key (PEM)")
	caPath := fs.String("ca", "", "the TLS root of the node's API certificate (https)")
	fs.StringVar(caPath, "hub-ca", "", "same as --ca")
	witnessOpts := addWitnessFlags(fs, "the device")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	cosignatures, witnesses, err := witnessOpts.parse()
	if err != nil {
		return fmt.Errorf("hcx verify sync: %w", err)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--node", *nodeURL}, {"--cert", *certPath}, {"--key", *keyPath}, {"--root", *root}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("hcx verify sync: give %s", strings.Join(missing, ", "))
	}
	signer, err := certs.LoadSigner(*certPath, *keyPath)
	if err != nil {
		return fmt.Errorf("hcx verify sync: %w", err)
	}
	d, err := openDevice(*dir, *root)
	if err != nil {
		return fmt.Errorf("hcx verify sync: %w", err)
	}
	defer d.Close()
	d.Cosignatures, d.Witnesses = cosignatures, witnesses
	hc := &http.Client{Timeout: 30 * time.Minute}
	if *caPath != "" {
		pem, err := os.ReadFile(*caPath)
		if err != nil {
			return fmt.Errorf("hcx verify sync: --ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("hcx verify sync: --ca %s holds no PEM certificate", *caPath)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	var progress func(done, total int64)
	var bar *progressbar.ProgressBar
	if fd, ok := stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		progress = func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
					progressbar.OptionSetDescription("hcx verify sync"), progressbar.OptionThrottle(200*time.Millisecond))
			}
			bar.Set64(done)
		}
	}
	changed, err := d.Sync(ctx, hc, *nodeURL, signer, time.Now(), progress)
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return fmt.Errorf("hcx verify sync: %w (the device keeps the bundle it had)", err)
	}
	st := d.State()
	what := "unchanged"
	if changed {
		what = "updated"
	}
	fmt.Fprintf(stdout, "bundle %s: log size %d, checkpoint %d of %s, %d records\n", what, st.Header.Size, st.CheckpointSize,
		time.Unix(st.CheckpointTime, 0).UTC().Format(time.RFC3339), st.Header.Count)
	return nil
}

func verifyStatus(args []string, stdout io.Writer) error {
	fs, dir, root := verifyFlags(" status", stdout)
	setUsage(fs, "Prints the kept bundle's log size, checkpoint and age.", "hcx verify status [--dir DIR]")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(fs, pos); err != nil {
		return err
	}
	d, err := openDevice(*dir, *root)
	if err != nil {
		return fmt.Errorf("hcx verify status: %w", err)
	}
	defer d.Close()
	st := d.State()
	if st == nil {
		return fmt.Errorf("hcx verify status: %s has no bundle yet: run 'hcx verify sync' while online", *dir)
	}
	age, _ := d.Age(time.Now())
	fmt.Fprintf(stdout, "province %s, log size %d, checkpoint %d of %s (%s old, limit %s), %d records\n", st.Header.Iss, st.Header.Size,
		st.CheckpointSize, time.Unix(st.CheckpointTime, 0).UTC().Format(time.RFC3339), age.Round(time.Second),
		time.Duration(st.Header.MaxAge)*time.Second, st.Header.Count)
	return nil
}

func verifyCodes(args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) error {
	fs, dir, root := verifyFlags("", stderr)
	setUsage(fs, "Offline: checks codes against the kept bundle, one JSON line per code as\nPOST /v1/verify answers it; see 'hcx verify -h'.", "hcx verify [--dir DIR] [--max-age D] (CODE… | --image PHOTO | < codes.txt)")
	maxAge := fs.Duration("max-age", 0, "refuse codes once the bundle is older than this (only tightens the node's limit)")
	image := fs.String("image", "", "a photo (JPEG or PNG) of the code")
	codes, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	d, err := openDevice(*dir, *root)
	if err != nil {
		return fmt.Errorf("hcx verify: %w", err)
	}
	defer d.Close()
	d.MaxAge = *maxAge
	if *image != "" {
		f, err := os.Open(*image)
		if err != nil {
			return fmt.Errorf("hcx verify: --image: %w", err)
		}
		code, err := qrimg.Decode(f, qrimg.MaxBytes)
		f.Close()
		if err != nil {
			fmt.Fprintf(stdout, "%s\n", api.ItemError(err))
			return nil
		}
		codes = append(codes, code)
	}
	if len(codes) == 0 && *image == "" {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			if s := strings.TrimSpace(sc.Text()); s != "" {
				codes = append(codes, s)
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("hcx verify: reading codes from stdin: %w", err)
		}
	}
	t := now()
	if age, err := d.Age(t); err == nil {
		fmt.Fprintf(stderr, "bundle: checkpoint %s old (limit %s)\n", age.Round(time.Second), d.Limit())
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w) // as the API writes JSON: no HTML escaping
	enc.SetEscapeHTML(false)
	for _, c := range codes {
		r, err := d.Verify(c, t)
		if err != nil {
			fmt.Fprintf(w, "%s\n", api.ItemError(err))
			continue
		}
		if err := enc.Encode(r.Verification); err != nil {
			return err
		}
	}
	return w.Flush()
}
