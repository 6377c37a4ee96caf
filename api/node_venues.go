package api

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
	qrcode "github.com/skip2/go-qrcode"
)

// Venue code images.
const (
	venuePNGSize  = 512 // pixels, quiet zone included
	venueSVGScale = 8   // SVG user units per module
)

// venuesRules are the routes of venue codes (issue 11 item 1): a manager, a
// resident logged in as themselves, applies for a venue and reads their
// venues and codes (ScopeSelf: a guardian acting for a dependant may not);
// an operator of the province reviews, retires and extends the category
// list, every step in the audit trail; operators and the auditor read.
func (h *nodeHandler) venuesRules() []Rule {
	manager := Grant{Role: auth.RoleResident, Scope: ScopeSelf}
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	auditor := Grant{Role: auth.RoleAuditor, Scope: ScopeAny}
	anyResident := Grant{Role: auth.RoleResident, Scope: ScopeAny}
	readers := []Grant{manager, operator, auditor}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/venue-categories", Priority: PriorityResident, Allow: []Grant{anyResident, operator, auditor}, Handler: h.venueCategories},
		{Method: http.MethodPost, Path: "/v1/venue-categories", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.addVenueCategory},
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/venues", Priority: PriorityResident, Allow: []Grant{manager}, Handler: h.applyVenue},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/venues", Priority: PriorityResident, Allow: readers, Handler: h.managerVenues},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/venues/{vid}", Priority: PriorityResident, Allow: readers, Handler: h.managerVenue},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/venues/{vid}/code", Query: []string{"format"}, Priority: PriorityResident, Allow: readers, Handler: h.venueCode},
		{Method: http.MethodGet, Path: "/v1/venues", Query: []string{"state", "after", "limit"}, Priority: PriorityOperator, Allow: []Grant{operator, auditor}, Handler: h.venuesUnderReview},
		{Method: http.MethodPost, Path: "/v1/venues/{vid}/review", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.reviewVenue},
		{Method: http.MethodPost, Path: "/v1/venues/{vid}/retire", Priority: PriorityOperator, Allow: []Grant{operator}, Audited: true, Handler: h.retireVenue},
	}
}

func (h *nodeHandler) venueCategories(w http.ResponseWriter, r *http.Request) {
	cats, err := h.n.VenueCategories(r.Context())
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"categories": cats})
}

func (h *nodeHandler) addVenueCategory(w http.ResponseWriter, r *http.Request) {
	var c node.VenueCategory
	err := DecodeJSON(w, r, 1<<10, &c)
	var res *node.VenueCategory
	created := false
	if err == nil {
		res, created, err = h.n.AddVenueCategory(r.Context(), c)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	status := http.StatusOK // the same category added again
	if created {
		status = http.StatusCreated
	}
	WriteJSON(w, status, res)
}

func (h *nodeHandler) applyVenue(w http.ResponseWriter, r *http.Request) {
	var a node.VenueApplication
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, 2<<10, &a)
	}
	var v *node.Venue
	if err == nil {
		v, err = h.n.ApplyVenue(r.Context(), sub, a)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusCreated, v)
}

func (h *nodeHandler) managerVenues(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var vs []node.Venue
	if err == nil {
		vs, err = h.n.Venues(r.Context(), sub)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"subject": sub, "venues": vs})
}

func (h *nodeHandler) venueOf(r *http.Request) (*node.Venue, error) {
	sub, err := h.subject(r)
	if err != nil {
		return nil, err
	}
	return h.n.Venue(r.Context(), sub, mux.Vars(r)["vid"])
}

