package openapitest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hcxfed/hcx/api/openapitest"
)

const spec = `
openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: /}]
paths:
  /things:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [n]
              properties:
                n: {type: integer, maximum: 10}
      responses:
        "201":
          description: made
          content:
            application/json:
              schema:
                type: object
                required: [id]
                properties:
                  id: {type: string}
        "400":
          description: bad
          content:
            application/json:
              schema:
                type: object
                required: [error]
`

// server answers /things as the test says, whatever the request.
func server(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTransportReports: each way an exchange can break the document is
// reported, naming the operation; a documented exchange is not.
func TestTransportReports(t *testing.T) {
	for _, c := range []struct {
		name, reqBody string
		status        int
		answer        string
		want          string // in the report; "" for none
	}{
		{"documented success", `{"n":1}`, 201, `{"id":"a"}`, ""},
		{"documented refusal of bad input", `{"n":11}`, 400, `{"error":{}}`, ""},
		{"answer off its schema", `{"n":1}`, 201, `{"nope":1}`, `answer 201`},
		{"undocumented status", `{"n":1}`, 202, `{"id":"a"}`, `status is not supported`},
		{"document stricter than the server", `{"n":1,"x":2}`, 201, `{"id":"a"}`, `stricter than the server`},
		{"bad input answered 5xx", `{}`, 500, `{"error":{}}`, `not a 4xx`},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := openapitest.NewValidator("test", []byte(spec))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			hc := &http.Client{Transport: &openapitest.Transport{
				For:    func(*http.Request) *openapitest.Validator { return v },
				Report: func(p string) { got = append(got, p) },
			}}
			resp, err := hc.Post(server(t, c.status, c.answer)+"/things", "application/json", strings.NewReader(c.reqBody))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != c.answer {
				t.Errorf("the caller read %q, want the answer %q", b, c.answer)
			}
			all := strings.Join(got, "\n")
			switch {
			case c.want == "" && len(got) > 0:
				t.Errorf("reported %q for a documented exchange", all)
			case c.want != "" && !strings.Contains(all, c.want):
				t.Errorf("reported %q, want a report with %q", all, c.want)
			case c.want != "" && !strings.Contains(all, "POST /things"):
				t.Errorf("report %q does not name the operation", all)
			}
			if seen := v.Seen()["POST /things"]; len(seen) != 1 || seen[0] != c.status {
				t.Errorf("Seen: %v, want [%d]", seen, c.status)
			}
		})
	}
}
