package web

import (
	"errors"
	"io/fs"
	"net/http/httptest"
	"strings"
	"testing"
)

// The keys the operator's templates build with printf (TestTranslationsComplete).
func init() {
	keyFamilies["op_feed_kind_"] = feedKinds
	keyFamilies["op_order_state_"] = []string{"pending", "in_force", "lifted"}
	keyFamilies["op_risk_level_"] = []string{"high", "medium"}
	keyFamilies["op_device_role_"] = []string{"checkpoint", "feed"}
	keyFamilies["op_appeal_kind_"] = []string{"colour", "record", "reclaim"}
}

// TestOpFieldPutsRefusalsOnTheFormsFields: the API names the reason header
// and list items; the page shows them next to its own inputs.
func TestOpFieldPutsRefusalsOnTheFormsFields(t *testing.T) {
	for _, c := range []struct {
		field  string
		rename map[string]string
		want   string
	}{
		{"X-HCX-Reason", nil, "reason"},
		{"areas[0].from", nil, "from"},
		{"areas[12].div", nil, "div"},
		{"reason", map[string]string{"reason": "decision_reason"}, "decision_reason"},
		{"sub", nil, "sub"},
		// A page with several reason fields puts the header's refusal
		// next to the one its form has (a refusal of a lift showed next
		// to the place-order form's reason before).
		{"X-HCX-Reason", map[string]string{"X-HCX-Reason": "lift-reason"}, "lift-reason"},
		{"X-HCX-Reason", map[string]string{"reason": "decision_reason"}, "reason"},
	} {
		err := opField(&FieldError{Status: 400, Code: "invalid", Field: c.field}, c.rename)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.want || fe.Status != 400 {
			t.Errorf("opField(%q) = %v, want field %q", c.field, err, c.want)
		}
	}
	plain := errors.New("not an API refusal")
	if got := opField(plain, nil); got != plain {
		t.Errorf("opField of another error = %v", got)
	}
}

// TestWithReasonLeavesTheBrowsersRequestAlone: the reason goes on a clone;
// a reason the browser sent itself is replaced, and none is sent for an
// empty field.
func TestWithReasonLeavesTheBrowsersRequestAlone(t *testing.T) {
	r := httptest.NewRequest("POST", "/app/operator/risk-areas", nil)
	r.Header.Set("X-HCX-Reason", "from the browser")
	c := withReason(r, "  CDC bulletin 42 ")
	if got := c.Header.Values("X-HCX-Reason"); len(got) != 1 || got[0] != "CDC bulletin 42" {
		t.Errorf("the clone's reason: %q", got)
	}
	if got := r.Header.Get("X-HCX-Reason"); got != "from the browser" {
		t.Errorf("the browser's request changed: %q", got)
	}
	if got := withReason(r, "  ").Header.Values("X-HCX-Reason"); len(got) != 0 {
		t.Errorf("an empty reason sent %q", got)
	}
}

// TestOnPageShowsEveryRefusal: a refusal naming a field the page has no
// input for is shown at the top of the page, not hidden (the layout shows
// only refusals without a field there; "areas[0]" of a designation listed
// twice, say, was shown nowhere).
func TestOnPageShowsEveryRefusal(t *testing.T) {
	for _, c := range []struct{ page, field, want string }{
		{"operator-risk", "div", "div"},
		{"operator-risk", "areas[0]", ""},
		{"operator-feeds", "Content-Type", ""},
		{"operator-orders", "lift-reason", "lift-reason"},
		{"operator-appeal", "void", ""},
		{"operator-devices", "", ""},
	} {
		fe := &FieldError{Status: 400, Code: "invalid", Field: c.field, Message: "m"}
		if got := onPage(fe, c.page); got.Field != c.want || got.Message != "m" {
			t.Errorf("onPage(%q on %s) names %q, want %q", c.field, c.page, got.Field, c.want)
		}
	}
	// Each field listed is one its template shows a refusal next to.
	for page, fields := range pageFields {
		b, err := fs.ReadFile(templateFS, "templates/"+page+".html")
		if err != nil {
			t.Errorf("pageFields names %s: %v", page, err)
			continue
		}
		for _, f := range fields {
			if !strings.Contains(string(b), `Error "`+f+`"`) {
				t.Errorf("%s.html shows no refusal next to %q", page, f)
			}
		}
	}
}