func (h *nodeHandler) managerVenue(w http.ResponseWriter, r *http.Request) {
	v, err := h.venueOf(r)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// venueCode serves a passed venue's code: ?format=text (default) as JSON
// with the QR text, png or svg as a printable image.
func (h *nodeHandler) venueCode(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r, "format")
	format := q["format"]
	if err == nil && format != "" && format != "text" && format != "png" && format != "svg" {
		err = hcx.Invalidf("format", "%q: want text, png or svg", clip(format))
	}
	var v *node.Venue
	if err == nil {
		v, err = h.venueOf(r)
	}
	if err == nil && v.State != node.VenuePassed {
		err = &hcx.Error{Class: hcx.EConflict, Code: "venue_" + v.State, Field: "vid",
			Message: fmt.Sprintf("venue %s is %s: only a passed venue has a code / 场所未通过审核或已注销，没有场所码", v.ID, v.State)}
	}
	var img []byte
	if err == nil && (format == "png" || format == "svg") {
		img, err = venueImage(v, format)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	switch format {
	case "png":
		w.Header().Set("Content-Type", "image/png")
	case "svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		WriteJSON(w, http.StatusOK, map[string]any{"vid": v.ID, "name": v.Name, "code": v.Code})
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", "venue-"+v.ID+"."+format))
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(img)
}

// venueImage renders v's code as a PNG (venuePNGSize square) or an SVG
// with the venue's name under it.
func venueImage(v *node.Venue, format string) ([]byte, error) {
	q, err := qrcode.New(v.Code, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("venue %s: QR: %w", v.ID, err)
	}
	if format == "png" {
		return q.PNG(venuePNGSize)
	}
	bm := q.Bitmap() // with its quiet zone
	side := len(bm) * venueSVGScale
	textH := 6 * venueSVGScale
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, side, side+textH, side, side+textH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, side, side+textH)
	for y, row := range bm {
		for x, dark := range row {
			if dark {
				fmt.Fprintf(&b, "M%d %dh%dv%dh-%dz", x*venueSVGScale, y*venueSVGScale, venueSVGScale, venueSVGScale, venueSVGScale)
			}
		}
	}
	b.WriteString(`"/><text x="50%" y="`)
	fmt.Fprintf(&b, `%d" text-anchor="middle" font-family="sans-serif" font-size="%d">`, side+textH/2, 3*venueSVGScale)
	if err := xml.EscapeText(&b, []byte(v.Name)); err != nil {
		return nil, err
	}
	b.WriteString("</text></svg>\n")
	return b.Bytes(), nil
}

// venuesUnderReview serves GET /v1/venues?state=under_review&after=&limit=:
// the applications awaiting an operator, oldest first.
func (h *nodeHandler) venuesUnderReview(w http.ResponseWriter, r *http.Request) {
	q, err := queryParams(r, "state", "after", "limit")
	if err == nil && q["state"] != node.VenueUnderReview {
		err = hcx.Invalidf("state", "%q: want state=under_review; a manager's venues are at GET /v1/residents/{sub}/venues", clip(q["state"]))
	}
	limit := node.DefaultVenuePage
	if err == nil {
		limit, err = queryLimit(q, node.DefaultVenuePage, node.MaxVenuePage)
	}
	var page *node.VenuePage
	if err == nil {
		page, err = h.n.VenuesUnderReview(r.Context(), q["after"], limit)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}

func (h *nodeHandler) reviewVenue(w http.ResponseWriter, r *http.Request) {
	var rv node.VenueReview
	err := DecodeJSON(w, r, 2<<10, &rv)
	var v *node.Venue
	if err == nil {
		v, err = h.n.ReviewVenue(r.Context(), mux.Vars(r)["vid"], rv)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

func (h *nodeHandler) retireVenue(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	err := DecodeJSON(w, r, 2<<10, &req)
	var v *node.Venue
	if err == nil {
		v, err = h.n.RetireVenue(r.Context(), mux.Vars(r)["vid"], req.Reason)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, v)
}

// queryLimit reads a page's ?limit= from q: def when absent, else a whole
// number from 1 to max (400 naming limit otherwise).
func queryLimit(q map[string]string, def, max int) (int, error) {
	v, ok := q["limit"]
	if !ok {
		return def, nil
	}
	limit, err := strconv.Atoi(v)
	if err != nil || limit < 1 || limit > max {
		return 0, hcx.Invalidf("limit", "%q: want a whole number from 1 to %d", clip(v), max)
	}
	return limit, nil
}
