package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
	qrcode "github.com/skip2/go-qrcode"
)

// batchAnswer is POST /v1/verify/batch's JSON answer, items kept raw.
type batchAnswer struct {
	Results []json.RawMessage `json:"results"`
}

// batchItem is one answer of a batch: a Verification or an error.
type batchItem struct {
	Valid  bool       `json:"valid"`
	Colour hcx.Colour `json:"colour"`
	IDTail string     `json:"id_tail"`
	Error  *struct {
		Code    string `json:"code"`
		Field   string `json:"field"`
		Message string `json:"message"`
		Line    int    `json:"line"`
	} `json:"error"`
}

// batchFixture is a federation with residents of different colours and
// their current codes, plus codes that must be refused, each kind
// labelled.
type batchFixture struct {
	f         *federation
	url       string
	gate      caller
	residents []batchResident
	bad       map[string]string // kind -> code text
}

type batchResident struct {
	sub    hcx.Subject
	who    caller
	code   string
	colour hcx.Colour
	idTail string
}

// newBatchFixture enrols count residents of Guangdong, every third one
// red (a positive lab result), fetches their codes, and makes an expired,
// a forged, a revoked-key and two malformed codes.
func newBatchFixture(t *testing.T, count int) *batchFixture {
	t.Helper()
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	x := &batchFixture{f: f, url: f.NodeURLs[gd], gate: f.asCheckpoint(gd), bad: map[string]string{}}
	waitKnown(t, f, x.gate, x.url+"/readyz")
	for i := range count {
		id := cnID(fmt.Sprintf("44010619%02d0101%03d", 60+i, 100+i))
		sub, who := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id, "name": "陈" + string([]rune("一二三四五六七八九十百千")[i%12])})
		colour := hcx.Green
		if i%3 == 1 {
			if st := callAs(t, f.client(), f.asFeed(gd), "POST", x.url+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive"}, nil); st != http.StatusOK {
				t.Fatalf("lab result: %d", st)
			}
			colour = hcx.Red
		}
		var c struct {
			QR     string     `json:"code"`
			Colour hcx.Colour `json:"colour"`
		}
		if st := callAs(t, f.client(), who, "GET", x.url+"/v1/residents/"+string(sub)+"/code", nil, &c); st != http.StatusOK || c.Colour != colour {
			t.Fatalf("code of resident %d: %d %q, want %q", i, st, c.Colour, colour)
		}
		x.residents = append(x.residents, batchResident{sub: sub, who: who, code: c.QR, colour: colour, idTail: id[len(id)-4:]})
	}

	now := f.Now()
	claims := exchange.CodeClaims{Iss: gd, Sub: x.residents[0].sub, SKV: 1, Col: hcx.Green, Name: "陈*", IDTail: x.residents[0].idTail,
		IssuedAt: now.Add(-2 * time.Minute).Unix(), Expires: now.Add(-time.Minute).Unix()}
	expired, err := exchange.IssueCode(f.PKI.Provinces[gd], &claims)
	if err != nil {
		t.Fatal(err)
	}
	x.bad["expired"] = expired
	// The first resident's green code turned red: the signature no longer
	// holds.
	parts := strings.Split(strings.TrimPrefix(x.residents[0].code, exchange.CodePrefix), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte(`"col":"green"`), []byte(`"col":"red"`), 1)
	x.bad["forged"] = exchange.CodePrefix + parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	x.bad["malformed"] = "HCX1:this is not a token"
	x.bad["not-hcx"] = "https://example.com/qr"

	// A second Guangdong signing key whose code is good until the key is
	// revoked; the revocation reaches the node through the trust list in
	// the log.
	f.Devices.mu.Lock()
	spare, err := f.Devices.ca.Issue(certs.IssueRequest{Role: certs.RoleProvince, Province: gd, Name: "batch-spare-440000",
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	f.Devices.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	claims.IssuedAt, claims.Expires = now.Unix(), now.Add(time.Hour).Unix()
	revoked, err := exchange.IssueCode(spare, &claims)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Devices.Revoke(context.Background(), certs.KID(spare.Cert.Raw), "test: key compromised"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var e apiError
		callAs(t, f.client(), x.gate, "POST", x.url+"/v1/verify", map[string]string{"code": revoked}, &e)
		if e.Error.Code == "key_revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked key's code still answers %+v after 20 s", e)
		}
	}
	x.bad["revoked"] = revoked
	waitSettled(t, f) // the lab results' attestations are applied: answers no longer change
	return x
}

