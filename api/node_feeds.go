package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	"github.com/hcxfed/hcx/policy"
)

// Bulk feeds (docs/decisions.md, "Issue 10: bulk feeds"): a bureau's feed
// or an operator posts many records in one request, one JSON object per
// line (application/x-ndjson). Each request is parsed in full, within its
// limits, before anything is written: a body over MaxFeedBody or with more
// than MaxFeedLines lines is refused with 413 and writes nothing. Then the
// good lines go to the node's fast path (IngestBatch, RegisterBatch) and
// the answer, once every accepted line is synced, counts accepted lines,
// duplicates (a record id recorded before: a feed sent twice counts once)
// and errors, with the line number, field and code of the first
// MaxFeedErrors. Feeds larger than one request are sent as many requests
// of whole lines (hcx feed push does it); a retried request counts each
// record once.
//
// A request token's bh covers the whole body; auth.RequestTokens reads and
// hashes it, bounded by auth.DefaultTokenBody (8 MiB, the same as
// MaxFeedBody), before the handler runs, so a signed body is verified
// before any line of it is committed.

// Per-request limits of a bulk feed.
const (
	MaxFeedBody   = auth.DefaultTokenBody // bytes of one request
	MaxFeedLines  = 20_000                // lines of one request
	MaxFeedLine   = 16 << 10              // bytes of one line
	MaxFeedErrors = 100                   // line errors shown in one answer; the rest are counted
)

// Media types of feeds.
const (
	mediaNDJSON     = "application/x-ndjson"
	mediaFHIRNDJSON = "application/fhir+ndjson"
	mediaFHIRJSON   = "application/fhir+json"
)

// eachLine calls f with the number and bytes of every non-blank line of
// the body, within the feed's limits (413 past them).
func eachLine(w http.ResponseWriter, r *http.Request, f func(n int, line []byte)) error {
	sc := bufio.NewScanner(http.MaxBytesReader(w, r.Body, MaxFeedBody))
	sc.Buffer(make([]byte, 0, 64<<10), MaxFeedLine)
	n := 0
	for sc.Scan() {
		n++
		if n > MaxFeedLines {
			return hcx.Errorf(hcx.ETooLarge, "too_many_lines", "a feed request has at most %d lines; send the rest in another request (hcx feed push splits files)", MaxFeedLines)
		}
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			f(n, line)
		}
	}
	if err := sc.Err(); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return errFeedTooLarge()
		case errors.Is(err, bufio.ErrTooLong):
			return hcx.Errorf(hcx.ETooLarge, "line_too_long", "line %d is over %d bytes", n+1, MaxFeedLine)
		}
		return hcx.Errorf(hcx.EInvalid, "bad_body", "could not read the request body: %v", err)
	}
	if n == 0 {
		return hcx.Invalidf("body", "the feed is empty: send one JSON object per line")
	}
	return nil
}

func errFeedTooLarge() error {
	return hcx.Errorf(hcx.ETooLarge, "too_large", "a feed request has at most %d bytes; send the rest in another request (hcx feed push splits files)", int64(MaxFeedBody))
}

// Feed kinds: the last element of the route.
const (
	FeedLabs         = "labs"
	FeedVaccinations = "vaccinations"
	FeedItineraries  = "itineraries"
	FeedContacts     = "contacts"
	FeedResidents    = "residents"
)

func (h *nodeHandler) feedsRules() []Rule {
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	feed := Grant{Role: auth.RoleFeed, Scope: ScopeProvince}
	var rules []Rule
	for _, kind := range []string{FeedLabs, FeedVaccinations, FeedItineraries, FeedContacts} {
		rules = append(rules, Rule{Method: http.MethodPost, Path: "/v1/feeds/" + kind, Priority: PriorityFeed, Allow: []Grant{feed, operator}, Audited: true, Handler: h.feedHandler(kind)})
	}
	// Registration needs an operator's in-person check of every document:
	// no machine registers residents.
	rules = append(rules, Rule{Method: http.MethodPost, Path: "/v1/feeds/" + FeedResidents, Priority: PriorityFeed, Allow: []Grant{operator}, Audited: true, Handler: h.feedHandler(FeedResidents)})
	return rules
}

// FeedResult is the answer to a bulk feed request.
type FeedResult struct {
	Lines      int         `json:"lines"` // lines read, blank ones included
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Failed     int         `json:"failed"`
	Errors     []LineError `json:"errors"` // the first MaxFeedErrors
	// ErrorsOmitted counts the line errors beyond Errors.
	ErrorsOmitted int `json:"errors_omitted,omitempty"`
}

