package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad k-of-n flags are refused before anything is opened, naming the flag.
func TestWitnessFlagsAreCheckedBeforeAnythingStarts(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"reject/node-negative-k", []string{"node", "--cosignatures", "-1"}, "--cosignatures -1: want 0 to 63"},
		{"reject/node-k-over-the-note-bound", []string{"node", "--cosignatures", "64"}, "--cosignatures 64: want 0 to 63"},
		{"reject/node-empty-kid", []string{"node", "--cosignatures", "1", "--witnesses", "a,,b"}, "an empty kid"},
		{"reject/node-more-than-named", []string{"node", "--cosignatures", "3", "--witnesses", "a,b"}, "can never be met by the 2 --witnesses named"},
		{"reject/sync-kid-twice", []string{"verify", "sync", "--cosignatures", "1", "--witnesses", "a,a"}, "a is named twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), c.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("hcx %s: %v; want an error saying %q", strings.Join(c.args, " "), err, c.want)
			}
		})
	}
}
