package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// Venue scans (issue 11, item 2; docs/decisions.md "Issue 11: scans"): a
// resident, or a guardian for a dependant, posts the text of a venue code
// scanned at an entrance and gets the unveiled code; the resident's own
// trajectory list of the last 60 days.
func (h *nodeHandler) scansRules() []Rule {
	resident := Grant{Role: auth.RoleResident, Scope: ScopeSelfOrDependant}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/residents/{sub}/scans", Priority: PriorityResident, Allow: []Grant{resident}, Audited: true, Handler: h.scan},
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/scans", Query: []string{"limit"}, Priority: PriorityResident, Allow: []Grant{resident}, Handler: h.scans},
	}
}

// maxScanBody fits a venue code (4 KB of JWS) and an offline time.
const maxScanBody = 8 << 10

func (h *nodeHandler) scan(w http.ResponseWriter, r *http.Request) {
	var req node.ScanRequest
	sub, err := h.subject(r)
	if err == nil {
		err = DecodeJSON(w, r, maxScanBody, &req)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	res, err := h.n.Scan(r.Context(), sub, &req)
	if err != nil {
		writeScanError(w, r, h, err)
		return
	}
	WriteJSON(w, http.StatusOK, res)
}

// writeScanError answers a refused venue code in the caller's language
// (Accept-Language: zh, en, ja, ko), with every language under "messages";
// the reason a code was refused goes to the log only.
func writeScanError(w http.ResponseWriter, r *http.Request, h *nodeHandler, err error) {
	var texts hcx.Texts
	var code string
	switch {
	case errors.Is(err, exchange.ErrNotVenueCode):
		texts, code = node.NotVenueCodeText, exchange.ErrNotVenueCode.Code
	case errors.Is(err, node.ErrVenueRetired):
		texts, code = node.VenueRetiredText, node.ErrVenueRetired.Code
	default:
		WriteError(w, h.log, err)
		return
	}
	h.log.Info("venue code refused", "err", err.Error())
	lang := hcx.ParseLang(r.Header.Get("Accept-Language"))
	messages := make(map[hcx.Lang]string, len(hcx.Langs))
	for _, l := range hcx.Langs {
		messages[l] = texts.In(l)
	}
	w.Header().Set("Content-Language", string(lang))
	WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{
		"code": code, "message": texts.In(lang), "messages": messages}})
}

func (h *nodeHandler) scans(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var q map[string]string
	if err == nil {
		q, err = queryParams(r, "limit")
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	limit := 100
	if v, ok := q["limit"]; ok {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > node.MaxScansListed {
			WriteError(w, h.log, hcx.Invalidf("limit", "%q: want a whole number from 1 to %d", clip(v), node.MaxScansListed))
			return
		}
	}
	list, err := h.n.Scans(r.Context(), sub, limit)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"scans": list})
}