// LineError is what is wrong with one line of a feed.
type LineError struct {
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (res *FeedResult) fail(line int, err error) {
	res.Failed++
	le := LineError{Line: line, Code: "invalid", Message: err.Error()}
	var he *hcx.Error
	if errors.As(err, &he) {
		le.Field, le.Code, le.Message = he.Field, he.Code, he.Message
		if le.Field == "body" { // the strict reader's word for the whole object: here, the line
			le.Field = "line"
		}
	}
	res.Errors = append(res.Errors, le)
}

// person names the resident of a record: by subject, or by document (the
// node computes the subject; feeds do not hold the subject key).
type person struct {
	Sub       hcx.Subject `json:"sub,omitempty"`
	DocType   hcx.DocType `json:"doc_type,omitempty"`
	DocNumber string      `json:"doc_number,omitempty"`
}

type labLine struct {
	ID        string      `json:"id"`
	Sub       hcx.Subject `json:"sub,omitempty"`
	DocType   hcx.DocType `json:"doc_type,omitempty"`
	DocNumber string      `json:"doc_number,omitempty"`
	At        time.Time   `json:"at"`
	Result    string      `json:"result"` // positive, negative
	Kind      string      `json:"kind,omitempty"`
}

type vaccinationLine struct {
	ID          string           `json:"id"`
	Sub         hcx.Subject      `json:"sub,omitempty"`
	DocType     hcx.DocType      `json:"doc_type,omitempty"`
	DocNumber   string           `json:"doc_number,omitempty"`
	At          time.Time        `json:"at"`
	Dose        int              `json:"dose"`
	CourseDoses int              `json:"course_doses"`
	Product     string           `json:"product,omitempty"`
	Province    hcx.ProvinceCode `json:"province,omitempty"`
}

type itineraryLine struct {
	ID        string           `json:"id"`
	Sub       hcx.Subject      `json:"sub,omitempty"`
	DocType   hcx.DocType      `json:"doc_type,omitempty"`
	DocNumber string           `json:"doc_number,omitempty"`
	At        time.Time        `json:"at"`
	Div       hcx.DivisionCode `json:"div"`
}

type contactLine struct {
	ID        string      `json:"id"`
	Sub       hcx.Subject `json:"sub,omitempty"`
	DocType   hcx.DocType `json:"doc_type,omitempty"`
	DocNumber string      `json:"doc_number,omitempty"`
	At        time.Time   `json:"at"`
}

// parseFeedLine reads one line of kind into an event and the person it is
// about.
func (h *nodeHandler) parseFeedLine(kind string, line []byte) (person, node.Event, error) {
	var p person
	var ev node.Event
	var id string
	var err error
	switch kind {
	case FeedLabs:
		var l labLine
		if err = decodeObject(line, &l); err == nil {
			p, id = person{l.Sub, l.DocType, l.DocNumber}, l.ID
			if l.Result != "positive" && l.Result != "negative" {
				err = hcx.Invalidf("result", "result %q: want positive or negative", l.Result)
			}
			ev.Lab = &policy.LabResult{ID: l.ID, At: l.At, Positive: l.Result == "positive", Kind: l.Kind}
		}
	case FeedVaccinations:
		var l vaccinationLine
		if err = decodeObject(line, &l); err == nil {
			p, id = person{l.Sub, l.DocType, l.DocNumber}, l.ID
			ev.Vaccination = &policy.Vaccination{ID: l.ID, At: l.At, Dose: l.Dose, CourseDoses: l.CourseDoses, Product: l.Product, Province: l.Province}
		}
	case FeedItineraries:
		var l itineraryLine
		if err = decodeObject(line, &l); err == nil {
			p, id = person{l.Sub, l.DocType, l.DocNumber}, l.ID
			ev.Travel = &policy.TravelRecord{ID: l.ID, At: l.At, Div: l.Div}
		}
	case FeedContacts:
		var l contactLine
		if err = decodeObject(line, &l); err == nil {
			p, id = person{l.Sub, l.DocType, l.DocNumber}, l.ID
			ev.Contact = &policy.ContactFlag{ID: l.ID, At: l.At, Issuer: h.n.Province()}
		}
	}
	if err == nil && id == "" {
		err = hcx.Invalidf("id", "every record of a feed has a record id (the lab's sample number, the registry's dose id...): a feed sent twice then counts once")
	}
	if err == nil && p == (person{}) {
		err = hcx.Invalidf("doc_type", "the record names nobody: name the person by doc_type and doc_number (or sub)")
	}
	return p, ev, err
}

// subjectOf is the resident a line names: by subject or by document, not
// both.
func (h *nodeHandler) subjectOf(p person) (hcx.Subject, error) {
	switch {
	case p.Sub != "" && (p.DocType != "" || p.DocNumber != ""):
		return "", hcx.Invalidf("sub", "name the person by sub or by doc_type and doc_number, not both")
	case p.Sub != "":
		return p.Sub, p.Sub.Validate()
	case p.DocType == "":
		return "", hcx.Invalidf("doc_type", "name the person by doc_type and doc_number (or sub)")
	}
	return h.n.SubjectOf(p.DocType, p.DocNumber)
}

func (h *nodeHandler) feedHandler(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := h.feed(w, r, kind)
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
		WriteJSON(w, http.StatusOK, res)
	}
}

