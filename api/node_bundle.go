package api

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// Offline verification bundles (issue 12 item 4; PROTOCOL.md §9): a
// checkpoint device of this province downloads the node's newest bundle
// while online. With ?from=N (the log size of the bundle it has) the answer
// carries the consistency proof from N to the bundle's size in the
// Hcx-Consistency-Proof header (base64 hashes, comma-separated), fetched from
// the hub; N larger than the node's log is a 409. The ETag is the header's
// hash, so If-None-Match answers 304 when nothing changed.
const (
	// MaxBundleDownloads bounds bundle downloads in flight; one more is
	// refused at once with 503 and Retry-After.
	MaxBundleDownloads = 4
	// ConsistencyProofHeader carries the from-proof.
	ConsistencyProofHeader = "Hcx-Consistency-Proof"
)

func (h *nodeHandler) bundleRules() []Rule {
	checkpoint := Grant{Role: auth.RoleCheckpoint, Scope: ScopeProvince}
	return []Rule{
		{Method: http.MethodGet, Path: "/v1/verify/bundle", Query: []string{"from"}, Priority: PriorityCheckpoint, Allow: []Grant{checkpoint}, Handler: h.verifyBundle},
	}
}

func (h *nodeHandler) verifyBundle(w http.ResponseWriter, r *http.Request) {
	if err := h.serveBundle(w, r); err != nil {
		WriteError(w, h.log, err)
	}
}

func (h *nodeHandler) serveBundle(w http.ResponseWriter, r *http.Request) error {
	q, err := queryParams(r, "from")
	if err != nil {
		return err
	}
	var from uint64
	if v, ok := q["from"]; ok {
		if from, err = strconv.ParseUint(v, 10, 64); err != nil {
			return hcx.Invalidf("from", "%q: want the log size of the bundle the device has, a whole number", clip(v))
		}
	}
	select {
	case h.bundles <- struct{}{}:
		defer func() { <-h.bundles }()
	default:
		return retryError(hcx.EUnavailable, "overloaded", 5*time.Second,
			"the node is sending %d bundles, its most at once; retry after the Retry-After delay", cap(h.bundles))
	}
	b, err := h.n.VerificationBundle()
	if err != nil {
		return err
	}
	if from > b.Size {
		e := hcx.Errorf(hcx.EConflict, "bundle_newer", "your bundle (log size %d) is newer than this node's log (size %d); keep it, or sync from another node", from, b.Size)
		e.Field = "from"
		return e
	}
	if from > 0 && from < b.Size {
		p, err := h.n.ConsistencyProof(r.Context(), from, b.Size)
		if err != nil {
			return hcx.Errorf(hcx.EUnavailable, "hub_unavailable", "the hub could not give the consistency proof from %d to %d: %v; retry later", from, b.Size, err)
		}
		hs := make([]string, len(p))
		for i, x := range p {
			hs[i] = base64.StdEncoding.EncodeToString(x)
		}
		w.Header().Set(ConsistencyProofHeader, strings.Join(hs, ","))
	}
	f, err := os.Open(b.Path)
	if errors.Is(err, os.ErrNotExist) {
		return retryError(hcx.EUnavailable, "bundle_rebuilt", time.Second, "the bundle was replaced while it was being sent; retry")
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("ETag", b.ETag)
	w.Header().Set("Content-Type", "application/vnd.hcx.bundle")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", b.Built, f)
	return nil
}
