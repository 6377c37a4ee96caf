package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
	"github.com/hcxfed/hcx/witness"
	"github.com/prometheus/client_golang/prometheus"
)

// Node is what the province node's routes need from a node.
type Node interface {
	Province() hcx.ProvinceCode
	Register(ctx context.Context, req node.RegisterRequest) (*node.Resident, error)
	Resident(ctx context.Context, sub hcx.Subject) (*node.Resident, error)
	ResidentIdentity(ctx context.Context, sub hcx.Subject) (*node.Identity, error)
	IssueEnrolment(ctx context.Context, req node.RegisterRequest) (*node.ResidentEnrolment, error)
	UseEnrolment(ctx context.Context, code string) (hcx.Subject, error)
	AddGuardian(ctx context.Context, dependant, guardian hcx.Subject) error
	RemoveGuardian(ctx context.Context, dependant, guardian hcx.Subject) error
	Delegated(ctx context.Context, guardian, dependant hcx.Subject) (bool, error)
	Dependants(ctx context.Context, guardian hcx.Subject) ([]hcx.Subject, error)
	RegisterDependant(ctx context.Context, guardian hcx.Subject, req node.DependantRequest) (*node.DependantAnswer, error)
	Ingest(ctx context.Context, sub hcx.Subject, ev node.Event) (*node.Status, error)
	Declare(ctx context.Context, sub hcx.Subject, req node.DeclarationRequest) (*node.Status, error)
	CheckIn(ctx context.Context, sub hcx.Subject, req node.CheckInRequest) (*node.Status, error)
	Declarations(ctx context.Context, sub hcx.Subject) (*node.Declarations, error)
	Vaccinations(ctx context.Context, sub hcx.Subject) (*node.Vaccinations, error)
	IssueCode(ctx context.Context, sub hcx.Subject, offline bool) (*node.Code, error)
	Verify(ctx context.Context, qr string) (*node.Verification, error)
	VerificationBundle() (*node.Bundle, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
	Checks(ctx context.Context, sub hcx.Subject, after string, limit int) (*node.ChecksPage, error)
	CheckStats(from, to time.Time, step time.Duration, loc *time.Location, group string) ([]node.StatRow, error)
	StatsSaved() time.Time
	Zone() *time.Location
	Ready() error
	Applied() uint64
	Checkpoints() node.CheckpointStatus
	LogStatus() node.LogStatus
	Witness() *witness.Witness
	PolicyVersion() string
	Metrics() *prometheus.Registry
	AuditRead(ctx context.Context, action string, sub hcx.Subject, why string) error
	AuditTrail(ctx context.Context, after uint64, limit int) (*node.AuditPage, error)
	PlaceOrder(ctx context.Context, sub hcx.Subject, req node.OrderRequest) (*node.OrderResult, error)
	ConfirmOrder(ctx context.Context, sub hcx.Subject, id string) (*node.OrderResult, error)
	LiftOrder(ctx context.Context, sub hcx.Subject, id string) (*node.OrderResult, error)
	Orders(ctx context.Context, sub hcx.Subject) ([]node.CDCOrder, error)
	PendingOrders(ctx context.Context, after string, limit int) (*node.OrderPage, error)
	// Venue codes (node_venues.go).
	VenueCategories(ctx context.Context) ([]node.VenueCategory, error)
	AddVenueCategory(ctx context.Context, c node.VenueCategory) (*node.VenueCategory, bool, error)
	ApplyVenue(ctx context.Context, sub hcx.Subject, a node.VenueApplication) (*node.Venue, error)
	Venues(ctx context.Context, sub hcx.Subject) ([]node.Venue, error)
	Venue(ctx context.Context, sub hcx.Subject, vid string) (*node.Venue, error)
	VenuesUnderReview(ctx context.Context, after string, limit int) (*node.VenuePage, error)
	ReviewVenue(ctx context.Context, vid string, r node.VenueReview) (*node.Venue, error)
	RetireVenue(ctx context.Context, vid, reason string) (*node.Venue, error)
	MarkExposure(ctx context.Context, in node.ExposureInput) (*node.Exposure, error)
	WithdrawExposure(ctx context.Context, in node.ExposureInput) (*node.Exposure, error)
	Exposures(ctx context.Context, iss hcx.ProvinceCode) ([]node.Exposure, error)
	FileAppeal(ctx context.Context, sub hcx.Subject, req node.AppealRequest) (*node.Appeal, error)
	Appeals(ctx context.Context, sub hcx.Subject) ([]*node.Appeal, error)
	AppealOf(ctx context.Context, sub hcx.Subject, id string) (*node.Appeal, error)
	OpenAppeals(ctx context.Context, after string, limit int) (*node.AppealPage, error)
	OpenAppeal(ctx context.Context, id string) (*node.Evidence, error)
	DecideAppeal(ctx context.Context, id string, req node.DecisionRequest) (*node.AppealDecision, error)
	FileReclaim(ctx context.Context, req node.ReclaimRequest, proof node.ReclaimProof) (*node.Appeal, error)
	Reclaim(ctx context.Context, id string, sub hcx.Subject) (*node.Appeal, error)
	SubjectOf(t hcx.DocType, number string) (hcx.Subject, error)
	IngestItinerary(ctx context.Context, sub hcx.Subject, it *node.Itinerary) (*node.ItineraryResult, error)
	Scan(ctx context.Context, sub hcx.Subject, req *node.ScanRequest) (*node.ScanResult, error)
	Scans(ctx context.Context, sub hcx.Subject, limit int) ([]node.ScanRecord, error)
	DesignateRiskAreas(ctx context.Context, areas []node.RiskAreaInput) ([]node.RiskArea, error)
	EndRiskArea(ctx context.Context, div hcx.DivisionCode, from, to time.Time) (*node.RiskArea, error)
	RiskAreas(iss hcx.ProvinceCode, inForce bool) []node.RiskArea
	IngestBatch(ctx context.Context, recs []node.BatchRecord) ([]error, error)
	RegisterBatch(ctx context.Context, reqs []node.RegisterRequest) ([]error, error)
}

var _ Node = (*node.Node)(nil)

// Body limits of the node's routes.
const maxJSONBody = 64 << 10

// NodeOptions configures a node's API beyond the node itself.
type NodeOptions struct {
	// Authn reads callers' credentials; nil serves every caller as
	// anonymous.
	Authn auth.Authenticator
	// StartSession starts a server-side session for p and sets its cookie
	// on w: every login route (passkey, OIDC, enrolment code) ends in it.
	// Nil: logins are refused (503).
	StartSession func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error
	// EndSession ends the session p came with and clears its cookie
	// (POST /v1/auth/logout); ClearSession clears a session cookie that did
	// not check out, in the 401 that refuses it. Both come from
	// auth.Sessions (End, Clear); nil: logout answers 503.
	EndSession   func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error
	ClearSession func(w http.ResponseWriter, r *http.Request)
	// Passkeys is the node's WebAuthn relying party (node_passkeys.go);
	// zero: the passkey routes answer 503.
	Passkeys PasskeyConfig
	// Limits are the per-identity rate limits and load shedding
	// (NewLimits(DefaultLimitsConfig())); nil limits nothing.
	Limits *Limits
	// OIDC runs the browser login at /v1/auth/oidc/login (node_oidc.go).
	// Nil: OIDC login is off (503). Its bearer tokens are read by Authn,
	// where it is one member of the chain.
	OIDC *auth.OIDC
	// BaseURL is this node's external URL (scheme://host:port), for the
	// OIDC callback registered at the providers. Empty: taken from the
	// request's Host.
	BaseURL string
	// BindIdentity binds a verified real-name identity from an OIDC login
	// to a resident's subject (the identity package implements it). Nil:
	// residents' OIDC logins are refused (503).
	BindIdentity func(ctx context.Context, id auth.VerifiedIdentity) (hcx.Subject, error)
	// DeviceIssuer issues a device's certificate when an operator approves
	// its enrolment. Nil: approval answers 503 naming `hcx ca issue --csr`.
	DeviceIssuer DeviceIssuer
}

// NewNodeHandler serves a province node's API. Who may call each route is
// declared in nodeRules.
func NewNodeHandler(n Node, log *slog.Logger, opts NodeOptions) http.Handler {
	h := &nodeHandler{n: n, log: log.With("component", "api", "province", string(n.Province())), opts: opts,
		batch:   newBatchPool(runtime.GOMAXPROCS(0), MaxBatchesInFlight),
		decodes: make(chan struct{}, runtime.GOMAXPROCS(0)),
		bundles: make(chan struct{}, MaxBundleDownloads)}
	// The node's registry, with this server's limits in it.
	if opts.Limits != nil {
		registerOnce(n.Metrics(), opts.Limits)
	}
	h.metrics = MetricsHandler(n.Metrics(), h.log)
	r := mux.NewRouter()
	g := &gate{authn: opts.Authn, inScope: h.inScope, onError: h.gateError, limits: opts.Limits, auditRead: h.auditRead}
	g.mount(r, h.rules())
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, h.log, hcx.Errorf(hcx.ENotFound, "no_route", "no route %s %s; see docs/api.md", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, h.log, &hcx.Error{Class: hcx.EInvalid, Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path})
	})
	return r
}

