// Package linmodel is the hub log as a linearizable object, for porcupine:
// the model the consensus package's in-process linearizability test and the
// container fault suite (e2e/) check their recorded histories against. Only
// tests import it.
//
// Submit(key) appends the entry named key unless it is already there and
// answers its index; Read answers the whole log (the keys, in order). A
// submit whose outcome is unknown (its client gave up) may or may not have
// taken effect, at any time after it was invoked; it is recorded with
// Return past every other operation, so "Unknown is a failure" holds: it
// must show up exactly once or never.
package linmodel

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Input is one operation: a read of the log, or a submit of Key.
type Input struct {
	Read bool
	Key  string
}

// Output is its answer: the index a submit was logged at (Unknown if the
// client never learnt it), or the log a read saw.
type Output struct {
	Index   uint64
	Unknown bool
	Log     []string
}

// Model is the log; keys must not contain commas.
var Model = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{""} },
	Step: func(state, input, output interface{}) []interface{} {
		s := state.(string)
		in, out := input.(Input), output.(Output)
		var keys []string
		if s != "" {
			keys = strings.Split(s, ",")
		}
		if in.Read {
			if strings.Join(out.Log, ",") == s {
				return []interface{}{s}
			}
			return nil
		}
		for i, k := range keys {
			if k == in.Key {
				if out.Unknown || out.Index == uint64(i) {
					return []interface{}{s}
				}
				return nil
			}
		}
		appended := strings.Join(append(keys, in.Key), ",")
		if out.Unknown {
			return []interface{}{s, appended}
		}
		if out.Index == uint64(len(keys)) {
			return []interface{}{appended}
		}
		return nil
	},
	Equal: func(a, b interface{}) bool { return a == b },
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(Input), output.(Output)
		if in.Read {
			return fmt.Sprintf("read() -> %v", out.Log)
		}
		if out.Unknown {
			return fmt.Sprintf("submit(%s) -> ?", in.Key)
		}
		return fmt.Sprintf("submit(%s) -> %d", in.Key, out.Index)
	},
}
