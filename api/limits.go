package api

import (
	"container/list"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Abuse limits, applied by the gate to every route (docs/decisions.md,
// "Issue 9: audit"):
//
//   - Load shedding: each Priority class has its own bound on requests in
//     flight; a request that finds its class full is refused at once with
//     503 overloaded and Retry-After. Classes do not borrow from each other,
//     so bulk feeds that saturate theirs leave checkpoint verification its
//     own. PriorityOps (health, metrics) is never shed.
//   - Rate limits: a token bucket per identity — the principal's actor, or
//     for anonymous callers the client address (IPv6 by /64) — with a rate
//     and burst per role. Over the limit: 429 rate_limited with Retry-After
//     (the bucket's wait for one token). The buckets live in a bounded LRU,
//     so a flood of new identities evicts the oldest rather than growing
//     memory; an evicted identity starts again with a full bucket.
//   - A request whose credentials do not check out is charged to its
//     address's anonymous bucket before it gets its 401, so guessing
//     credentials is as slow as any anonymous traffic.

// RoleLimit is the token bucket of each identity of a role.
type RoleLimit struct {
	Rate  rate.Limit // tokens per second
	Burst int
}

// LimitsConfig configures abuse limits. Zero fields take the defaults of
// DefaultLimitsConfig.
type LimitsConfig struct {
	// PerRole is each role's bucket; RoleAnonymous's applies per client
	// address. A role missing here gets RoleAnonymous's.
	PerRole map[auth.Role]RoleLimit
	// MaxIdentities bounds the buckets kept (an LRU), default 100,000.
	MaxIdentities int
	// InFlight bounds the requests in flight per priority class.
	// PriorityOps is never bounded.
	InFlight map[Priority]int
	// RetryOverloaded is the Retry-After of a shed request, default 1 s.
	RetryOverloaded time.Duration
	// Now is the clock of the buckets, default time.Now.
	Now func() time.Time
}

// DefaultLimitsConfig returns the defaults: residents 5 requests per second
// (burst 20), checkpoints 50 (100), feeds 500 (1000), operators 20 (50), the
// auditor 50 (100), province signers and hub members at the hub 200 (400),
// anonymous callers 2 per address (10); in flight 512 checkpoint, 256
// resident, 128 operator and 64 bulk requests, and 4 bulk feeds (each may
// hold 8 MiB of body: 32 MiB at most).
func DefaultLimitsConfig() LimitsConfig {
	return LimitsConfig{
		PerRole: map[auth.Role]RoleLimit{
			auth.RoleAnonymous:  {2, 10},
			auth.RoleResident:   {5, 20},
			auth.RoleCheckpoint: {50, 100},
			auth.RoleFeed:       {500, 1000},
			auth.RoleOperator:   {20, 50},
			auth.RoleAuditor:    {50, 100},
			auth.RoleNational:   {20, 50},
			auth.RoleProvince:   {200, 400},
			auth.RoleHub:        {200, 400},
		},
		MaxIdentities: 100_000,
		InFlight: map[Priority]int{
			PriorityCheckpoint: 512,
			PriorityResident:   256,
			PriorityOperator:   128,
			PriorityBulk:       64,
			PriorityFeed:       4,
		},
		RetryOverloaded: time.Second,
		Now:             time.Now,
	}
}

// Limits is the abuse limits of one server. Its methods are safe for
// concurrent use. A nil *Limits limits nothing.
type Limits struct {
	cfg     LimitsConfig
	buckets *lru
	classes [PriorityOps]chan struct{}

	limited [len(roleIndex)]atomic.Uint64 // 429s by role
	shed    [PriorityOps]atomic.Uint64    // 503s by class
}

// roleIndex numbers the roles for the counters; a role not listed counts
// as anonymous.
var roleIndex = [...]auth.Role{auth.RoleAnonymous, auth.RoleResident, auth.RoleOperator, auth.RoleAuditor, auth.RoleFeed, auth.RoleCheckpoint, auth.RoleProvince, auth.RoleHub, auth.RoleNational}

// NewLimits returns the limits cfg describes, its zero fields defaulted.
func NewLimits(cfg LimitsConfig) *Limits {
	def := DefaultLimitsConfig()
	if cfg.PerRole == nil {
		cfg.PerRole = def.PerRole
	}
	if _, ok := cfg.PerRole[auth.RoleAnonymous]; !ok {
		cfg.PerRole[auth.RoleAnonymous] = def.PerRole[auth.RoleAnonymous]
	}
	if cfg.MaxIdentities <= 0 {
		cfg.MaxIdentities = def.MaxIdentities
	}
	if cfg.InFlight == nil {
		cfg.InFlight = def.InFlight
	}
	if cfg.RetryOverloaded <= 0 {
		cfg.RetryOverloaded = def.RetryOverloaded
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limits{cfg: cfg, buckets: newLRU(cfg.MaxIdentities)}
	for p := range l.classes {
		n := cfg.InFlight[Priority(p)]
		if n <= 0 {
			n = def.InFlight[Priority(p)]
		}
		l.classes[p] = make(chan struct{}, n)
	}
	return l
}

// admit takes a place in the class of priority p, or refuses with 503
// overloaded; call release when the request is done.
func (l *Limits) admit(p Priority) (release func(), err error) {
	if l == nil || p < 0 || p >= PriorityOps {
		return func() {}, nil
	}
	sem := l.classes[p]
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	default:
		l.shed[p].Add(1)
		return nil, retryError(hcx.EUnavailable, "overloaded", l.cfg.RetryOverloaded,
			"the server is serving as many %s requests as it can; retry after the Retry-After delay", p)
	}
}

// allow takes a token from the bucket of the caller of r, principal p, or
// refuses with 429 rate_limited.
func (l *Limits) allow(r *http.Request, p *auth.Principal) error {
	if l == nil {
		return nil
	}
	role := p.Role
	if p.IsAnonymous() {
		role = auth.RoleAnonymous
	}
	lim, ok := l.cfg.PerRole[role]
	if !ok {
		role, lim = auth.RoleAnonymous, l.cfg.PerRole[auth.RoleAnonymous]
	}
	key := string(role) + "|" + p.Actor
	if p.IsAnonymous() {
		key = "addr|" + clientAddr(r)
	}
	b := l.buckets.get(key, func() *rate.Limiter { return rate.NewLimiter(lim.Rate, lim.Burst) })
	now := l.cfg.Now()
	res := b.ReserveN(now, 1)
	if !res.OK() {
		l.count(role)
		return retryError(hcx.ETooMany, "rate_limited", time.Second, "a %s may not call at all here (its limit is zero)", role)
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		l.count(role)
		return retryError(hcx.ETooMany, "rate_limited", d,
			"too many requests from this %s: at most %g per second (burst %d); retry after the Retry-After delay", role, float64(lim.Rate), lim.Burst)
	}
	return nil
}

func (l *Limits) count(role auth.Role) {
	for i, r := range roleIndex {
		if r == role {
			l.limited[i].Add(1)
			return
		}
	}
	l.limited[0].Add(1)
}

// retryError is an error whose answer carries Retry-After (whole seconds,
// at least 1), through its "retry_after" detail (WriteError).
func retryError(class hcx.ErrorCode, code string, after time.Duration, format string, args ...any) *hcx.Error {
	e := hcx.Errorf(class, code, format, args...)
	e.Detail = map[string]any{RetryAfterDetail: max(1, int(math.Ceil(after.Seconds())))}
	return e
}

// clientAddr is the key of an anonymous caller: its IP address, or its /64
// for IPv6 (one subscriber usually holds a whole /64). RemoteAddr is used,
// not X-Forwarded-For: a proxy in front must be configured to limit itself.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// Len is the number of identities whose buckets are kept.
func (l *Limits) Len() int { return l.buckets.len() }

// The limits' metrics. The counters are atomics added to where a request
// is refused and read at scrape time (Collect), so refusing stays as cheap
// as before; the names are those of the hand-written exposition they
// replace.
var (
	rateLimitedDesc = prometheus.NewDesc("hcx_api_rate_limited_total",
		"Requests refused with 429 because the caller's identity was over its rate, by the role it was charged to.", []string{"role"}, nil)
	shedDesc = prometheus.NewDesc("hcx_api_shed_total",
		"Requests refused with 503 because their priority class was full.", []string{"class"}, nil)
	inFlightDesc = prometheus.NewDesc("hcx_api_in_flight",
		"Requests in flight by priority class (ops, never bounded, is not counted).", []string{"class"}, nil)
	identitiesDesc = prometheus.NewDesc("hcx_api_rate_identities",
		"Identities whose rate buckets are kept (bounded by the LRU).", nil, nil)
)

// Describe makes Limits a prometheus.Collector: the component serving it
// registers it in its own registry.
func (l *Limits) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rateLimitedDesc, shedDesc, inFlightDesc, identitiesDesc} {
		ch <- d
	}
}