// rules is the node's route table: every route, who may call it, and how
// far each role reaches. Feature files add their own tables here.
func (h *nodeHandler) rules() []Rule {
	var (
		anyone     = []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
		operator   = Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
		feed       = Grant{Role: auth.RoleFeed, Scope: ScopeProvince}
		checkpoint = Grant{Role: auth.RoleCheckpoint, Scope: ScopeProvince}
		resident   = Grant{Role: auth.RoleResident, Scope: ScopeSelfOrDependant}
		auditor    = Grant{Role: auth.RoleAuditor, Scope: ScopeAny}
	)
	rules := []Rule{
		// An operator registers a resident after an in-person check; a
		// resident proves their own identity through OIDC or an
		// enrolment code instead (node_identity.go, node_oidc.go).
		{Method: http.MethodPost, Path: "/v1/residents", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.register},
		// The national auditor reads everything and writes nothing (DESIGN.md §8b).
		{Method: http.MethodGet, Path: "/v1/residents/{sub}", Priority: PriorityResident, Allow: []Grant{resident, operator, auditor}, Handler: h.resident},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/labs", Priority: PriorityBulk, Allow: []Grant{feed, operator}, Audited: true, Handler: h.lab},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/contacts", Priority: PriorityBulk, Allow: []Grant{feed, operator}, Audited: true, Handler: h.contact},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/code", Query: []string{"offline", "format"}, Priority: PriorityResident, Allow: []Grant{resident}, Handler: h.code},
		{Method: http.MethodPost, Path: "/v1/verify", Priority: PriorityCheckpoint, Allow: []Grant{checkpoint, operator}, Handler: h.verify},
		{Method: http.MethodGet, Path: "/healthz", Priority: PriorityOps, Allow: anyone, Handler: func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{Method: http.MethodGet, Path: "/readyz", Priority: PriorityOps, Allow: anyone, Handler: h.ready},
		// Metrics are counts, never identities, but how busy a province is
		// is the bureau's and the auditor's to know.
		{Method: http.MethodGet, Path: "/metrics", Priority: PriorityOps, Allow: []Grant{operator, auditor}, Handler: func(w http.ResponseWriter, r *http.Request) {
			h.metrics.ServeHTTP(w, r)
		}},
	}
	rules = append(rules, h.passkeyRules()...)
	rules = append(rules, h.auditRules()...)
	rules = append(rules, h.oidcRules()...)
	rules = append(rules, h.identityRules()...)
	rules = append(rules, h.devicesRules()...)
	rules = append(rules, h.declareRules()...)
	rules = append(rules, h.ordersRules()...)
	rules = append(rules, h.vaxRules()...)
	rules = append(rules, h.appealsRules()...)
	rules = append(rules, h.peopleRules()...)
	rules = append(rules, h.travelRules()...)
	rules = append(rules, h.feedsRules()...)
	rules = append(rules, h.venuesRules()...)
	rules = append(rules, h.checkpointRules()...)
	rules = append(rules, h.sessionRules()...)
	rules = append(rules, h.exposuresRules()...)
	rules = append(rules, h.checksRules()...)
	rules = append(rules, h.statsRules()...)
	rules = append(rules, h.scansRules()...)
	rules = append(rules, h.batchRules()...)
	rules = append(rules, h.bundleRules()...)
	rules = append(rules, discoveryRules("hcx province node", func() string { return string(h.n.Province()) }, NodeOpenAPI)...)
	rules = append(rules, h.witnessRules()...)
	rules = append(rules, h.logStatusRules()...)
	rules = append(rules, h.rulesRules()...)
	return rules
}

