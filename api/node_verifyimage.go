package api

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/qrimg"
)

// QR images in (issue 12 item 3; docs/decisions.md, "Issue 12: QR images
// in"): POST /v1/verify with Content-Type image/jpeg or image/png takes the
// photo of a code as its whole body, reads the one QR code in it (package
// qrimg) and answers exactly what the JSON form answers for that text. The
// body is bounded by MaxImageBody; the dimensions and the number of codes
// by qrimg. Decoding costs some 25 ms of a core, about a hundred
// verifications, so at most one decode per core runs at once; one more is
// refused at once with 503 overloaded and Retry-After (the decoded pixels
// of a 16 Mpixel image are up to 64 MB, so a queue would be memory too).
const (
	// MaxImageBody bounds an image body: qrimg.MaxBytes, 8 MiB, which is
	// also the request token's body limit.
	MaxImageBody = qrimg.MaxBytes
)

// imageMediaType says whether r's body is an image: image/jpeg or
// image/png. Any other image/ type is refused naming Content-Type; every
// other type (none, application/json, and the form type curl -d sends, as
// the README's walkthrough does) is the JSON form, as before images.
func imageMediaType(r *http.Request) (bool, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return false, nil
	case mt == "image/jpeg" || mt == "image/png":
		return true, nil
	case strings.HasPrefix(mt, "image/"):
		e := hcx.Invalidf("Content-Type", "%q: an image must be image/jpeg or image/png (a photo of the code)", clip(ct))
		e.Code = "invalid_content_type" // Invalidf would spell it invalid__ontent__ype
		return false, e
	}
	return false, nil
}

// imageCode reads the code text from an image body, under a decode slot.
func (h *nodeHandler) imageCode(w http.ResponseWriter, r *http.Request) (string, error) {
	select {
	case h.decodes <- struct{}{}:
		defer func() { <-h.decodes }()
	default:
		return "", retryError(hcx.EUnavailable, "overloaded", time.Second,
			"the node is decoding %d images, its most at once; retry after the Retry-After delay", cap(h.decodes))
	}
	b, err := ReadBody(w, r, MaxImageBody)
	if err != nil {
		var e *hcx.Error
		if errors.As(err, &e) && e.Class == hcx.ETooLarge {
			return "", &hcx.Error{Class: hcx.ETooLarge, Code: qrimg.CodeTooLarge, Field: qrimg.Field, Message: e.Message}
		}
		return "", err
	}
	return qrimg.DecodeBytes(b)
}
