package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// runFeed is `hcx feed push FILE`: it sends a bureau's file to a node's
// bulk feed route in chunks of whole lines, each chunk its own signed
// request (retried safely: records carry ids, so a chunk sent twice counts
// once), with bounded memory whatever the file's size, and prints the
// per-line errors with the file's line numbers and a summary.
func runFeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		args = []string{"push", "-h"} // one subcommand: its help is the command's
	}
	if len(args) == 0 || args[0] != "push" {
		return errors.New("usage: hcx feed push --kind labs --url NODE_URL --cert feed-440000 FILE (see hcx feed push -h)")
	}
	flags := flag.NewFlagSet("hcx feed push", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var o feedPush
	flags.StringVar(&o.kind, "kind", "", "labs, vaccinations, itineraries, contacts or residents")
	flags.StringVar(&o.format, "format", "ndjson", "ndjson (our own JSON lines) or fhir-ndjson (FHIR R4 resources, labs and vaccinations)")
	flags.StringVar(&o.url, "url", "", "the node's base URL, such as http://127.0.0.1:8441")
	cert := flags.String("cert", "", "sign as this certificate of the CA in --dir (feed-<code>)")
	dir := flags.String("dir", "hcx-data", "data directory of hcx dev, whose CA holds --cert")
	flags.StringVar(&o.bearer, "token", "", "an operator's ID token instead of a certificate (hcx dev token --role operator)")
	flags.StringVar(&o.reason, "reason", "", "operators: why (X-HCX-Reason), required with --token")
	flags.IntVar(&o.lines, "lines", 5000, "lines per request (at most the node's 20,000)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: hcx feed push --kind labs --url NODE_URL --cert feed-440000 [--format fhir-ndjson] FILE\n       hcx feed push --kind residents --url NODE_URL --token $(hcx dev token --role operator --province 440000) --reason R FILE\n\nSends FILE in chunks of --lines lines, each a signed request; prints the lines\nrefused (with the file's line numbers) and a summary. Chunks are retried on\n429/503 and network errors: records carry ids, so a chunk counts once.\n\nFlags:")
		flags.PrintDefaults()
	}
	if err := parseCmdFlags(flags, args[1:], stdout); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return errors.New("give one FILE to push (see hcx feed push -h)")
	}
	switch o.format {
	case "ndjson":
		o.ctype = "application/x-ndjson"
	case "fhir-ndjson":
		o.ctype = "application/fhir+ndjson"
	default:
		return fmt.Errorf("--format %q: want ndjson or fhir-ndjson", o.format)
	}
	if o.kind == "" || o.url == "" {
		return errors.New("give --kind and --url")
	}
	if o.lines < 1 || o.lines > api.MaxFeedLines {
		return fmt.Errorf("--lines %d: want 1 to %d", o.lines, api.MaxFeedLines)
	}
	switch {
	case o.bearer != "" && o.reason == "":
		return errors.New("an operator says why: give --reason with --token")
	case o.bearer == "" && *cert == "":
		return errors.New("give --cert (a feed's certificate) or --token (an operator's)")
	case o.bearer == "":
		ca, err := certs.OpenCA(filepath.Join(*dir, "ca"))
		if err != nil {
			return fmt.Errorf("no CA in %s (give --dir): %w", *dir, err)
		}
		if o.signer, err = ca.LoadCurrent(*cert, time.Now()); err != nil {
			return fmt.Errorf("certificate %q: %w", *cert, err)
		}
	}
	f, err := os.Open(flags.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	o.out, o.log = stdout, slog.New(slog.NewTextHandler(stderr, nil))
	if fi, err := f.Stat(); err == nil {
		o.size = fi.Size()
	}
	if fd, ok := stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		o.bar = progressbar.NewOptions64(o.size, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("hcx feed push "+o.kind), progressbar.OptionThrottle(200*time.Millisecond))
	}
	sum, err := o.push(ctx, f)
	fmt.Fprintf(stdout, "%d lines: %d accepted, %d duplicates (sent before), %d refused\n", sum.Lines, sum.Accepted, sum.Duplicates, sum.Failed)
	if err == nil && sum.Failed > 0 {
		err = fmt.Errorf("%d lines refused (listed above)", sum.Failed)
	}
	return err
}