// inScope checks a grant's scope for the node (see Scope).
func (h *nodeHandler) inScope(r *http.Request, p *auth.Principal, s Scope) error {
	switch s {
	case ScopeProvince:
		if p.Province != h.n.Province() {
			return hcx.Errorf(hcx.EForbidden, "other_province", "a %s of %s may not act at %s's node", p.Role, p.Province, h.n.Province())
		}
		return nil
	case ScopeSelf, ScopeSelfOrDependant:
		sub, err := h.subject(r)
		if err != nil {
			return err
		}
		if p.Subject != "" && p.Subject == sub {
			return nil
		}
		if s == ScopeSelfOrDependant && p.Role == auth.RoleResident {
			ok, err := h.n.Delegated(r.Context(), p.Subject, sub)
			if err != nil {
				return err
			}
			if ok {
				h.log.Info("guardian acts for dependant", "actor", p.Actor, "subject", sub, "route", r.Method+" "+r.URL.Path)
				return nil
			}
		}
		return hcx.Errorf(hcx.EForbidden, "not_yours", "this resident is not you, and you hold no delegation for them")
	}
	return hcx.Errorf(hcx.EForbidden, "forbidden_scope", "scope %q is not known to this server", s)
}

type nodeHandler struct {
	n    Node
	log  *slog.Logger
	opts NodeOptions
	// batch is the verification pool of /v1/verify/batch (node_batch.go).
	batch *batchPool
	// decodes bounds the image decodes of /v1/verify at once, one per
	// core (node_verifyimage.go).
	decodes chan struct{}
	bundles chan struct{} // bundle downloads in flight (node_bundle.go)
	metrics http.Handler  // the node's registry (api/metrics.go)
}

