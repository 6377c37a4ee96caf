package offline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// ConsistencyProofHeader is the response header carrying the proof from the
// device's log size to the bundle's (api.ConsistencyProofHeader).
const ConsistencyProofHeader = "Hcx-Consistency-Proof"

// maxErrorBody bounds an error answer read from the node.
const maxErrorBody = 64 << 10

// Sync downloads the node's newest bundle as the checkpoint device signer
// (GET nodeURL/v1/verify/bundle?from=S, signed with a request token) and
// installs it (Install: every check, then an atomic rename). It reports
// whether the bundle changed; progress, if set, is called as bytes arrive
// with the total (-1 if unknown).
func (d *Device) Sync(ctx context.Context, hc *http.Client, nodeURL string, signer *certs.Signer, now time.Time, progress func(done, total int64)) (bool, error) {
	u := strings.TrimSuffix(nodeURL, "/") + "/v1/verify/bundle"
	st := d.State()
	if st != nil {
		u += "?from=" + strconv.FormatUint(st.Header.Size, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("--node: %w", err)
	}
	if st != nil && st.ETag != "" {
		req.Header.Set("If-None-Match", st.ETag)
	}
	if err := auth.SignRequest(req, nil, signer, now); err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("download the bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return false, nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return false, fmt.Errorf("the node answered %d: %s", resp.StatusCode, e.Error)
		}
		return false, fmt.Errorf("the node answered %d: %.200s", resp.StatusCode, b)
	}
	var p [][]byte
	if v := resp.Header.Get(ConsistencyProofHeader); v != "" {
		for i, s := range strings.Split(v, ",") {
			h, err := base64.StdEncoding.Strict().DecodeString(s)
			if err != nil || len(h) != 32 || i >= 64 {
				return false, fmt.Errorf("the node's %s header is not base64 32-byte hashes", ConsistencyProofHeader)
			}
			p = append(p, h)
		}
	}
	var body io.Reader = resp.Body
	if progress != nil {
		body = &progressReader{r: resp.Body, total: resp.ContentLength, f: progress}
	}
	if err := d.install(body, p, resp.Header.Get("ETag"), now); err != nil {
		return false, err
	}
	return true, nil
}

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	f     func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.f(p.done, p.total)
	return n, err
}
