package node

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// TestHistoryV2HoldsEveryKind: every kind of event survives the stored form,
// ids included, and every cut of it is refused.
func TestHistoryV2HoldsEveryKind(t *testing.T) {
	now := time.Date(2026, 11, 24, 8, 0, 0, 123456789, time.UTC)
	h := &history{}
	for i := range 40 {
		at := now.Add(-time.Duration(i) * time.Hour)
		id := fmt.Sprintf("r-%d", i)
		h.add(&Event{Lab: &policy.LabResult{Positive: i%7 == 0, Kind: "pcr", At: at, ID: id}})
		h.add(&Event{Declaration: &policy.Declaration{At: at, TempC: 37.5, Symptoms: []string{"cough", "fever"}, ID: id}})
		h.add(&Event{Vaccination: &policy.Vaccination{At: at, Dose: 1 + i%3, CourseDoses: 2, Product: "BBIBP-CorV", Province: "510000", ID: id}})
		h.add(&Event{Travel: &policy.TravelRecord{At: at, Div: "440106", ID: id}})
		h.add(&Event{CheckIn: &policy.CheckIn{At: at, TempC: 36.6}})
		h.add(&Event{Order: &policy.Order{ID: fmt.Sprintf("o-%d", i%20), Colour: hcx.Red, At: at, LocalConfirmed: true, NationalConfirmed: i%2 == 0, Lifted: i%3 == 0}})
		h.expose(&Exposure{Iss: "110000", Vid: fmt.Sprintf("bj/%d", i), Div: "110105", Level: "medium", From: at.Add(-time.Hour).Truncate(time.Second), To: at.Add(time.Hour).Truncate(time.Second)}, at)
	}
	if len(h.Venues) != maxVenueExposures || h.Venues[0].ID == "" || h.Venues[0].Issuer != "110000" {
		t.Errorf("venue exposures kept: %d (%+v), want %d", len(h.Venues), h.Venues[0], maxVenueExposures)
	}
	if len(h.Orders) != maxOrders {
		t.Errorf("orders kept: %d, want %d", len(h.Orders), maxOrders)
	}
	if len(h.Travel) != 40 {
		t.Errorf("stays kept: %d, want all 40 (bound %d)", len(h.Travel), maxStays)
	}
	for _, l := range [][]any{{len(h.Declarations)}, {len(h.Vaccinations)}, {len(h.CheckIns)}} {
		if l[0].(int) != maxEventsPerClass {
			t.Errorf("a list kept %d, want %d", l[0], maxEventsPerClass)
		}
	}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got history
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(*h) {
		t.Errorf("round trip changed the history:\n got %v\nwant %v", got, *h)
	}
	for cut := range len(b) {
		var x history
		if err := x.UnmarshalBinary(b[:cut]); err == nil {
			t.Fatalf("a history cut to %d of %d bytes decoded", cut, len(b))
		}
	}
}

// TestHistoryReadsVersion2: a value stored before venue exposures (version
// 2: the version 3 layout without its last section) reads as the same
// history, and is written back as version 3.
func TestHistoryReadsVersion2(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	h := &history{}
	h.add(&Event{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: at, ID: "l1"}})
	h.add(&Event{Travel: &policy.TravelRecord{At: at, Div: "440106", ID: "t1"}})
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != historyVersion || b[len(b)-1] != 0 {
		t.Fatalf("version 3 value %x does not end with an empty venues section", b)
	}
	v2 := append([]byte{historyV2}, b[1:len(b)-1]...)
	var got history
	if err := got.UnmarshalBinary(v2); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(*h) {
		t.Errorf("version 2 read as %v, want %v", got, *h)
	}
	if again, _ := got.MarshalBinary(); string(again) != string(b) {
		t.Errorf("version 2 is not written back as version 3")
	}
	// Version 2 bytes followed by a venues section are not version 2.
	if err := got.UnmarshalBinary(append([]byte{historyV2}, b[1:]...)); err == nil {
		t.Error("a version 2 value with bytes after its end decoded")
	}
}

// TestHistoryReadsVersion1: a value stored before ids and the other kinds
// existed reads as the same labs and contacts.
func TestHistoryReadsVersion1(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	b := []byte{historyV1, 3, 0, 1}
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, labPositive|labAntigen, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = append(b, 6)
	b = append(b, "510000"...)
	var h history
	if err := h.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if len(h.Labs) != 1 || !h.Labs[0].Positive || h.Labs[0].Kind != "antigen" || !h.Labs[0].At.Equal(at) ||
		len(h.Contacts) != 1 || h.Contacts[0].Issuer != "510000" || h.Recorded != 3 {
		t.Errorf("version 1 read as %+v", h)
	}
}

// TestTrajectoryExpires: stays older than 60 days leave the history.
func TestTrajectoryExpires(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	h := &history{}
	h.add(&Event{Travel: &policy.TravelRecord{At: now.Add(-61 * 24 * time.Hour), Div: "440106"}})
	h.add(&Event{Travel: &policy.TravelRecord{At: now.Add(-59 * 24 * time.Hour), Div: "440106"}})
	if !h.expire(now) || len(h.Travel) != 1 || !h.Travel[0].At.Equal(now.Add(-59*24*time.Hour)) {
		t.Errorf("after expiry: %+v", h.Travel)
	}
}

// TestStaysOfFourteenBusyDaysAreKept: an itinerary of three cities a day
// for 14 days keeps its oldest stay (a bound of 32 lost it), and the bound
// still holds.
func TestStaysOfFourteenBusyDaysAreKept(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	h := &history{}
	for d := range 14 {
		for _, div := range []hcx.DivisionCode{"440106", "110105", "510104"} {
			h.add(&Event{Travel: &policy.TravelRecord{At: now.Add(-time.Duration(13-d) * 24 * time.Hour), Div: div}})
		}
	}
	if len(h.Travel) != 42 || !h.Travel[0].At.Equal(now.Add(-13*24*time.Hour)) {
		t.Errorf("kept %d stays from %v", len(h.Travel), h.Travel[0].At)
	}
	for range 200 {
		h.add(&Event{Travel: &policy.TravelRecord{At: now, Div: "440106"}})
	}
	if len(h.Travel) != maxStays {
		t.Errorf("kept %d stays, want the bound %d", len(h.Travel), maxStays)
	}
}

// FuzzHistoryDecode: any bytes either fail to decode with an error or
// decode to a history whose stored form (version 3) decodes to the same.
func FuzzHistoryDecode(f *testing.F) {
	h := &history{}
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	h.add(&Event{Lab: &policy.LabResult{Positive: true, Kind: "pcr", At: at, ID: "l1"}})
	h.expose(&Exposure{Iss: "110000", Vid: "bj/1", Div: "110105", Level: "high", From: at.Add(-time.Hour), To: at}, at.Add(-time.Minute))
	b, _ := h.MarshalBinary()
	f.Add(b)
	f.Add(append([]byte{historyV2}, b[1:len(b)-1]...))
	f.Add([]byte{historyV1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h history
		if h.UnmarshalBinary(b) != nil {
			return
		}
		again, err := h.MarshalBinary()
		if err != nil {
			return // a lab kind the codec cannot write cannot be read either
		}
		var h2 history
		if err := h2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoding of %x does not decode: %v", b, err)
		}
		if fmt.Sprint(h) != fmt.Sprint(h2) {
			t.Fatalf("%x read as %v, its re-encoding as %v", b, h, h2)
		}
	})
}