func (h *nodeHandler) subject(r *http.Request) (hcx.Subject, error) {
	return node.ParseSubject(mux.Vars(r)["sub"])
}

func (h *nodeHandler) register(w http.ResponseWriter, r *http.Request) {
	var req node.RegisterRequest
	if err := DecodeJSON(w, r, maxJSONBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	res, err := h.n.Register(r.Context(), req)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, res)
}

func (h *nodeHandler) resident(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	res, err := h.n.Resident(r.Context(), sub)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

// labRequest is a lab result as the bureau's feed posts it.
type labRequest struct {
	Result string    `json:"result"` // "positive" or "negative"
	Kind   string    `json:"kind,omitempty"`
	At     time.Time `json:"at,omitzero"`
	// ID is the lab's record id (its sample number): a result sent again
	// counts once, and an appeal names the result by it.
	ID string `json:"id,omitempty"`
}

func (h *nodeHandler) lab(w http.ResponseWriter, r *http.Request) {
	var req labRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxJSONBody, &req)
	}
	if err == nil && req.Result != "positive" && req.Result != "negative" {
		err = hcx.Invalidf("result", "result %q: want positive or negative", req.Result)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	h.ingest(w, r, sub, node.Event{Lab: &policy.LabResult{At: req.At, Positive: req.Result == "positive", Kind: req.Kind, ID: req.ID}})
}

