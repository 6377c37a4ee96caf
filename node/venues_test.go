package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

func managerCtx(sub hcx.Subject) context.Context {
	return auth.NewContext(context.Background(), residentPrincipal(sub))
}

func testUSCC(first16 string) string {
	s := first16 + string(hcx.OrgCodeCheckChar(first16[8:16]))
	return s + string(hcx.USCCCheckChar(s))
}

func wantVenueErr(t *testing.T, what string, err error, class hcx.ErrorCode, code string) {
	t.Helper()
	var e *hcx.Error
	if !errors.As(err, &e) || e.Class != class || e.Code != code {
		t.Errorf("%s: %v, want %s %s", what, err, class, code)
	}
}

// The node refuses an application by anyone but the manager in their own
// name, even past the gate; two managers racing for one venue get one code;
// a manager holds at most MaxVenuesPerManager venues. Refusals write
// nothing.
func TestVenueApplicationsAreTheManagersOwnOnePerVenueAndBounded(t *testing.T) {
	n := openTestNode(t, newTestPKI(t, "440000"), "440000", t.TempDir(), time.Now)
	t.Cleanup(func() { n.Close() })
	subs := registerN(t, n, 3)
	a, b := subs[0], subs[1]
	app := VenueApplication{Name: "天河城", Division: "440106", Category: "mall", USCC: testUSCC("9144010600000000")}

	before := n.StoreVersion()
	guardian := auth.NewContext(context.Background(), residentPrincipal(b))
	_, err := n.ApplyVenue(guardian, a, app)
	wantVenueErr(t, "a resident applying in another's name", err, hcx.EForbidden, "venue_not_by_proxy")
	_, err = n.ApplyVenue(testCtx, a, app)
	wantVenueErr(t, "an operator applying", err, hcx.EForbidden, "venue_not_by_proxy")
	_, err = n.ApplyVenue(context.Background(), a, app)
	if !errors.Is(err, ErrNoActor) {
		t.Errorf("no principal: %v", err)
	}
	if after := n.StoreVersion(); after != before {
		t.Errorf("refusals wrote: %d -> %d", before, after)
	}

	// Two managers of one entity apply for the same venue at once: one
	// code.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, sub := range []hcx.Subject{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.ApplyVenue(managerCtx(sub), sub, app)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("racing applications: %v, %v; want exactly one to pass", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil {
			wantVenueErr(t, "the second application", err, hcx.EConflict, "venue_exists")
		}
	}

	// The bound per manager.
	c := subs[2]
	for i := range MaxVenuesPerManager {
		taxi := VenueApplication{Name: fmt.Sprintf("粤A%05d", i), Division: "440106", Category: "taxi", USCC: app.USCC, Unit: "广州出租"}
		if _, err := n.ApplyVenue(managerCtx(c), c, taxi); err != nil {
			t.Fatalf("taxi %d: %v", i, err)
		}
	}
	before = n.StoreVersion()
	_, err = n.ApplyVenue(managerCtx(c), c, VenueApplication{Name: "粤B00001", Division: "440106", Category: "taxi", USCC: app.USCC, Unit: "广州出租"})
	wantVenueErr(t, "one venue too many", err, hcx.EConflict, "too_many_venues")
	if after := n.StoreVersion(); after != before {
		t.Errorf("the refusal wrote: %d -> %d", before, after)
	}
	vs, err := n.Venues(context.Background(), c)
	if err != nil || len(vs) != MaxVenuesPerManager {
		t.Errorf("Venues: %d %v", len(vs), err)
	}
}
