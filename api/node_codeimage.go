package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/node"
	qrcode "github.com/skip2/go-qrcode"
)

// QR images of a resident's code (issue 12 item 2): GET
// /v1/residents/{sub}/code?format=png|svg serves a freshly issued code as an
// image, its text exactly the "code" of the JSON answer, in byte mode (see
// docs/decisions.md, "Issue 12": numeric mode was measured and not taken).
const (
	// CodePNGModule is the PNG's pixels per module: whole pixels keep
	// every module the same width, which scanners like.
	CodePNGModule = 6
	// codeSVGScale is the SVG's user units per module.
	codeSVGScale = 8
	// CodeImageMaxAge bounds how long a client or cache may keep a code
	// image: a dynamic code is to be fetched again after 30 s.
	CodeImageMaxAge = 30 * time.Second
	// CodeECLevel is the symbols' error correction: Medium (15 %).
	CodeECLevel = qrcode.Medium
)

// checkCodeFormat checks ?format= of the code route: json (the default),
// png or svg.
func checkCodeFormat(f string) error {
	switch f {
	case "", "json", "png", "svg":
		return nil
	}
	return hcx.Invalidf("format", "%q: want json, png or svg", clip(f))
}

// codeImage writes c as a QR image. The answer says how long it may be
// kept: Cache-Control private with max-age up to c's refresh time and at
// most CodeImageMaxAge; ETag names the code (each issue is a new signature,
// so a conditional request always gets a new image); X-HCX-Refresh-At and
// X-HCX-Expires-At are c's times, X-HCX-Colour its colour, and X-HCX-Code
// its text, for an app that shows it beside the image or copies it.
func (h *nodeHandler) codeImage(w http.ResponseWriter, c *node.Code, format string) {
	img, err := CodeImage(c.QR, format)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	maxAge := min(CodeImageMaxAge, c.RefreshAt.Sub(c.IssuedAt))
	sum := sha256.Sum256([]byte(c.QR))
	hd := w.Header()
	if format == "png" {
		hd.Set("Content-Type", "image/png")
	} else {
		hd.Set("Content-Type", "image/svg+xml")
	}
	hd.Set("Cache-Control", "private, max-age="+strconv.Itoa(max(0, int(maxAge/time.Second))))
	hd.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	hd.Set("X-HCX-Refresh-At", c.RefreshAt.UTC().Format(time.RFC3339))
	hd.Set("X-HCX-Expires-At", c.ExpiresAt.UTC().Format(time.RFC3339))
	hd.Set("X-HCX-Colour", string(c.Colour))
	hd.Set("X-HCX-Code", c.QR)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Disposition", `inline; filename="hcx-code.`+format+`"`)
	hd.Set("Content-Length", strconv.Itoa(len(img)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(img)
}

// CodeImage renders a code's QR text as a PNG (CodePNGModule pixels per
// module, quiet zone included) or an SVG, byte mode at CodeECLevel.
func CodeImage(text, format string) ([]byte, error) {
	q, err := qrcode.New(text, CodeECLevel)
	if err != nil {
		return nil, fmt.Errorf("code QR: %w", err)
	}
	if format == "png" {
		return q.PNG(-CodePNGModule)
	}
	return qrSVG(q.Bitmap(), codeSVGScale), nil
}

// qrSVG draws a QR bitmap (quiet zone included) as an SVG path, scale user
// units per module, one horizontal run of dark modules per subpath.
func qrSVG(bm [][]bool, scale int) []byte {
	side := len(bm) * scale
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, side, side, len(bm), len(bm))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, len(bm), len(bm))
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x, y, run, run)
			x += run
		}
	}
	b.WriteString("\"/></svg>\n")
	return b.Bytes()
}
