package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// runDevice is `hcx device`: what a checkpoint device or feed system does to
// get its certificate.
func runDevice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, `Usage: hcx device <subcommand> [flags]

A checkpoint device's or feed system's own key: made on the device, its
certificate requested at the province's node or the national CA.

Subcommands:
  hcx device keygen --out DIR --name NAME
      makes an SM2 key (DIR/NAME.key, 0600, never overwritten) and a certificate signing
      request for it (DIR/NAME.csr). Then either
        - file it at the province's node: POST /v1/devices/enrolments {"csr":"<PEM>","name":"NAME","role":"checkpoint"}
          an operator approves, and GET /v1/devices/enrolments/{id} answers the certificate; or
        - hand the CSR to the national CA: hcx ca issue --csr DIR/NAME.csr --role checkpoint --province 440000 --name NAME
      The key never leaves the device.

  hcx device enrol --node URL --csr DIR/NAME.csr --name NAME [--role checkpoint|feed]
      files the CSR at the node and prints the enrolment's id and the key id to show the operator.

  hcx device fetch --node URL --id ID --out DIR/NAME.crt
      writes the certificate once an operator has approved (says so while it is pending).

  hcx device token --cert DIR/NAME.crt --key DIR/NAME.key --url URL [--method POST] [--body FILE]
      prints an Authorization header value (HCX-SM2 …) for one request, valid 60 s and once:
        curl -H "Authorization: $(hcx device token --cert gate-7.crt --key gate-7.key --method POST \
             --url http://127.0.0.1:8441/v1/verify --body req.json)" --data-binary @req.json \
             http://127.0.0.1:8441/v1/verify
      The URL must be exactly the one called, and the body exactly the bytes sent.
`)
		groupFlags(stdout, "device")
		return nil
	}
	switch args[0] {
	case "keygen":
		return deviceKeygen(args[1:], stdout, stderr)
	case "enrol":
		return deviceEnrol(ctx, args[1:], stdout, stderr)
	case "fetch":
		return deviceFetch(ctx, args[1:], stdout, stderr)
	case "token":
		return deviceToken(args[1:], stdout, stderr)
	}
	return fmt.Errorf("hcx device: unknown subcommand %q; see 'hcx device help'", args[0])
}

