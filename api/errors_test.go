package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hcxfed/hcx"
)

func decodeWith(t *testing.T, body string, limit int64) *httptest.ResponseRecorder {
	t.Helper()
	var v struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if err := DecodeJSON(rec, req, limit, &v); err != nil {
		WriteError(rec, nil, err)
	} else {
		WriteJSON(rec, http.StatusOK, v)
	}
	return rec
}

func errorBody(t *testing.T, rec *httptest.ResponseRecorder) (code, field, msg string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	return e.Error.Code, e.Error.Field, e.Error.Message
}

func TestBadBodiesGetClearErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		limit      int64
		status     int
		code, want string
	}{
		{"reject/too-large", `{"name":"` + strings.Repeat("x", 100) + `"}`, 64, 413, "too_large", "limit of 64 bytes"},
		{"reject/syntax-error", `{"name":}`, 1024, 400, "bad_json", "at byte"},
		{"reject/wrong-type", `{"age":"ten"}`, 1024, 400, "bad_json", "age: want a whole number, got \"ten\""},
		{"reject/wrong-type-string", `{"name":3}`, 1024, 400, "bad_json", "name: want a string, got a number"},
		{"reject/null", `{"name":null}`, 1024, 400, "bad_json", "name: want a string, got null"},
		{"reject/unknown-field", `{"nmae":"x"}`, 1024, 400, "bad_json", `unknown member "nmae": this request takes name and age`},
		{"reject/other-case", `{"Name":"x"}`, 1024, 400, "bad_json", `unknown member "Name"`},
		{"reject/duplicate", `{"name":"x","age":1,"name":"y"}`, 1024, 400, "bad_json", "appears twice"},
		{"reject/trailing-object", `{"name":"x"}{"name":"y"}`, 1024, 400, "bad_json", "goes on after the JSON object, at byte 12"},
		{"reject/trailing-garbage", `{"name":"x"} !`, 1024, 400, "bad_json", "goes on after the JSON object"},
		{"reject/not-an-object", `["x"]`, 1024, 400, "bad_json", "must be a JSON object with name and age, not an array"},
		{"reject/empty", ` `, 1024, 400, "bad_json", "empty"},
		{"reject/truncated", `{"name":"x"`, 1024, 400, "bad_json", "ends inside the JSON object"},
		{"reject/not-utf8", "{\"name\":\"\xff\"}", 1024, 400, "bad_json", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := decodeWith(t, tc.body, tc.limit)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			code, _, msg := errorBody(t, rec)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("error %s %q, want %s mentioning %q", code, msg, tc.code, tc.want)
			}
		})
	}
	if rec := decodeWith(t, " {\"name\":\"张三\",\"age\":3}\n", 1024); rec.Code != 200 {
		t.Errorf("good body: status %d", rec.Code)
	}
}

func TestErrorClassesMapToStatuses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{hcx.Invalidf("doc_number", "bad"), 400, "invalid_doc_number"},
		{hcx.Errorf(hcx.ENotFound, "unknown_resident", "no"), 404, "unknown_resident"},
		{hcx.Errorf(hcx.EConflict, "already_registered", "no"), 409, "already_registered"},
		{hcx.Errorf(hcx.EUnprocessable, "token_expired", "no"), 422, "token_expired"},
		{hcx.Errorf(hcx.EUnavailable, "not_ready", "no"), 503, "not_ready"},
		{errors.New("disk on fire at /var/lib/secret"), 500, "internal"},
	} {
		rec := httptest.NewRecorder()
		WriteError(rec, nil, tc.err)
		code, _, msg := errorBody(t, rec)
		if rec.Code != tc.status || code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, rec.Code, code, tc.status, tc.code)
		}
		if strings.Contains(msg, "/var/lib/secret") {
			t.Errorf("internal detail leaked: %q", msg)
		}
	}
	rec := httptest.NewRecorder()
	WriteError(rec, nil, hcx.Invalidf("doc_number", "check digit"))
	if _, field, _ := errorBody(t, rec); field != "doc_number" {
		t.Errorf("field = %q, want doc_number", field)
	}
}
