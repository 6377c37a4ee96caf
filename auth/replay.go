package auth

import (
	"container/heap"
	"sync"
	"time"

	"github.com/hcxfed/hcx"
)

// ReplayCache remembers the request tokens seen (by kid and jti) until they
// expire, so that each is accepted once. It is bounded: when full of tokens
// that have not expired it refuses new ones (503 with Retry-After) rather
// than forget one that could then be replayed. Safe for concurrent use.
type ReplayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
	exp  expiryHeap
}

// NewReplayCache makes a cache of at most size entries
// (DefaultReplayEntries if size <= 0).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		size = DefaultReplayEntries
	}
	return &ReplayCache{max: size, seen: make(map[string]time.Time)}
}

// Use records kid+jti as used until until. It returns token_replayed (401)
// if it was used before and has not expired, and replay_cache_full (503,
// retry_after the time until the oldest entry expires) when the cache holds
// max live entries.
func (c *ReplayCache) Use(kid, jti string, until, now time.Time) error {
	key := kid + "\x00" + jti
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.exp) > 0 && !c.exp[0].until.After(now) {
		e := heap.Pop(&c.exp).(expiry)
		if c.seen[e.key].Equal(e.until) {
			delete(c.seen, e.key)
		}
	}
	if _, ok := c.seen[key]; ok {
		return hcx.Errorf(hcx.EUnauthorized, "token_replayed", "this request token (jti %s) was used before; sign each request afresh", jti)
	}
	if len(c.seen) >= c.max {
		return unavailableFor(c.exp[0].until.Sub(now), "replay_cache_full", "this server is taking more signed requests than it can remember; retry shortly")
	}
	c.seen[key] = until
	heap.Push(&c.exp, expiry{key: key, until: until})
	return nil
}

// Len is the number of tokens remembered (expired ones included until the
// next Use sweeps them).
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type expiry struct {
	key   string
	until time.Time
}

type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