// Collect reads the limits' counters and gauges.
func (l *Limits) Collect(ch chan<- prometheus.Metric) {
	for i, r := range roleIndex {
		ch <- prometheus.MustNewConstMetric(rateLimitedDesc, prometheus.CounterValue, float64(l.limited[i].Load()), string(r))
	}
	for p := range l.classes {
		ch <- prometheus.MustNewConstMetric(shedDesc, prometheus.CounterValue, float64(l.shed[p].Load()), Priority(p).String())
	}
	for p, sem := range l.classes {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(len(sem)), Priority(p).String())
	}
	ch <- prometheus.MustNewConstMetric(identitiesDesc, prometheus.GaugeValue, float64(l.Len()))
}

// String names a priority class.
func (p Priority) String() string {
	switch p {
	case PriorityCheckpoint:
		return "checkpoint"
	case PriorityResident:
		return "resident"
	case PriorityOperator:
		return "operator"
	case PriorityBulk:
		return "bulk"
	case PriorityFeed:
		return "feed"
	case PriorityOps:
		return "ops"
	}
	return fmt.Sprintf("priority-%d", int(p))
}

// lru is a bounded map of buckets, in shards so that callers rarely wait
// for each other; each shard evicts its least recently used entry when
// full.
type lru struct {
	seed   maphash.Seed
	shards [lruShards]lruShard
}

const lruShards = 16

type lruShard struct {
	mu    sync.Mutex
	cap   int
	items map[string]*list.Element
	order list.List // front: most recently used
}

type lruItem struct {
	key string
	lim *rate.Limiter
}

func newLRU(size int) *lru {
	c := &lru{seed: maphash.MakeSeed()}
	per := max(1, size/lruShards) // never more than size in all
	for i := range c.shards {
		c.shards[i].cap = per
		c.shards[i].items = make(map[string]*list.Element)
	}
	return c
}

// get returns key's bucket, made by mk if it has none.
func (c *lru) get(key string, mk func() *rate.Limiter) *rate.Limiter {
	s := &c.shards[maphash.String(c.seed, key)%lruShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[key]; ok {
		s.order.MoveToFront(e)
		return e.Value.(*lruItem).lim
	}
	if len(s.items) >= s.cap {
		old := s.order.Back()
		s.order.Remove(old)
		delete(s.items, old.Value.(*lruItem).key)
	}
	it := &lruItem{key: key, lim: mk()}
	s.items[key] = s.order.PushFront(it)
	return it.lim
}

func (c *lru) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.items)
		s.mu.Unlock()
	}
	return n
}
