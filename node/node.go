package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
	"github.com/hcxfed/hcx/witness"
)

// Config is what a province node needs. Zero durations take the defaults.
type Config struct {
	Province hcx.ProvinceCode
	Dir      string // badger directory
	// Signer is the province's signer: its certificate names Province.
	Signer *certs.Signer
	// RootDER is the national root certificate; everything else is learnt
	// from trust lists in the hub log.
	RootDER []byte
	// SubjectKey is the federation subject key in use.
	SubjectKey certs.SubjectKey
	// FieldKeys are the SM4 keys for identity fields at rest, by version;
	// FieldKeyVersion seals new values.
	FieldKeys       map[int][]byte
	FieldKeyVersion int
	// RulesPath is the province's rule file (configs/rules/<province>.yaml).
	RulesPath string
	// Hub is the client for the national hub.
	Hub *exchange.HubClient

	BatchMax       int           // attestations per batch, default 1000
	BatchLinger    time.Duration // how long the publisher gathers a batch, default 50 ms
	AttestationTTL time.Duration // how long an attestation counts, default 7 days
	// RenewBefore is how long before its attestation lapses a colour that
	// still holds is attested again, default half of AttestationTTL.
	RenewBefore time.Duration
	// RecheckEvery bounds how long a non-green resident goes without being
	// decided again, default 24 hours: rules whose conditions lapse with
	// time (a 28-day look-back) release without any event.
	RecheckEvery time.Duration
	// DueTick is how often the scheduler re-decides residents that are due,
	// default 1 minute.
	DueTick time.Duration
	// ReceiptInterval is how often receipts of checks of other provinces'
	// codes are sealed and sent home (receipts.go), default 1 minute.
	ReceiptInterval time.Duration
	// BundleInterval is the least time between two builds of the offline
	// verification bundle (bundle.go), default 1 minute; OfflineMaxAge the
	// age past which a device refuses codes with it, default 6 hours.
	BundleInterval time.Duration
	OfflineMaxAge  time.Duration
	// RedecideChunk is how many residents one transaction of a bulk
	// re-decision covers, default 256; RedecideWorkers how many run at
	// once, default GOMAXPROCS.
	RedecideChunk   int
	RedecideWorkers int
	// MaxPendingWrites bounds the writes in flight; more ingests wait up
	// to a second, then get ErrBusy. Default 4096.
	MaxPendingWrites int
	// SessionTTL is a session's absolute lifetime (default 12 hours),
	// SessionIdle how long it lives unused (default 30 minutes),
	// SessionsPerActor how many live sessions one actor may hold (default
	// 10; a new login drops the oldest). See sessions.go.
	SessionTTL       time.Duration
	SessionIdle      time.Duration
	SessionsPerActor int
	// Cosignatures is how many witnesses (k) must have cosigned a hub
	// checkpoint before the node trusts it for its bundles and its
	// readiness (witness.go); 0, the default, requires none. Witnesses
	// narrows the witnesses counted to these trust-list kids; empty: every
	// province and auditor certificate of the trust list.
	Cosignatures int
	Witnesses    []string
	// AuditHeadEvery is how often the node logs its operator trail's head
	// at the hub when the trail grew (audithead.go): default
	// DefaultAuditHeadEvery (10 minutes), negative never.
	AuditHeadEvery time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

func (c *Config) defaults() error {
	if err := c.Province.Validate(); err != nil {
		return err
	}
	if c.Signer == nil || c.Signer.Province != c.Province {
		return fmt.Errorf("node %s: the signer must be a province signer for %s", c.Province, c.Province)
	}
	if c.Hub == nil {
		return fmt.Errorf("node %s: no hub configured", c.Province)
	}
	if len(c.SubjectKey.Key) == 0 || c.SubjectKey.Version < 1 {
		return fmt.Errorf("node %s: no federation subject key", c.Province)
	}
	if c.BatchMax <= 0 || c.BatchMax > exchange.MaxBatchAttestations {
		c.BatchMax = exchange.MaxBatchAttestations
	}
	if c.BatchLinger <= 0 {
		c.BatchLinger = 50 * time.Millisecond
	}
	if c.AttestationTTL <= 0 {
		c.AttestationTTL = 7 * 24 * time.Hour
	}
	if c.MaxPendingWrites <= 0 {
		c.MaxPendingWrites = 4096
	}
	if c.RenewBefore <= 0 || c.RenewBefore >= c.AttestationTTL {
		c.RenewBefore = c.AttestationTTL / 2
	}
	if c.RecheckEvery <= 0 {
		c.RecheckEvery = 24 * time.Hour
	}
	if c.DueTick <= 0 {
		c.DueTick = time.Minute
	}
	if c.ReceiptInterval <= 0 {
		c.ReceiptInterval = time.Minute
	}
	if c.BundleInterval <= 0 {
		c.BundleInterval = time.Minute
	}
	if c.OfflineMaxAge <= 0 {
		c.OfflineMaxAge = 6 * time.Hour
	}
	if c.RedecideChunk <= 0 {
		c.RedecideChunk = 256
	}
	if c.RedecideWorkers <= 0 {
		c.RedecideWorkers = runtime.GOMAXPROCS(0)
	}
	c.sessionDefaults()
	if err := c.witnessDefaults(); err != nil {
		return err
	}
	if c.AuditHeadEvery == 0 {
		c.AuditHeadEvery = DefaultAuditHeadEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Node is one province node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	db     *badger.DB
	trust  *certs.TrustStore
	fields *certs.FieldCipher
	// retiredVenue says whether this province retired a venue (scans.go's
	// seam until venues are built; nil: none is).
	retiredVenue func(iss hcx.ProvinceCode, vid string) bool
	venueCodes   venueCache // venue codes verified recently (scans.go)

	rules    atomic.Pointer[ruleSet]
	reloadMu sync.Mutex // one reload at a time, so each trail entry names the change it made
	// publishMu serialises publishing rules over the API (rules.go) from
	// the check of base_version to the reload: of two publishes against
	// the same version exactly one wins.
	publishMu sync.Mutex

	// locks serialise writes about one resident (write.go); slots bound the
	// ingests in flight.
	locks *subjectLocks
	slots chan struct{}
	// writes feed the committer (write.go), which alone uses outboxNext,
	// the next outbox sequence number, recovered at open. quit stops it,
	// committed is closed when it has stopped.
	writes     chan *write
	outboxNext uint64
	// auditNext and auditHead are the trail's next seq and last hash
	// (audit.go), kept by the committer like outboxNext.
	auditNext uint64
	auditHead [32]byte
	quit      chan struct{}
	committed chan struct{}
	closing   atomic.Bool
	closeOnce sync.Once

	redecide chan struct{} // poked when the rules change

	published chan struct{} // poked when the outbox gains entries

	// headSealedAt is when the last trail head was sealed for the log
	// (Unix seconds, 0 before the first; audithead.go).
	headSealedAt atomic.Int64
	vaxKick      chan struct{} // poked when doses from the hub are queued (vaccinations.go)
	applied      atomic.Uint64 // log size the foreign cache reflects

	bundle bundleCache // the newest offline verification bundle (bundle.go)

	treeMu sync.Mutex
	tree   *logTree                  // the Merkle tree of the applied log prefix
	fork   atomic.Pointer[ForkError] // the last fork seen, until another member checks out

	// witness cosigns hub checkpoints (witness.go); unwitnessedSince is
	// when (Unix nanoseconds, node clock) the applied tree went ahead of its
	// newest k-witnessed checkpoint, 0 while it is covered.
	witness          *witness.Witness
	unwitnessedSince atomic.Int64

	policyPublished atomic.Value // string: the policy version the hub acknowledged

	risk riskState // every province's risk areas (riskareas.go)

	// Venue exposures (exposures.go): expoRedo pokes the matching loop,
	// expoMu serialises markings, expoRun runs of the jobs;
	// afterExposureChunk, when a test sets it, runs after each chunk's
	// commit (an error stops the job there, as a crash would).
	expoRedo           chan struct{}
	expoMu             sync.Mutex
	expoRun            sync.Mutex
	afterExposureChunk func() error
	expoChunk          int // scans per commit of a matching job; 0: exposureChunk

	enrolMu sync.Mutex // serialises filing and deciding device enrolments (devices.go)

	metrics metrics

	checks checkQueue // the check history's background writer (checks.go)

	stats statState // the province's check statistics (stats.go)

	rcpt receiptState // check receipts to and from other provinces (receipts.go)
}

type ruleSet struct {
	rs       *policy.RuleSet
	version  string    // hex SM3 of the canonical rule set, first 16 bytes
	loadedAt time.Time // when they were put in force (node clock)
}

// New opens a province node's storage and loads its rules. Call Run to start
// publishing and following, and Close when done.
func New(cfg Config) (*Node, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "node", "province", string(cfg.Province))
	root, err := parseRoot(cfg.RootDER)
	if err != nil {
		return nil, err
	}
	fc, err := certs.NewFieldCipher(cfg.FieldKeyVersion, cfg.FieldKeys)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Province, err)
	}
	n := &Node{cfg: cfg, log: log, trust: root, fields: fc, published: make(chan struct{}, 1),
		locks: new(subjectLocks), slots: make(chan struct{}, cfg.MaxPendingWrites),
		writes: make(chan *write, cfg.MaxPendingWrites), quit: make(chan struct{}), committed: make(chan struct{}),
		redecide: make(chan struct{}, 1), vaxKick: make(chan struct{}, 1)}
	n.risk.redo = make(chan struct{}, 1)
	n.expoRedo = make(chan struct{}, 1)
	if err := n.ReloadRules(); err != nil {
		return nil, err
	}
	if n.db, err = openBadger(cfg.Dir, log); err != nil {
		return nil, err
	}
	if err := n.restoreTrust(); err != nil {
		n.db.Close()
		return nil, err
	}
	if n.witness, err = n.newWitness(); err != nil {
		n.db.Close()
		return nil, err
	}
	if err := n.loadRiskSet(); err != nil {
		n.db.Close()
		return nil, fmt.Errorf("load risk areas: %w", err)
	}
	if err := n.loadBoxKeys(); err != nil {
		n.db.Close()
		return nil, fmt.Errorf("load box keys: %w", err)
	}
	if moved, err := migrateEvents(n.db); err != nil {
		n.db.Close()
		return nil, fmt.Errorf("fold stored events into bounded histories: %w", err)
	} else if moved > 0 {
		log.Info("stored events folded into bounded histories", "events", moved)
	}
	err = n.db.View(func(txn *badger.Txn) error {
		if n.tree, err = loadLogTree(txn); err != nil {
			return err
		}
		// The tree is written with the follow position; a store from before
		// the tree existed starts over from leaf 0 (see loadLogTree).
		n.applied.Store(n.tree.rng.End())
		// Every outbox entry is written with the counter, in one commit.
		if n.outboxNext, err = getU64(txn, kOutboxNext); err != nil {
			return err
		}
		n.auditNext, n.auditHead, err = loadAuditHead(txn)
		n.metrics.auditSeq.Store(n.auditNext - 1)
		if err != nil {
			return err
		}
		return n.loadHeadLogged(txn)
	})
	if err == nil {
		err = n.planRedecide(n.rules.Load().version, false)
	}
	if err != nil {
		n.db.Close()
		return nil, err
	}
	// A tree stored ahead of its witnessed checkpoint gets the bound
	// again from now (witness.go).
	n.noteWitnessed(n.tree)
	go n.commitLoop()
	n.checks.start(n)
	return n, nil
}