func deviceKeygen(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("hcx device keygen", flag.ContinueOnError)
	fset.SetOutput(stderr)
	setUsage(fset, "Makes the device's SM2 key (DIR/NAME.key, 0600, never overwritten) and a\ncertificate signing request for it (DIR/NAME.csr); see 'hcx device -h'.", "hcx device keygen --out DIR --name NAME")
	out := fset.String("out", ".", "directory for NAME.key and NAME.csr")
	name := fset.String("name", "", "the device's name, e.g. gate-7 or lab-gz-1 (lower-case letters, digits, '.', '_', '-')")
	pos, err := parseFlags(fset, args, stdout)
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

func deviceFlags(name string, stderr io.Writer) *flag.FlagSet {
	fset := flag.NewFlagSet("hcx device "+name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	return fset
}

func parseDeviceFlags(fset *flag.FlagSet, args []string, stdout io.Writer) error {
	pos, err := parseFlags(fset, args, stdout)
	if err != nil {
		return err
	}
	return noArgs(fset, pos)
}

// enrolmentAnswer is what the node answers about an enrolment.
type enrolmentAnswer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	KeyID  string `json:"key_id"`
	Cert   string `json:"cert"`
	Reason string `json:"reason"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// deviceHTTP sends one JSON request to a node and reads its answer.
func deviceHTTP(ctx context.Context, method, url string, body []byte) (int, *enrolmentAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var a enrolmentAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&a); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s answered %d, not JSON: %w", method, url, resp.StatusCode, err)
	}
	if a.Error != nil {
		return resp.StatusCode, &a, fmt.Errorf("%s %s: %d %s: %s", method, url, resp.StatusCode, a.Error.Code, a.Error.Message)
	}
	return resp.StatusCode, &a, nil
}

func deviceEnrol(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := deviceFlags("enrol", stderr)
	setUsage(fset, "Files the CSR at the node and prints the enrolment's id and the key id to\nshow the operator.", "hcx device enrol --node URL --csr DIR/NAME.csr --name NAME [--role checkpoint|feed]")
	nodeURL := fset.String("node", "", "the province node's URL, e.g. http://127.0.0.1:8441")
	csrPath := fset.String("csr", "", "the CSR from hcx device keygen")
	name := fset.String("name", "", "the device's name")
	role := fset.String("role", "checkpoint", "checkpoint or feed")
	if err := parseDeviceFlags(fset, args, stdout); err != nil {
		return err
	}
	if *nodeURL == "" || *csrPath == "" || *name == "" {
		return errors.New("hcx device enrol: give --node, --csr and --name")
	}
	csr, err := os.ReadFile(*csrPath)
	if err != nil {
		return fmt.Errorf("hcx device enrol: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"csr": string(csr), "name": *name, "role": *role})
	_, a, err := deviceHTTP(ctx, http.MethodPost, strings.TrimRight(*nodeURL, "/")+"/v1/devices/enrolments", body)
	if err != nil {
		return fmt.Errorf("hcx device enrol: %w", err)
	}
	fmt.Fprintf(stdout, "Enrolment %s filed (%s). Key id %s: the operator compares it before approving.\nThen: hcx device fetch --node %s --id %s --out %s.crt\n", a.ID, a.Status, a.KeyID, *nodeURL, a.ID, *name)
	return nil
}

func deviceFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := deviceFlags("fetch", stderr)
	setUsage(fset, "Writes the certificate once an operator has approved the enrolment (says so\nwhile it is pending).", "hcx device fetch --node URL --id ID --out DIR/NAME.crt")
	nodeURL := fset.String("node", "", "the province node's URL")
	id := fset.String("id", "", "the enrolment's id (from hcx device enrol)")
	out := fset.String("out", "", "where to write the certificate (PEM); never overwritten")
	if err := parseDeviceFlags(fset, args, stdout); err != nil {
		return err
	}
	if *nodeURL == "" || *id == "" || *out == "" {
		return errors.New("hcx device fetch: give --node, --id and --out")
	}
	_, a, err := deviceHTTP(ctx, http.MethodGet, strings.TrimRight(*nodeURL, "/")+"/v1/devices/enrolments/"+url.PathEscape(*id), nil)
	if err != nil {
		return fmt.Errorf("hcx device fetch: %w", err)
	}
	switch a.Status {
	case "issued":
	case "rejected":
		return fmt.Errorf("hcx device fetch: enrolment %s was rejected: %s", *id, a.Reason)
	default:
		return fmt.Errorf("hcx device fetch: enrolment %s is %s; ask an operator of the province to approve it, then fetch again", *id, a.Status)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("hcx device fetch: %w", err)
	}
	if _, err := f.WriteString(a.Cert); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Certificate written to %s\n", *out)
	return nil
}

func deviceToken(args []string, stdout, stderr io.Writer) error {
	fset := deviceFlags("token", stderr)
	setUsage(fset, "Prints an Authorization header value (HCX-SM2 …) for one request, valid 60 s\nand once; the URL and body must be exactly those sent.", "hcx device token --cert DIR/NAME.crt --key DIR/NAME.key --url URL [--method POST] [--body FILE]")
	certPath := fset.String("cert", "", "the device's certificate (PEM)")
	keyPath := fset.String("key", "", "the device's key (PEM)")
	method := fset.String("method", http.MethodGet, "the request's method")
	target := fset.String("url", "", "the URL exactly as called, e.g. http://127.0.0.1:8441/v1/verify")
	bodyPath := fset.String("body", "", "a file holding the exact body to send (none: an empty body)")
	if err := parseDeviceFlags(fset, args, stdout); err != nil {
		return err
	}
	if *certPath == "" || *keyPath == "" || *target == "" {
		return errors.New("hcx device token: give --cert, --key and --url")
	}
	s, err := certs.LoadSigner(*certPath, *keyPath)
	if err != nil {
		return fmt.Errorf("hcx device token: %w", err)
	}
	var body []byte
	if *bodyPath != "" {
		if body, err = os.ReadFile(*bodyPath); err != nil {
			return fmt.Errorf("hcx device token: %w", err)
		}
	}
	req, err := http.NewRequest(strings.ToUpper(*method), *target, nil)
	if err != nil {
		return fmt.Errorf("hcx device token: --url: %w", err)
	}
	if err := auth.SignRequest(req, body, s, time.Now()); err != nil {
		return fmt.Errorf("hcx device token: %w", err)
	}
	fmt.Fprintln(stdout, req.Header.Get("Authorization"))
	return nil
}
