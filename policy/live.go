package policy

import (
	"bytes"
	"fmt"
	"sync/atomic"
)

// Live holds the rules a running node decides with and reloads them from
// their file. A reload that fails keeps the old rules; the error says why,
// naming file, rule and position. Live is safe for concurrent use.
type Live struct {
	path string
	opts []Option
	cur  atomic.Pointer[RuleSet]
}

// NewLive loads the rule file at path; it fails as LoadFile does.
func NewLive(path string, opts ...Option) (*Live, error) {
	rs, err := LoadFile(path, opts...)
	if err != nil {
		return nil, err
	}
	l := &Live{path: path, opts: opts}
	l.cur.Store(rs)
	return l, nil
}

// Rules are the rules in force.
func (l *Live) Rules() *RuleSet { return l.cur.Load() }

// Reload reads the file again. changed reports whether the canonical rules
// differ from those in force (the node then publishes the new version). On
// error the rules in force stay, and the error is a *LoadError or a read error.
func (l *Live) Reload() (rs *RuleSet, changed bool, err error) {
	old := l.cur.Load()
	rs, err = LoadFile(l.path, l.opts...)
	if err != nil {
		return old, false, fmt.Errorf("reload %s: keeping the rules in force (%s): %w", l.path, describe(old), err)
	}
	if bytes.Equal(rs.canonical, old.canonical) {
		// Same rules: keep the old value so pointers compare equal.
		if !bytes.Equal(rs.src, old.src) {
			l.cur.Store(rs)
			return rs, false, nil
		}
		return old, false, nil
	}
	l.cur.Store(rs)
	return rs, true, nil
}

func describe(rs *RuleSet) string {
	if rs.version != "" {
		return "version " + rs.version
	}
	return fmt.Sprintf("%d rules", len(rs.rules))
}