// feed reads the whole request within its limits, then writes its good
// lines in batches.
func (h *nodeHandler) feed(w http.ResponseWriter, r *http.Request, kind string) (*FeedResult, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = r.Header.Get("Content-Type")
	}
	fhirKind := kind == FeedLabs || kind == FeedVaccinations
	parse := h.parseFeedLine
	switch {
	case mt == mediaNDJSON:
	case (mt == mediaFHIRNDJSON || mt == mediaFHIRJSON) && fhirKind:
		parse = h.parseFHIR
	default:
		want := mediaNDJSON + " (one JSON object per line)"
		if fhirKind {
			want += ", " + mediaFHIRNDJSON + " or a Bundle as " + mediaFHIRJSON
		}
		return nil, &hcx.Error{Class: hcx.EInvalid, Code: "unsupported_media_type", Field: "Content-Type",
			Message: fmt.Sprintf("a %s feed is %s, not %q", kind, want, r.Header.Get("Content-Type"))}
	}
	res := &FeedResult{Errors: []LineError{}}
	type pending struct {
		line int
		rec  node.BatchRecord
		reg  node.RegisterRequest
	}
	var good []pending
	each := eachLine
	if mt == mediaFHIRJSON {
		each = eachBundleEntry
	}
	err = each(w, r, func(n int, line []byte) {
		res.Lines = n
		if kind == FeedResidents {
			var req node.RegisterRequest
			if err := decodeObject(line, &req); err != nil {
				res.fail(n, err)
				return
			}
			good = append(good, pending{line: n, reg: req})
			return
		}
		p, ev, err := parse(kind, line)
		var sub hcx.Subject
		if err == nil {
			sub, err = h.subjectOf(p)
		}
		if err != nil {
			res.fail(n, err)
			return
		}
		good = append(good, pending{line: n, rec: node.BatchRecord{Sub: sub, Event: ev}})
	})
	if err != nil {
		return nil, err
	}
	const batch = 1000
	for start := 0; start < len(good); start += batch {
		chunk := good[start:min(start+batch, len(good))]
		var out []error
		if kind == FeedResidents {
			reqs := make([]node.RegisterRequest, len(chunk))
			for i := range chunk {
				reqs[i] = chunk[i].reg
			}
			out, err = h.n.RegisterBatch(r.Context(), reqs)
		} else {
			recs := make([]node.BatchRecord, len(chunk))
			for i := range chunk {
				recs[i] = chunk[i].rec
			}
			out, err = h.n.IngestBatch(r.Context(), recs)
		}
		if err != nil {
			// Earlier batches are on disk; a retry of the whole request
			// counts them as duplicates.
			return nil, err
		}
		for i, e := range out {
			switch {
			case e == nil:
				res.Accepted++
			case errors.Is(e, node.ErrDuplicateRecord):
				res.Duplicates++
			default:
				res.fail(chunk[i].line, e)
			}
		}
	}
	// Errors of all lines are kept until here (at most MaxFeedLines), so
	// that the answer shows the first MaxFeedErrors by line number.
	slices.SortStableFunc(res.Errors, func(a, b LineError) int { return a.Line - b.Line })
	if len(res.Errors) > MaxFeedErrors {
		res.ErrorsOmitted = len(res.Errors) - MaxFeedErrors
		res.Errors = res.Errors[:MaxFeedErrors:MaxFeedErrors]
	}
	return res, nil
}