func parseRoot(der []byte) (*certs.TrustStore, error) {
	if len(der) == 0 {
		return nil, errors.New("no national root certificate configured")
	}
	ts, err := certs.NewTrustStoreDER(der)
	if err != nil {
		return nil, fmt.Errorf("national root certificate: %w", err)
	}
	return ts, nil
}

// Province is the node's province.
func (n *Node) Province() hcx.ProvinceCode { return n.cfg.Province }

// ReloadRules reads the rule file again, as the node's own act (a SIGHUP, the
// development federation): ReloadRulesAs with the system principal "reload".
func (n *Node) ReloadRules() error {
	return n.ReloadRulesAs(auth.NewContext(context.Background(), auth.System("reload")))
}

// ReloadRulesAs reads the rule file again on behalf of the principal in ctx.
// If it fails, the rules in force stay and the error says why (file, rule and
// position for a rule that does not compile). A change of version is recorded
// in the audit trail (ActionRulesReload, with both versions) before the new
// rules take effect; if it cannot be recorded the old rules stay. It returns
// ErrNoActor when ctx carries no principal.
func (n *Node) ReloadRulesAs(ctx context.Context) error {
	entry, err := callerEntry(ctx, ActionRulesReload, "")
	if err != nil {
		return err
	}
	rs, err := LoadRules(n.cfg.RulesPath)
	if err == nil && rs.Province() != n.cfg.Province {
		err = fmt.Errorf("%s is for province %s, this node is %s", n.cfg.RulesPath, rs.Province(), n.cfg.Province)
	}
	if err != nil {
		if old := n.rules.Load(); old != nil {
			n.log.Error("rules not reloaded; the previous rules stay in force", "file", n.cfg.RulesPath, "policy", old.version, "err", err)
		}
		return fmt.Errorf("load rules: %w", err)
	}
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	// At New no rules are in force yet and the committer is not running:
	// the first rules change nothing and are not recorded.
	if cur := n.rules.Load(); cur != nil {
		if cur.version == rs.Version() {
			return nil
		}
		entry.Note = "policy " + cur.version + " -> " + rs.Version()
		release, err := n.admit(ctx)
		if err != nil {
			return err
		}
		w := &write{}
		w.record(entry)
		err = n.write(w)
		release()
		if err != nil {
			return fmt.Errorf("rules %s not put in force: the audit trail could not record the change: %w", rs.Version(), err)
		}
	}
	old := n.rules.Swap(&ruleSet{rs: rs, version: rs.Version(), loadedAt: n.cfg.Now().UTC()})
	if old != nil && old.version != rs.Version() {
		n.log.Info("rules reloaded", "file", n.cfg.RulesPath, "policy", rs.Version(), "was", old.version)
		n.pokePublisher() // publish the new policy version
		// Every resident is decided again under the new rules (redecide.go).
		if err := n.planRedecide(rs.Version(), true); err != nil {
			return fmt.Errorf("rules %s are in force, but re-deciding the residents could not be planned: %w", rs.Version(), err)
		}
	}
	return nil
}

