package consensus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// The reason label of hcx_hub_rejected_envelopes_total is the refusal's
// code from a fixed list, whatever the error: an invalid_<field> is
// "invalid", an unlisted code or an untyped error "other".
func TestRejectReasonsStayBounded(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{classify(fmt.Errorf("open: %w", certs.ErrSignature)), "bad_signature"},
		{classify(certs.ErrUnknownKey), "unknown_issuer"},
		{seqConflict("440000", 3, 2, "is not the next"), "sequence_conflict"},
		{checkSkew(0, 1_000_000, "submitted"), "clock_skew"},
		{hcx.Invalidf("atts", "too many"), "invalid"},
		{hcx.Invalidf("iss", "unknown province"), "invalid"},
		{hcx.Errorf(hcx.EConflict, "some_future_code", "x"), "other"},
		{errors.New("untyped"), "other"},
	} {
		if got := rejectReason(tc.err); got != tc.want {
			t.Errorf("rejectReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