// post sends a batch body as who with Content-Type ct and returns the
// status and body.
// freshCode fetches resident i's current code again (codes live 60 s).
func (x *batchFixture) freshCode(t *testing.T, i int) string {
	t.Helper()
	r := x.residents[i]
	var c struct {
		QR string `json:"code"`
	}
	if st := callAs(t, x.f.client(), r.who, "GET", x.url+"/v1/residents/"+string(r.sub)+"/code", nil, &c); st != http.StatusOK {
		t.Fatalf("code of resident %d: %d", i, st)
	}
	return c.QR
}

func (x *batchFixture) post(t *testing.T, who caller, ct string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", x.url+"/v1/verify/batch", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	who.sign(t, req, body)
	resp, err := x.f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// single is /v1/verify's answer to code: its status and its body with
// checked_at and log_index removed (a batch may run in another second,
// after the follower applied another leaf).
func (x *batchFixture) single(t *testing.T, code string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"code": code})
	req, _ := http.NewRequest("POST", x.url+"/v1/verify", bytes.NewReader(body))
	x.gate.sign(t, req, body)
	resp, err := x.f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, withoutCheckedAt(t, bytes.TrimSpace(b))
}

// checkedAt matches the members that may differ between two verifications
// of one code a moment apart: the time and the log's size.
var checkedAt = regexp.MustCompile(`,"(checked_at|log_index)":\d+`)

func withoutCheckedAt(t *testing.T, b []byte) string {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("not JSON: %q", b)
	}
	return checkedTime.ReplaceAllString(checkedAt.ReplaceAllString(string(b), ""), "checked at T")
}