// LoadRules loads a rule file as a node does, with the policy version it
// publishes (the first 16 bytes of SM3 over the canonical rules, in hex).
// `hcx policy` uses it so that bureau staff see the same version.
func LoadRules(path string) (*policy.RuleSet, error) {
	return exchange.LoadRules(path)
}

// PolicyVersion is the version of the rules in force.
func (n *Node) PolicyVersion() string { return n.rules.Load().version }

// Run publishes the outbox to the hub, follows the hub's log, re-decides
// residents whose time has come (schedule.go), re-decides everyone after a
// rule change (redecide.go) and purges expired sessions (sessions.go), until
// ctx ends. Errors talking to the hub are logged and retried; Run returns
// when ctx is done.
func (n *Node) Run(ctx context.Context) error {
	// One goroutine per loop, counted by the WaitGroup itself (two changes
	// that each added a loop once left a hand-kept count one short).
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){
		n.riskLoop,
		n.exposureLoop,
		n.publishLoop,
		n.followLoop,
		n.dueLoop,
		n.redecideLoop,
		n.sessionLoop,
		n.vaxLoop,
		n.receiptLoop,
	} {
		wg.Go(func() { loop(ctx) })
	}
	wg.Wait()
	return nil
}

// Close waits for the writes in flight, stops the committer and closes the
// store. Stop Run first. Writes after Close get ErrClosed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closing.Store(true)
		for range cap(n.slots) {
			n.slots <- struct{}{}
		}
		close(n.quit)
		<-n.committed
		n.checks.stop()
	})
	return n.db.Close()
}

