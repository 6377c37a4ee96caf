package api

import (
	"net/http"
	"strconv"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// Check history (issue 11 item 4): who checked the resident's code in the
// last 30 days — time, province, verifying unit — for the resident and a
// guardian holding a delegation (docs/decisions.md, "Issue 11: check
// history").
func (h *nodeHandler) checksRules() []Rule {
	resident := Grant{Role: auth.RoleResident, Scope: ScopeSelfOrDependant}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/residents/{sub}/checks", Query: []string{"after", "limit"}, Priority: PriorityResident, Allow: []Grant{resident}, Handler: h.checks},
	}
}

// defaultChecksPage is the page length when the query names none.
const defaultChecksPage = 50

func (h *nodeHandler) checks(w http.ResponseWriter, r *http.Request) {
	sub, err := h.subject(r)
	var q map[string]string
	if err == nil {
		q, err = queryParams(r, "after", "limit")
	}
	limit := defaultChecksPage
	if v, ok := q["limit"]; ok && err == nil {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > node.MaxChecksPage {
			err = hcx.Invalidf("limit", "%q: want a whole number from 1 to %d", clip(v), node.MaxChecksPage)
		}
	}
	var page *node.ChecksPage
	if err == nil {
		page, err = h.n.Checks(r.Context(), sub, q["after"], limit)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, page)
}
