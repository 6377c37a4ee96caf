package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hcxfed/hcx"
)

// The node serves at most MaxBatchesInFlight batches: one more is refused
// with 503 overloaded and a Retry-After, and a slot given back admits again.
func TestBatchPoolAdmission(t *testing.T) {
	p := newBatchPool(2, MaxBatchesInFlight)
	var releases []func()
	for range MaxBatchesInFlight {
		rel, err := p.admit()
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, rel)
	}
	_, err := p.admit()
	var e *hcx.Error
	if !errors.As(err, &e) || e.Class != hcx.EUnavailable || e.Code != "overloaded" || e.Detail[RetryAfterDetail] != 1 {
		t.Fatalf("batch %d: %v, want 503 overloaded with retry_after", MaxBatchesInFlight+1, err)
	}
	releases[0]()
	if _, err := p.admit(); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// run visits every index once, on at most the pool's workers, and stops
// when its context ends.
func TestBatchPoolRun(t *testing.T) {
	p := newBatchPool(3, 1)
	seen := make([]atomic.Int32, 1001)
	if err := p.run(context.Background(), len(seen), func(i int) { seen[i].Add(1) }); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("item %d visited %d times", i, seen[i].Load())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var n atomic.Int32
	if err := p.run(ctx, 1000, func(int) { n.Add(1) }); err == nil || n.Load() != 0 {
		t.Errorf("cancelled run: %v after %d items", err, n.Load())
	}
}

// readLine splits lines, strips \r\n, drops lines over the bound whole and
// returns a last line without a newline with io.EOF.
func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	br := bufio.NewReaderSize(strings.NewReader("a\r\n\n"+long+"\nb\nlast"), 16)
	type got struct {
		text    string
		tooLong bool
		eof     bool
	}
	want := []got{{"a", false, false}, {"", false, false}, {"", true, false}, {"b", false, false}, {"last", false, true}}
	for i, w := range want {
		text, tooLong, err := readLine(br, 50)
		if g := (got{string(text), tooLong, errors.Is(err, io.EOF)}); g != w || (err != nil && !errors.Is(err, io.EOF)) {
			t.Errorf("line %d: %+v %v, want %+v", i+1, g, err, w)
		}
	}
	if text, _, err := readLine(br, 50); len(text) != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("after the end: %q %v", text, err)
	}
}