// Ready reports whether the node has a trust list and its rules, and follows
// a hub log that checks out: after a fork it returns the *ForkError until
// another member's signed checkpoint agrees with the node's tree. A node
// that requires cosignatures is not ready (an *hcx.Error coded
// CodeUnwitnessed) while its tree is not covered by a k-witnessed
// checkpoint (witness.go).
//
// Each refusal but the fork is an *hcx.Error of class EUnavailable whose code
// says why: CodeNoTrustList, CodeRulesNotLoaded, CodeUnwitnessed; the API
// codes a *ForkError CodeLogFork.
func (n *Node) Ready() error {
	if f := n.fork.Load(); f != nil {
		return f
	}
	if n.trust.Version() == 0 {
		return &hcx.Error{Class: hcx.EUnavailable, Code: CodeNoTrustList,
			Message: "the node has no trust list from the hub yet, so it can verify no other province's entries (check that the hub is reachable at --hub and has published a trust list)"}
	}
	if n.rules.Load() == nil {
		return &hcx.Error{Class: hcx.EUnavailable, Code: CodeRulesNotLoaded,
			Message: fmt.Sprintf("the node has no rules in force (fix %s and reload it with SIGHUP)", n.cfg.RulesPath)}
	}
	return n.witnessedReady()
}

// Codes of Ready's refusals (CodeUnwitnessed is in witness.go).
const (
	// CodeNoTrustList: the node has not had a trust list from the hub yet.
	CodeNoTrustList = "no_trust_list"
	// CodeRulesNotLoaded: no rules are in force. New refuses to open a node
	// whose rule file does not load and a failed reload keeps the rules in
	// force, so this is a guard, not a state a running node is expected in.
	CodeRulesNotLoaded = "rules_not_loaded"
	// CodeLogFork: the hub log the node follows forked (a *ForkError,
	// which names the member).
	CodeLogFork = "log_fork"
)

// StoreVersion is the store's newest commit version: it changes whenever the
// node writes anything, which lets tests and operators check that a request
// wrote nothing.
// It is the read timestamp of a fresh transaction (the last committed
// version), taken through badger's oracle under its lock; db.MaxVersion reads
// the memtable's counter without one and races with concurrent commits.
func (n *Node) StoreVersion() uint64 {
	txn := n.db.NewTransaction(false)
	defer txn.Discard()
	return txn.ReadTs()
}
