package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// postFeed posts an NDJSON feed as who; postFeedAs, a body of type ctype.
// Both return the status, the result (on 200) and the error code
// (otherwise).
func postFeed(t *testing.T, f *federation, who caller, kind string, body []byte) (int, api.FeedResult, string) {
	t.Helper()
	return postFeedAs(t, f, who, kind, "application/x-ndjson", body)
}

// auditSeq is the node's last audit entry: every write for a caller adds
// one (the store's version also moves with the node's background work).
func auditSeq(t *testing.T, n *node.Node) uint64 {
	t.Helper()
	h, err := n.VerifyAuditTrail()
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

func ndjson(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func lineErrors(res api.FeedResult) string {
	var parts []string
	for _, e := range res.Errors {
		parts = append(parts, fmt.Sprintf("%d:%s:%s", e.Line, e.Field, e.Code))
	}
	return strings.Join(parts, " ")
}

// TestBulkFeedsKeepGoodLinesNameBadOnesAndCountResentOnce: an operator
// registers residents in bulk, the province's lab feed posts results by
// document; each bad line is named by number, field and code and the good
// ones are kept, decided and durable; the same feed sent again counts once
// and writes nothing.
func TestBulkFeedsKeepGoodLinesNameBadOnesAndCountResentOnce(t *testing.T) {
	f := startTestFederation(t, 1)
	n := f.Nodes["440000"]
	op, feed := f.asOperator(t, "440000"), f.asFeed("440000")
	waitReady(t, f.NodeURLs["440000"]) // the feed's certificate is known once the node has the trust list
	a, b := hcxID("44010619800101123"), hcxID("44010619800202123")
	bad := a[:17] + map[bool]string{true: "1", false: "2"}[a[17] != '1'] // wrong check digit
	stranger := hcxID("51010719750303123")                               // a Sichuan resident, not registered here
	st, res, code := postFeed(t, f, op, "residents", ndjson(
		`{"doc_type":"CN-ID","doc_number":"`+a+`","name":"张三"}`,
		`{"doc_type":"CN-ID","doc_number":"`+b+`","name":"李四"}`,
		``,
		`{"doc_type":"CN-ID","doc_number":"`+bad+`","name":"王五"}`,
		`{"doc_type":"CN-ID","doc_number":"`+a+`","name":"张三"}`,
	))
	if st != 200 || res.Accepted != 2 || res.Duplicates != 1 || res.Failed != 1 || res.Lines != 5 || len(res.Errors) != 1 || res.Errors[0].Line != 4 || res.Errors[0].Field != "doc_number" {
		t.Fatalf("bulk registration: %d %s %+v", st, code, res)
	}
	now := f.Now().UTC()
	at := now.Add(-time.Hour).Format(time.RFC3339)
	labs := ndjson(
		`{"id":"S-1","doc_type":"CN-ID","doc_number":"`+a+`","at":"`+at+`","result":"positive","kind":"pcr"}`,
		`{"id":"S-2","doc_type":"CN-ID","doc_number":"`+b+`","at":"`+at+`","result":"negative"}`,
		`{"id":"S-3","doc_type":"CN-ID","doc_number":"`+b+`","at":"`+now.Add(48*time.Hour).Format(time.RFC3339)+`","result":"negative"}`,
		`{"id":"S-4","doc_type":"CN-ID","doc_number":"`+b+`","at":"`+now.AddDate(-2, 0, 0).Format(time.RFC3339)+`","result":"negative"}`,
		`{"id":"S-5","doc_type":"CN-ID","doc_number":"`+stranger+`","at":"`+at+`","result":"positive"}`,
		`{"id":"S-6","doc_type":"CN-ID","doc_number":"`+b+`","at":"`+at+`","result":"maybe"}`,
		`{"id":"S-7","doc_type":"CN-ID","doc_number":"`+b+`","at":"`+at+`","result":"negative","loinc":"1"}`,
		`{"doc_type":"CN-ID","doc_number":"`+b+`","at":"`+at+`","result":"negative"}`,
		`not json`,
	)
	st, res, code = postFeed(t, f, feed, "labs", labs)
	want := "3:at:invalid_at 4:at:invalid_at 5:sub:unknown_resident 6:result:invalid_result 7:loinc:bad_json 8:id:invalid_id 9:line:bad_json"
	if st != 200 || res.Accepted != 2 || res.Failed != 7 || lineErrors(res) != want {
		t.Fatalf("lab feed: %d %s accepted %d failed %d\n got %s\nwant %s", st, code, res.Accepted, res.Failed, lineErrors(res), want)
	}
	var r struct {
		Status struct{ Colour hcx.Colour } `json:"status"`
	}
	subA, err := n.SubjectOf(hcx.DocCNID, a)
	if err != nil {
		t.Fatal(err)
	}
	if st := callAs(t, f.client(), op, "GET", f.NodeURLs["440000"]+"/v1/residents/"+string(subA), nil, &r); st != 200 || r.Status.Colour != hcx.Red {
		t.Fatalf("resident with a positive result from the feed: %d %s", st, r.Status.Colour)
	}
	v := auditSeq(t, n)
	st, res, _ = postFeed(t, f, feed, "labs", labs)
	if st != 200 || res.Accepted != 0 || res.Duplicates != 2 || res.Failed != 7 {
		t.Fatalf("lab feed sent again: %d %+v", st, res)
	}
	if auditSeq(t, n) != v {
		t.Error("a feed sent again wrote to the audit trail")
	}
	// Another record under a used id is a conflict, not a silent overwrite.
	st, res, _ = postFeed(t, f, feed, "labs", ndjson(`{"id":"S-1","doc_type":"CN-ID","doc_number":"`+a+`","at":"`+at+`","result":"negative"}`))
	if st != 200 || lineErrors(res) != "1:id:record_conflict" {
		t.Fatalf("record id reused: %d %+v", st, res)
	}
	// The wrong media type, an empty feed: 4xx for the request, nothing written.
	v = auditSeq(t, n)
	req, _ := http.NewRequest("POST", f.NodeURLs["440000"]+"/v1/feeds/labs", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	feed.sign(t, req, []byte("{}"))
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("feed as application/json: %d", resp.StatusCode)
	}
	if st, _, code := postFeed(t, f, feed, "labs", nil); st != 400 || code != "invalid_body" {
		t.Errorf("empty feed: %d %s", st, code)
	}
	if auditSeq(t, n) != v {
		t.Error("a refused feed wrote to the audit trail")
	}
}

// endless is a feed body of size bytes of valid lab lines, generated as it
// is read.
type endless struct {
	// sent is what Read has handed out; the transport may still be reading
	// when the answer arrives, so the test reads it atomically.
	sent atomic.Int64
	size int64
	line []byte
	off  int
}

func (e *endless) Read(p []byte) (int, error) {
	left := e.size - e.sent.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && left > 0 {
		c := copy(p[n:], e.line[e.off:])
		c = int(min(int64(c), left))
		n, e.off, left = n+c, (e.off+c)%len(e.line), left-int64(c)
	}
	e.sent.Add(int64(n))
	return n, nil
}

// TestBulkFeedOf2GBIsRefusedWithBoundedMemory streams a 2 GB feed, as an
// operator (the handler's limit) and as a signed feed (the request token's
// body limit, checked before the handler), and checks each is refused with
// 413 naming the limit, that nothing was written, and that the process's
// heap stayed bounded while it was read.
func TestBulkFeedOf2GBIsRefusedWithBoundedMemory(t *testing.T) {
	f := startTestFederation(t, 1)
	n := f.Nodes["440000"]
	waitReady(t, f.NodeURLs["440000"])
	// Lines of 512 bytes (padded with blanks): the byte limit comes before
	// the line limit.
	line := []byte(`{"id":"X","doc_type":"CN-ID","doc_number":"` + hcxID("44010619800101123") + `","at":"2026-01-01T00:00:00Z","result":"negative"}` + strings.Repeat(" ", 400))
	line = append(line[:511], '\n')
	for _, who := range []caller{f.asOperator(t, "440000"), f.asFeed("440000")} {
		v := auditSeq(t, n)
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		peak.Store(base)
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}()
		body := &endless{size: 2 << 30, line: line}
		req, _ := http.NewRequest("POST", f.NodeURLs["440000"]+"/v1/feeds/labs", body)
		req.ContentLength = -1 // streamed: the server cannot know the size before reading
		req.Header.Set("Content-Type", "application/x-ndjson")
		who.sign(t, req, nil) // a token cannot hash 2 GB it does not hold; the size refusal comes first
		resp, err := f.client().Do(req)
		close(stop)
		<-done
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak.Load() {
			peak.Store(ms.HeapInuse)
		}
		if err != nil {
			t.Fatalf("%s: %v", who.name, err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(rb), fmt.Sprint(auth.DefaultTokenBody)) {
			t.Errorf("%s: 2 GB feed answered %d %s", who.name, resp.StatusCode, rb)
		}
		if body.sent.Load() >= body.size {
			t.Errorf("%s: the server read the whole 2 GB before refusing it", who.name)
		}
		grew := int64(peak.Load()) - int64(base)
		t.Logf("%s: refused after %d MiB sent; heap in use grew by at most %d MiB", who.name, body.sent.Load()>>20, grew>>20)
		// The bound: one request's 8 MiB and its parsed lines, plus the
		// garbage the collector has not reclaimed yet; 2 GB held would be
		// far past it.
		if grew > 256<<20 {
			t.Errorf("%s: heap grew by %d MiB reading a refused feed", who.name, grew>>20)
		}
		if auditSeq(t, n) != v {
			t.Errorf("%s: a refused feed wrote to the audit trail", who.name)
		}
	}
}

func postFeedAs(t *testing.T, f *federation, who caller, kind, ctype string, body []byte) (int, api.FeedResult, string) {
	t.Helper()
	req, err := http.NewRequest("POST", f.NodeURLs["440000"]+"/v1/feeds/"+kind, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	who.sign(t, req, body)
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	var res api.FeedResult
	var e apiError
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(rb, &res); err != nil {
			t.Fatalf("feed answer %q: %v", rb, err)
		}
	} else {
		_ = json.Unmarshal(rb, &e)
	}
	return resp.StatusCode, res, e.Error.Code
}

// TestFHIRFeedsTakeTheAcceptedProfileOnly: Observations as FHIR NDJSON and
// Immunizations in a Bundle; resources outside the profile (status, LOINC
// code, resource type, dose numbers) are line errors naming the element,
// and a complete course gives the vaccination mark.
func TestFHIRFeedsTakeTheAcceptedProfileOnly(t *testing.T) {
	f := startTestFederation(t, 1)
	op, feed := f.asOperator(t, "440000"), f.asFeed("440000")
	waitReady(t, f.NodeURLs["440000"])
	a := hcxID("44010619850505123")
	if st, res, _ := postFeed(t, f, op, "residents", ndjson(`{"doc_type":"CN-ID","doc_number":"`+a+`","name":"赵六"}`)); st != 200 || res.Accepted != 1 {
		t.Fatalf("registration: %d %+v", st, res)
	}
	at := f.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	obs := func(id, status, loinc, result string) string {
		return `{"resourceType":"Observation","id":"` + id + `","status":"` + status + `","code":{"coding":[{"system":"http://loinc.org","code":"` + loinc + `"}]},` +
			`"subject":{"identifier":{"system":"urn:hcx:doc:CN-ID","value":"` + a + `"}},"effectiveDateTime":"` + at + `",` +
			`"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"` + result + `"}]}}`
	}
	st, res, code := postFeedAs(t, f, feed, "labs", "application/fhir+ndjson", ndjson(
		obs("O-1", "final", "94500-6", "260415000"),
		obs("O-2", "preliminary", "94500-6", "260373001"),
		obs("O-3", "final", "12345-6", "260373001"),
		obs("O-4", "final", "94558-4", "1"),
		`{"resourceType":"Patient","id":"P-1"}`,
	))
	if want := "2:status:invalid_status 3:code:invalid_code 4:valueCodeableConcept:invalid_result 5:resourceType:unsupported_resource"; st != 200 || res.Accepted != 1 || lineErrors(res) != want {
		t.Fatalf("FHIR labs: %d %s %d accepted\n got %s\nwant %s", st, code, res.Accepted, lineErrors(res), want)
	}
	imm := func(id, status string, dose int) string {
		return `{"resource":{"resourceType":"Immunization","id":"` + id + `","status":"` + status + `","vaccineCode":{"coding":[{"system":"urn:oid:1.2.36.1.2001.1005.17","code":"CoronaVac"}]},` +
			`"patient":{"identifier":{"system":"urn:hcx:doc:CN-ID","value":"` + a + `"}},"occurrenceDateTime":"` + f.Now().UTC().AddDate(0, 0, -60+30*dose).Format(time.RFC3339) + `",` +
			`"protocolApplied":[{"doseNumberPositiveInt":` + fmt.Sprint(dose) + `,"seriesDosesPositiveInt":2}]}}`
	}
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[` + imm("V-1", "completed", 1) + `,` + imm("V-2", "completed", 2) + `,` + imm("V-3", "not-done", 1) + `]}`
	st, res, code = postFeedAs(t, f, feed, "vaccinations", "application/fhir+json", []byte(bundle))
	if st != 200 || res.Accepted != 2 || lineErrors(res) != "3:status:invalid_status" {
		t.Fatalf("FHIR Bundle: %d %s %+v", st, code, res)
	}
	sub, _ := f.Nodes["440000"].SubjectOf(hcx.DocCNID, a)
	var r struct {
		Status struct{ Vaccinated bool } `json:"status"`
	}
	if st := callAs(t, f.client(), op, "GET", f.NodeURLs["440000"]+"/v1/residents/"+string(sub), nil, &r); st != 200 || !r.Status.Vaccinated {
		t.Errorf("resident after a complete course from the registry's Bundle: %d vaccinated %v", st, r.Status.Vaccinated)
	}
	if st, _, code := postFeedAs(t, f, feed, "itineraries", "application/fhir+ndjson", []byte("{}\n")); st != 400 || code != "unsupported_media_type" {
		t.Errorf("FHIR itineraries: %d %s", st, code)
	}
}

// TestEveryFeedKindRecordsItsEvents: vaccinations, itineraries and close
// contacts in our own NDJSON, each with a bad line naming its field; the
// good lines reach the resident (vaccination mark, yellow for a contact)
// and sub names a person as well as a document does.
func TestEveryFeedKindRecordsItsEvents(t *testing.T) {
	f := startTestFederation(t, 1)
	op, feed := f.asOperator(t, "440000"), f.asFeed("440000")
	waitReady(t, f.NodeURLs["440000"])
	a := hcxID("44010619900606123")
	if st, res, _ := postFeed(t, f, op, "residents", ndjson(`{"doc_type":"CN-ID","doc_number":"`+a+`","name":"孙七"}`)); st != 200 || res.Accepted != 1 {
		t.Fatalf("registration: %d %+v", st, res)
	}
	sub, _ := f.Nodes["440000"].SubjectOf(hcx.DocCNID, a)
	day := func(d int) string { return f.Now().UTC().AddDate(0, 0, d).Format(time.RFC3339) }
	person := `"doc_type":"CN-ID","doc_number":"` + a + `"`
	cases := []struct {
		kind  string
		body  []byte
		want  string
		count int
	}{
		{"vaccinations", ndjson(
			`{"id":"D-1",`+person+`,"at":"`+day(-60)+`","dose":1,"course_doses":2,"product":"CoronaVac"}`,
			`{"id":"D-2","sub":"`+string(sub)+`","at":"`+day(-30)+`","dose":2,"course_doses":2,"product":"CoronaVac"}`,
			`{"id":"D-3",`+person+`,"at":"`+day(-20)+`","dose":0,"course_doses":2}`,
		), "3:dose:invalid_dose", 2},
		{"itineraries", ndjson(
			`{"id":"T-1",`+person+`,"at":"`+day(-3)+`","div":"440106"}`,
			`{"id":"T-2",`+person+`,"at":"`+day(-2)+`","div":"999999"}`,
		), "2:div:invalid_div", 1},
		{"contacts", ndjson(
			`{"id":"C-1",`+person+`,"at":"`+day(-1)+`"}`,
			`{"id":"C-2","sub":"`+string(sub)+`",`+person+`,"at":"`+day(-1)+`"}`,
		), "2:sub:invalid_sub", 1},
	}
	for _, c := range cases {
		st, res, code := postFeed(t, f, feed, c.kind, c.body)
		if st != 200 || res.Accepted != c.count || lineErrors(res) != c.want {
			t.Errorf("%s: %d %s accepted %d, errors %s (want %d, %s)", c.kind, st, code, res.Accepted, lineErrors(res), c.count, c.want)
		}
	}
	var r struct {
		Status struct {
			Colour     hcx.Colour
			Vaccinated bool
		} `json:"status"`
	}
	if st := callAs(t, f.client(), op, "GET", f.NodeURLs["440000"]+"/v1/residents/"+string(sub), nil, &r); st != 200 || !r.Status.Vaccinated || r.Status.Colour == hcx.Green {
		t.Errorf("resident after the feeds: %d %+v, want vaccinated and not green (a close contact)", st, r.Status)
	}
	// The stay was recorded: sent again, it is a duplicate.
	if st, res, _ := postFeed(t, f, feed, "itineraries", cases[1].body); st != 200 || res.Duplicates != 1 {
		t.Errorf("itinerary sent again: %d %+v", st, res)
	}
}

// TestFeedAnswerListsTheFirstErrorsByLine: 150 lines refused at parsing
// (after line 100) and 150 refused by the node (before it): the answer
// lists the first 100 by line number and counts the rest.
func TestFeedAnswerListsTheFirstErrorsByLine(t *testing.T) {
	f := startTestFederation(t, 1)
	waitReady(t, f.NodeURLs["440000"])
	at := f.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	var lines []string
	for i := range 150 { // valid lines about people not registered here
		lines = append(lines, fmt.Sprintf(`{"id":"U-%d","doc_type":"CN-ID","doc_number":"%s","at":"%s","result":"negative"}`, i, hcxID(fmt.Sprintf("440106198001%02d%03d", 1+i%28, 100+i)), at))
	}
	for range 150 {
		lines = append(lines, "not json")
	}
	st, res, code := postFeed(t, f, f.asFeed("440000"), "labs", ndjson(lines...))
	if st != 200 || res.Failed != 300 || len(res.Errors) != api.MaxFeedErrors || res.ErrorsOmitted != 200 {
		t.Fatalf("%d %s failed %d listed %d omitted %d", st, code, res.Failed, len(res.Errors), res.ErrorsOmitted)
	}
	for i, e := range res.Errors {
		if e.Line != i+1 || e.Code != "unknown_resident" {
			t.Fatalf("error %d: %+v, want line %d unknown_resident", i, e, i+1)
		}
	}
}