// feedPush is one push of a file.
type feedPush struct {
	kind, format, ctype, url string
	bearer, reason           string
	signer                   *certs.Signer
	lines                    int
	client                   *http.Client
	out                      io.Writer
	log                      *slog.Logger
	bar                      *progressbar.ProgressBar
	size                     int64
	// Now stamps request tokens (time.Now if nil).
	now func() time.Time
}

// push sends r in chunks and prints line errors as they come.
func (o *feedPush) push(ctx context.Context, r io.Reader) (api.FeedResult, error) {
	var sum api.FeedResult
	br := bufio.NewReaderSize(r, 64<<10)
	var chunk bytes.Buffer
	first, n := 1, 0 // the file's line number of the chunk's first line; lines in the chunk
	var sent int64
	lastLog := time.Now()
	flush := func() error {
		if n == 0 {
			return nil
		}
		res, err := o.send(ctx, chunk.Bytes())
		if err != nil {
			return fmt.Errorf("lines %d to %d: %w", first, first+n-1, err)
		}
		sum.Lines += n
		sum.Accepted += res.Accepted
		sum.Duplicates += res.Duplicates
		sum.Failed += res.Failed
		for _, e := range res.Errors {
			field := ""
			if e.Field != "" {
				field = e.Field + ": "
			}
			fmt.Fprintf(o.out, "line %d: %s%s (%s)\n", first+e.Line-1, field, e.Message, e.Code)
		}
		if res.ErrorsOmitted > 0 {
			fmt.Fprintf(o.out, "lines %d to %d: %d more lines refused, not listed\n", first, first+n-1, res.ErrorsOmitted)
		}
		sent += int64(chunk.Len())
		if o.bar != nil {
			_ = o.bar.Set64(sent)
		} else if time.Since(lastLog) > 5*time.Second {
			o.log.Info("feed push", "kind", o.kind, "lines", sum.Lines, "bytes", sent, "of", o.size, "accepted", sum.Accepted, "refused", sum.Failed)
			lastLog = time.Now()
		}
		first += n
		n = 0
		chunk.Reset()
		return nil
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return sum, fmt.Errorf("line %d is over %d bytes", first+n, api.MaxFeedLine)
		}
		if len(line) > 0 {
			if chunk.Len()+len(line)+1 > int(api.MaxFeedBody) {
				if err := flush(); err != nil {
					return sum, err
				}
			}
			chunk.Write(line)
			if line[len(line)-1] != '\n' {
				chunk.WriteByte('\n')
			}
			n++
			if n == o.lines {
				if err := flush(); err != nil {
					return sum, err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sum, err
		}
	}
	err := flush()
	if o.bar != nil {
		_ = o.bar.Finish()
	}
	return sum, err
}

// send posts one chunk, retrying what a retry can mend.
func (o *feedPush) send(ctx context.Context, body []byte) (*api.FeedResult, error) {
	hc := o.client
	if hc == nil {
		hc = http.DefaultClient
	}
	now := o.now
	if now == nil {
		now = time.Now
	}
	wait := time.Second
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(o.url, "/")+"/v1/feeds/"+o.kind, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", o.ctype)
		if o.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+o.bearer)
			req.Header.Set(auth.HeaderReason, o.reason)
		} else if err := auth.SignRequest(req, body, o.signer, now()); err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		retry := err != nil
		var rb []byte
		if err == nil {
			rb, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusBadGateway
		}
		if retry && attempt < 6 {
			o.log.Warn("feed push: retrying a chunk", "attempt", attempt, "error", err, "status", statusOf(resp))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			wait *= 2
			continue
		}
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("the node answered %d: %s", resp.StatusCode, bytes.TrimSpace(rb))
		}
		var res api.FeedResult
		if err := json.Unmarshal(rb, &res); err != nil {
			return nil, fmt.Errorf("the node's answer: %w", err)
		}
		return &res, nil
	}
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}