type contactRequest struct {
	Issuer hcx.ProvinceCode `json:"issuer,omitempty"`
	At     time.Time        `json:"at,omitzero"`
}

func (h *nodeHandler) contact(w http.ResponseWriter, r *http.Request) {
	var req contactRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxJSONBody, &req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	if req.Issuer == "" {
		req.Issuer = h.n.Province()
	}
	if err := req.Issuer.Validate(); err != nil {
		// Name the request's member, not the type's generic field.
		var e *hcx.Error
		if errors.As(err, &e) {
			err = hcx.Invalidf("issuer", "%s", e.Message)
		}
		WriteError(w, h.log, err)
		return
	}
	if req.Issuer != h.n.Province() {
		// A flag is posted in the name of the province whose feed or
		// bureau posts it: another province's flags travel as its own
		// attestations through the hub.
		WriteError(w, h.log, &hcx.Error{Class: hcx.EForbidden, Code: "other_issuer", Field: "issuer",
			Message: fmt.Sprintf("this node posts close-contact flags only in %s's name, not %s's", h.n.Province(), req.Issuer)})
		return
	}
	h.ingest(w, r, sub, node.Event{Contact: &policy.ContactFlag{Issuer: req.Issuer, At: req.At}})
}

func (h *nodeHandler) ingest(w http.ResponseWriter, r *http.Request, sub hcx.Subject, ev node.Event) {
	st, err := h.n.Ingest(r.Context(), sub, ev)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}

func (h *nodeHandler) code(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	q, err := queryParams(r, "offline", "format")
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	offline, err := parseBool(q, "offline")
	if err == nil {
		err = checkCodeFormat(q["format"])
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	c, err := h.n.IssueCode(r.Context(), sub, offline)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	if f := q["format"]; f == "png" || f == "svg" {
		h.codeImage(w, c, f) // node_codeimage.go
		return
	}
	WriteJSON(w, http.StatusOK, c)
}

type verifyRequest struct {
	Code string `json:"code"`
}

func (h *nodeHandler) verify(w http.ResponseWriter, r *http.Request) {
	var req verifyRequest
	img, err := imageMediaType(r)
	if err == nil && img {
		req.Code, err = h.imageCode(w, r) // node_verifyimage.go
	} else if err == nil {
		err = DecodeJSON(w, r, 8<<10, &req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	v, err := h.n.Verify(r.Context(), req.Code)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// ready serves /readyz: 200 with the log size applied, the policy and the
// checkpoints the node holds; 503 coded by the reason otherwise
// (no_trust_list, rules_not_loaded, log_fork naming the member,
// checkpoint_unwitnessed; not_ready for a reason without a code).
func (h *nodeHandler) ready(w http.ResponseWriter, r *http.Request) {
	if err := h.n.Ready(); err != nil {
		var fork *node.ForkError
		if errors.As(err, &fork) {
			WriteError(w, h.log, &hcx.Error{Class: hcx.EUnavailable, Code: node.CodeLogFork, Message: fork.Error(),
				Detail: map[string]any{"member": fork.Member, "size": fork.Size}})
			return
		}
		WriteError(w, h.log, unavailable(err))
		return
	}
	WriteJSON(w, http.StatusOK, struct {
		Status  string `json:"status"`
		Applied uint64 `json:"log_applied"`
		Policy  string `json:"policy"`
		node.CheckpointStatus
	}{"ready", h.n.Applied(), h.n.PolicyVersion(), h.n.Checkpoints()})
}

// unavailable is err for a 503 readiness answer: an *hcx.Error of class
// EUnavailable keeps its code, anything else is not_ready with err's text.
func unavailable(err error) *hcx.Error {
	var e *hcx.Error
	if !errors.As(err, &e) || e.Class != hcx.EUnavailable {
		e = hcx.Errorf(hcx.EUnavailable, "not_ready", "%v", err)
	}
	return e
}