// checkedTime is the time a refusal may name (key_revoked says when it
// checked).
var checkedTime = regexp.MustCompile(`checked at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// A checkpoint device posts a batch mixing valid codes of green and red
// residents with expired, forged, revoked and malformed codes and items
// that are not strings: every item is answered on its own, in order,
// exactly as /v1/verify answers that code alone.
func TestBatchVerifyAnswersEachItemAsVerifyDoes(t *testing.T) {
	x := newBatchFixture(t, 3)
	codes := []any{x.residents[0].code, x.bad["expired"], x.bad["forged"], x.residents[1].code, x.bad["revoked"],
		x.bad["malformed"], 42, x.bad["not-hcx"], "", nil, x.residents[2].code}
	body, _ := json.Marshal(map[string]any{"codes": codes})
	st, b := x.post(t, x.gate, "application/json", body)
	if st != http.StatusOK {
		t.Fatalf("batch: %d %s", st, b)
	}
	var a batchAnswer
	if err := json.Unmarshal(b, &a); err != nil || len(a.Results) != len(codes) {
		t.Fatalf("batch answer %s: %v, want %d results", b, err, len(codes))
	}
	wantCodes := map[int]string{1: "token_expired", 2: "token_signature", 4: "key_revoked", 5: "token_malformed", 7: "token_malformed", 8: "token_malformed"}
	for i, c := range codes {
		var item batchItem
		if err := json.Unmarshal(a.Results[i], &item); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		s, isString := c.(string)
		if !isString { // 42 and null: answered alone, naming the item
			if item.Error == nil || item.Error.Code != "bad_json" || item.Error.Field != "codes["+strconv.Itoa(i)+"]" {
				t.Errorf("item %d (%v): %s, want bad_json naming codes[%d]", i, c, a.Results[i], i)
			}
			continue
		}
		st, want := x.single(t, s)
		if got := withoutCheckedAt(t, a.Results[i]); got != want {
			t.Errorf("item %d: batch %s\n/v1/verify (%d) %s", i, got, st, want)
		}
		if w, ok := wantCodes[i]; ok && (item.Error == nil || item.Error.Code != w || st != http.StatusUnprocessableEntity) {
			t.Errorf("item %d: %s (single %d), want %s", i, a.Results[i], st, w)
		}
	}
	for i, r := range []int{0, 3, 10} {
		var item batchItem
		_ = json.Unmarshal(a.Results[r], &item)
		if !item.Valid || item.Colour != x.residents[i].colour || item.IDTail != x.residents[i].idTail {
			t.Errorf("item %d: %s, want valid %s ending %s", r, a.Results[r], x.residents[i].colour, x.residents[i].idTail)
		}
	}
	// The operator may batch too; a resident may not.
	if st, b := x.post(t, x.f.asOperator(t, "440000"), "", body); st != http.StatusOK {
		t.Errorf("operator's batch: %d %s", st, b)
	}
	if st, _ := x.post(t, x.residents[0].who, "application/json", body); st != http.StatusForbidden {
		t.Errorf("resident's batch: %d, want 403", st)
	}
}

// The batch bounds: 10,000 codes are answered, 10,001 refused naming codes;
// none, a wrong shape or a wrong media type are refused naming the field,
// and a refused batch verifies nothing.
func TestBatchVerifyLimits(t *testing.T) {
	x := newBatchFixture(t, 1)
	many := func(n int) []byte {
		codes := make([]string, n)
		for i := range codes {
			codes[i] = "HCX1:x" // cheap to refuse: the bound, not the work, is tested
		}
		codes[n-1] = x.residents[0].code
		b, _ := json.Marshal(map[string]any{"codes": codes})
		return b
	}
	st, b := x.post(t, x.gate, "application/json", many(api.MaxBatchCodes))
	var a batchAnswer
	if err := json.Unmarshal(b, &a); st != http.StatusOK || err != nil || len(a.Results) != api.MaxBatchCodes {
		t.Fatalf("10,000 codes: %d, %d results, %v", st, len(a.Results), err)
	}
	var last batchItem
	if err := json.Unmarshal(a.Results[api.MaxBatchCodes-1], &last); err != nil || !last.Valid {
		t.Errorf("the 10,000th code: %s", a.Results[api.MaxBatchCodes-1])
	}
	verified := func() float64 {
		return metricValue(t, x.f, x.url, "hcx_node_verifications_total") + metricValue(t, x.f, x.url, "hcx_node_verifications_rejected_total")
	}
	before := verified()
	for _, tc := range []struct {
		name, ct, field string
		body            []byte
	}{
		{"10,001 codes", "application/json", "codes", many(api.MaxBatchCodes + 1)},
		{"no codes", "application/json", "codes", []byte(`{"codes":[]}`)},
		{"no member", "application/json", "codes", []byte(`{}`)},
		{"codes not an array", "application/json", "codes", []byte(`{"codes":"HCX1:x"}`)},
		{"unknown member", "application/json", "code", []byte(`{"code":"HCX1:x"}`)},
		{"media type", "text/plain", "Content-Type", []byte(`{"codes":["HCX1:x"]}`)},
	} {
		var e apiErrorField
		st, b := x.post(t, x.gate, tc.ct, tc.body)
		_ = json.Unmarshal(b, &e)
		if st != http.StatusBadRequest || e.Error.Field != tc.field || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.name, st, clipTest(b), tc.field)
		}
	}
	if after := verified(); after != before {
		t.Errorf("refused batches verified %v codes", after-before)
	}
}

func clipTest(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// metricValue reads a counter (its one labelled series) from the node's
// /metrics as the auditor.
func metricValue(t *testing.T, f *federation, url, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	f.asPerson(t, "auditor").sign(t, req, nil)
	resp, err := f.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+"{"); ok {
			_, num, _ := strings.Cut(rest, "} ")
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// Order holds under parallelism: 3,000 codes of twelve residents, green
// and red, each answered at its place; while the batch runs, single
// verifications are still answered promptly.
func TestBatchVerifyKeepsOrderUnderParallelism(t *testing.T) {
	x := newBatchFixture(t, 12)
	const n = 3000
	codes := make([]string, n)
	who := make([]int, n)
	for i := range codes {
		who[i] = (i*7 + i/13) % len(x.residents)
		codes[i] = x.residents[who[i]].code
	}
	body, _ := json.Marshal(map[string]any{"codes": codes})

	var wg sync.WaitGroup
	var st int
	var b []byte
	start := time.Now()
	wg.Go(func() { st, b = x.post(t, x.gate, "application/json", body) })
	var slowest time.Duration
	for range 10 {
		t0 := time.Now()
		if s, _ := x.single(t, x.residents[0].code); s != http.StatusOK {
			t.Errorf("single verification during the batch: %d", s)
		}
		slowest = max(slowest, time.Since(t0))
	}
	wg.Wait()
	t.Logf("batch of %d: %v; slowest of 10 single verifications beside it: %v", n, time.Since(start), slowest)
	if slowest > 2*time.Second {
		t.Errorf("a single verification waited %v beside a batch", slowest)
	}
	if st != http.StatusOK {
		t.Fatalf("batch: %d %s", st, clipTest(b))
	}
	var a batchAnswer
	if err := json.Unmarshal(b, &a); err != nil || len(a.Results) != n {
		t.Fatalf("%d results, %v", len(a.Results), err)
	}
	for i, raw := range a.Results {
		var item batchItem
		_ = json.Unmarshal(raw, &item)
		r := x.residents[who[i]]
		if !item.Valid || item.Colour != r.colour || item.IDTail != r.idTail {
			t.Fatalf("item %d: %s, want resident %d (%s, %s)", i, raw, who[i], r.colour, r.idTail)
		}
	}
}

// A checkpoint streams NDJSON: each line is answered in order, a bad line
// in the middle in place with its line number. An operator (whose
// credential does not sign the body) streams for real: each answer arrives
// before the next line is sent.
func TestBatchVerifyStreamsNDJSON(t *testing.T) {
	x := newBatchFixture(t, 2)
	line := func(code string) string { b, _ := json.Marshal(map[string]string{"code": code}); return string(b) }
	lines := []string{
		line(x.residents[0].code),
		line(x.bad["expired"]),
		`{"code":`,                     // broken JSON
		`"` + x.bad["malformed"] + `"`, // a bare string: we take objects only
		"",                             // empty
		`{"code":"x","extra":1}`,
		`{"code":"` + strings.Repeat("A", api.MaxBatchLine) + `"}`, // too long
		line(x.bad["revoked"]),
		line(x.residents[1].code) + "\r", // CRLF
		line(x.bad["forged"]),
	}
	body := []byte(strings.Join(lines, "\n")) // no final newline: the last line counts
	st, b := x.post(t, x.gate, api.ContentTypeNDJSON, body)
	if st != http.StatusOK {
		t.Fatalf("stream: %d %s", st, clipTest(b))
	}
	out := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(out) != len(lines) {
		t.Fatalf("%d answers to %d lines: %s", len(out), len(lines), clipTest(b))
	}
	want := []struct{ code, field string }{
		{"", ""}, {"token_expired", ""}, {"bad_json", "body"}, {"bad_json", "body"}, {"bad_json", "body"},
		{"bad_json", "extra"}, {"bad_json", "body"}, {"key_revoked", ""}, {"", ""}, {"token_signature", ""},
	}
	for i, o := range out {
		var item batchItem
		if err := json.Unmarshal([]byte(o), &item); err != nil {
			t.Fatalf("answer %d %q: %v", i+1, o, err)
		}
		switch w := want[i]; {
		case w.code == "" && (!item.Valid || item.Error != nil || item.IDTail != x.residents[i/8].idTail):
			t.Errorf("line %d: %s, want resident %d's verification", i+1, o, i/8)
		case w.code != "" && (item.Error == nil || item.Error.Code != w.code || item.Error.Field != w.field || item.Error.Line != i+1):
			t.Errorf("line %d: %s, want %s naming %q at line %d", i+1, o, w.code, w.field, i+1)
		}
	}

	// Streaming for real, as the operator: send a line, read its answer,
	// then send the next.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", x.url+"/v1/verify/batch", pr)
	req.Header.Set("Content-Type", api.ContentTypeNDJSON)
	x.f.asOperator(t, "440000").sign(t, req, nil)
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() { resp, err := x.f.client().Do(req); done <- result{resp, err} }()
	if _, err := io.WriteString(pw, line(x.residents[0].code)+"\n"); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer headers 10 s after the first line")
	}
	if res.err != nil || res.resp.StatusCode != http.StatusOK || res.resp.Header.Get("Content-Type") != api.ContentTypeNDJSON {
		t.Fatalf("stream as operator: %v %+v", res.err, res.resp)
	}
	defer res.resp.Body.Close()
	rd := bufio.NewReader(res.resp.Body)
	next := func() batchItem {
		t.Helper()
		got := make(chan string, 1)
		go func() { s, _ := rd.ReadString('\n'); got <- s }()
		select {
		case s := <-got:
			var item batchItem
			if err := json.Unmarshal([]byte(s), &item); err != nil {
				t.Fatalf("answer %q: %v", s, err)
			}
			return item
		case <-time.After(10 * time.Second):
			t.Fatal("a line sent 10 s ago is not answered: the answer is not streamed")
		}
		return batchItem{}
	}
	if it := next(); !it.Valid || it.IDTail != x.residents[0].idTail {
		t.Errorf("first streamed answer: %+v", it)
	}
	io.WriteString(pw, "not json\n")
	if it := next(); it.Error == nil || it.Error.Line != 2 {
		t.Errorf("second streamed answer: %+v, want an error at line 2", it)
	}
	io.WriteString(pw, line(x.residents[1].code)+"\n")
	if it := next(); !it.Valid || it.IDTail != x.residents[1].idTail {
		t.Errorf("third streamed answer: %+v", it)
	}
	pw.Close()
	if rest, _ := io.ReadAll(rd); len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("after the last line: %q", rest)
	}
}

// A resident (or their guardian) gets their code as PNG and SVG: the image
// holds exactly the code text the answer names, which a checkpoint
// verifies; it may be kept at most 30 s; a bad format is refused.
func TestCodeImages(t *testing.T) {
	x := newBatchFixture(t, 1)
	r := x.residents[0]
	child := x.f.dependantOf(t, "440000", r.sub, r.who, map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010620180808123"), "name": "陈小"})
	get := func(who caller, sub hcx.Subject, query string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", x.url+"/v1/residents/"+string(sub)+"/code"+query, nil)
		who.sign(t, req, nil)
		resp, err := x.f.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, tc := range []struct {
		sub   hcx.Subject
		query string
	}{{r.sub, "?format=png"}, {r.sub, "?format=svg"}, {child, "?format=png"}, {r.sub, "?format=svg&offline=true"}} {
		resp, img := get(r.who, tc.sub, tc.query)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.query, resp.StatusCode, img)
		}
		text := resp.Header.Get("X-HCX-Code")
		sum := sha256.Sum256([]byte(text))
		if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=30" {
			t.Errorf("%s: Cache-Control %q", tc.query, cc)
		}
		if et := resp.Header.Get("ETag"); et != `"`+hex.EncodeToString(sum[:16])+`"` {
			t.Errorf("%s: ETag %q does not name the code", tc.query, et)
		}
		refresh, err := time.Parse(time.RFC3339, resp.Header.Get("X-HCX-Refresh-At"))
		if err != nil || refresh.Before(x.f.Now().Add(-time.Second)) {
			t.Errorf("%s: X-HCX-Refresh-At %q", tc.query, resp.Header.Get("X-HCX-Refresh-At"))
		}
		want, err := qrcode.New(text, api.CodeECLevel)
		if err != nil {
			t.Fatal(err)
		}
		var got [][]bool
		if strings.Contains(tc.query, "png") {
			if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
				t.Errorf("Content-Type %q", ct)
			}
			got = pngModules(t, img, len(want.Bitmap()))
		} else {
			if ct := resp.Header.Get("Content-Type"); ct != "image/svg+xml" {
				t.Errorf("Content-Type %q", ct)
			}
			got = svgModules(t, img, len(want.Bitmap()))
		}
		if !sameBitmap(got, want.Bitmap()) {
			t.Errorf("%s: the image is not the QR symbol of its code", tc.query)
		}
		var v batchItem
		if st := callAs(t, x.f.client(), x.gate, "POST", x.url+"/v1/verify", map[string]string{"code": text}, &v); st != http.StatusOK || !v.Valid {
			t.Errorf("%s: the imaged code does not verify: %d %+v", tc.query, st, v)
		}
	}
	for _, q := range []string{"?format=gif", "?format=PNG", "?format=png&format=svg"} {
		resp, b := get(r.who, r.sub, q)
		var e apiErrorField
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Field != "format" {
			t.Errorf("%s: %d %s, want 400 naming format", q, resp.StatusCode, b)
		}
	}
	other, them := x.f.asResident(t, "440000", map[string]string{"doc_type": "CN-ID", "doc_number": cnID("44010619770707123"), "name": "周七"})
	_ = other
	if resp, _ := get(them, r.sub, "?format=png"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another resident's image: %d", resp.StatusCode)
	}
}

// pngModules samples a PNG of whole-pixel modules back into a bitmap of
// side modules.
func pngModules(t *testing.T, b []byte, side int) [][]bool {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	px := img.Bounds().Dx()
	if px != img.Bounds().Dy() || px != side*api.CodePNGModule {
		t.Fatalf("PNG %v, want %d px square", img.Bounds(), side*api.CodePNGModule)
	}
	out := make([][]bool, side)
	for y := range out {
		out[y] = make([]bool, side)
		for x := range out[y] {
			r, _, _, _ := img.At(x*api.CodePNGModule+api.CodePNGModule/2, y*api.CodePNGModule+api.CodePNGModule/2).RGBA()
			out[y][x] = r < 0x8000
		}
	}
	return out
}

var svgRun = regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`)

// svgModules reads the dark runs of our SVG path back into a bitmap.
func svgModules(t *testing.T, b []byte, side int) [][]bool {
	t.Helper()
	if !bytes.Contains(b, []byte(fmt.Sprintf(`viewBox="0 0 %d %d"`, side, side))) {
		t.Fatalf("SVG without a %d-module viewBox: %s", side, clipTest(b))
	}
	out := make([][]bool, side)
	for y := range out {
		out[y] = make([]bool, side)
	}
	for _, m := range svgRun.FindAllSubmatch(b, -1) {
		x, _ := strconv.Atoi(string(m[1]))
		y, _ := strconv.Atoi(string(m[2]))
		n, _ := strconv.Atoi(string(m[3]))
		for i := range n {
			out[y][x+i] = true
		}
	}
	return out
}

func sameBitmap(a, b [][]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for y := range a {
		if len(a[y]) != len(b[y]) {
			return false
		}
		for x := range a[y] {
			if a[y][x] != b[y][x] {
				return false
			}
		}
	}
	return true
}
