package web

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/hcxfed/hcx"
)

// The checkpoint's pages (issue 16 item 2): a checkpoint's staff log in
// with a one-time checkpoint code from an operator (a browser cannot hold
// the device's SM2 key), then check codes typed by a handheld scanner,
// photographed, or seen by the camera, and a school roll at once. Every
// check goes through the API's POST /v1/verify (an image as its body) or
// POST /v1/verify/batch, so the gate decides who may verify: a checkpoint
// code's session or an operator.
func init() {
	addRoutes(
		route{"GET /app/checkpoint", (*Server).checkpoint},
		route{"GET /app/checkpoint/login", (*Server).checkpointLogin},
		route{"POST /app/checkpoint/login", (*Server).checkpointLoginPost},
		route{"POST /app/checkpoint/check", (*Server).checkpointCheck},
		route{"POST /app/checkpoint/photo", (*Server).checkpointPhoto},
		route{"POST /app/checkpoint/roll", (*Server).checkpointRoll},
	)
}

// Bounds of what the checkpoint pages read.
const (
	// maxCheckForm bounds a typed code's form: a code is about 400 bytes,
	// /v1/verify takes 8 KiB.
	maxCheckForm = 16 << 10
	// maxCheckImage bounds a photo or a camera frame: the API's image
	// limit (qrimg.MaxBytes, 8 MiB), plus a multipart envelope.
	maxCheckImage = 8<<20 + 64<<10
	// maxRollFile bounds a school roll: 5,000 codes of about 400 bytes
	// with a label each fit in 4 MiB.
	maxRollFile = 4 << 20
	// MaxRollRows is the most codes one roll checks; /v1/verify/batch
	// takes 10,000, but a page of more rows than a school has is no use.
	MaxRollRows = 5000
)

// verdictView is one verification as the page shows it: the colour block,
// the masked name, the ID tail, the vaccination mark and the reasons in
// the page's language; or why there is no answer.
type verdictView struct {
	Colour     string
	Name       string
	IDTail     string
	Vaccinated bool
	Reasons    []string
	// Refused is the API's refusal of the code (forged, expired, from an
	// untrusted province) or of the caller.
	Refused *FieldError
	// NoCode says that the image held no QR code: the camera keeps
	// looking.
	NoCode bool
}

// verification is an answer of /v1/verify (exchange.Verification), or
// one item of /v1/verify/batch, which may be an error instead.
type verification struct {
	Valid      bool         `json:"valid"`
	Colour     string       `json:"colour"`
	Name       string       `json:"name"`
	IDTail     string       `json:"id_tail"`
	Vaccinated bool         `json:"vaccinated"`
	Reasons    []hcx.Reason `json:"reasons"`
	Error      *FieldError  `json:"error"`
}

// view is v in lang: the reasons in the checkpoint's language (their
// texts are the protocol's, hcx.Reason.Texts; an unknown one shows its
// code).
func (v *verification) view(lang string) *verdictView {
	if v.Error != nil {
		return &verdictView{Refused: v.Error}
	}
	cv := &verdictView{Colour: v.Colour, Name: v.Name, IDTail: v.IDTail, Vaccinated: v.Vaccinated}
	for _, r := range v.Reasons {
		if r == hcx.ReasonClear {
			continue // a green code says so in its colour
		}
		if texts, ok := r.Texts(); ok {
			cv.Reasons = append(cv.Reasons, texts.In(hcx.ParseLang(lang)))
		} else {
			cv.Reasons = append(cv.Reasons, string(r))
		}
	}
	return cv
}

// checkpointPage is the checkpoint page's data.
type checkpointPage struct {
	Result *verdictView
	Roll   *rollView
}

// checkpoint shows the checkpoint page to those who may verify: a
// checkpoint code's session, or staff (an operator; an auditor's checks
// are refused by the API, next to the code). Nobody goes to the
// checkpoint login; a resident is told this page is not theirs.
func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	who, ok := s.checkpointCaller(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "checkpoint", Page{Who: who, Data: checkpointPage{}})
}

// checkpointCaller sends a caller who cannot be a checkpoint elsewhere and
// reports whether the page may go on, with the caller for the navigation.
// It asks GET /v1/auth/session: a resident is told this page is not theirs;
// nobody (401, a revoked checkpoint code's dead cookie cleared as on every
// page) goes to the checkpoint login; any other role goes on, and the API
// decides whether it may verify.
func (s *Server) checkpointCaller(w http.ResponseWriter, r *http.Request) (Who, bool) {
	who := s.staffWho(r)
	switch who.Role {
	case "":
		redirect(w, r, "/app/checkpoint/login?done=checkpoint_login_needed")
		return who, false
	case "resident":
		s.formError(w, r, "error", &FieldError{Status: http.StatusForbidden, Code: "forbidden_role", Message: "a resident's login cannot check codes"})
		return who, false
	}
	return who, true
}

func (s *Server) checkpointLogin(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "checkpoint-login", Page{Who: s.who(r)})
}

// checkpointLoginPost starts a checkpoint session with the code an
// operator handed out (POST /v1/auth/checkpoint) and opens the checkpoint
// page.
func (s *Server) checkpointLoginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over 4 KiB", http.StatusBadRequest)
		return
	}
	rec, err := s.api.Serve(r, http.MethodPost, "/v1/auth/checkpoint", map[string]string{"code": strings.TrimSpace(r.PostForm.Get("code"))})
	if err == nil {
		_, err = rec.Decode(nil)
	}
	if err != nil {
		s.formError(w, r, "checkpoint-login", codeField(err, "checkpoint_code", "code"))
		return
	}
	rec.Forward(w)
	redirect(w, r, "/app/checkpoint?done=checkpoint_in")
}

// checkpointCheck verifies one code: typed into the scanner field (a
// form), or a camera frame or photo posted by the page's script as an
// image/jpeg or image/png body. The answer is the checkpoint page with the
// result; the script takes the result out of it.
func (s *Server) checkpointCheck(w http.ResponseWriter, r *http.Request) {
	who, ok := s.checkpointCaller(w, r)
	if !ok {
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "image/jpeg" || mt == "image/png" {
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCheckImage))
		if err != nil {
			s.checkAnswer(w, r, who, nil, &FieldError{Status: http.StatusRequestEntityTooLarge, Code: "image_too_large", Field: "photo", Message: "the image is over 8 MiB"})
			return
		}
		s.verifyImage(w, r, who, mt, raw)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxCheckForm)
	if err := r.ParseForm(); err != nil {
		s.checkAnswer(w, r, who, nil, &FieldError{Status: http.StatusBadRequest, Code: "code_missing", Field: "scan", Message: "the form is unreadable or over 16 KiB"})
		return
	}
	code := strings.TrimSpace(r.PostForm.Get("code"))
	if code == "" {
		s.checkAnswer(w, r, who, nil, &FieldError{Status: http.StatusBadRequest, Code: "code_missing", Field: "scan", Message: "scan or type a code"})
		return
	}
	var v verification
	_, err := s.api.Do(r, http.MethodPost, "/v1/verify", map[string]string{"code": code}, &v)
	s.checkAnswer(w, r, who, &v, err)
}

// checkpointPhoto verifies the code in a photo chosen in the page's file
// input (a form without script).
func (s *Server) checkpointPhoto(w http.ResponseWriter, r *http.Request) {
	who, ok := s.checkpointCaller(w, r)
	if !ok {
		return
	}
	raw, err := formFile(w, r, "photo", maxCheckImage)
	if err != nil {
		s.checkAnswer(w, r, who, nil, err)
		return
	}
	mt := http.DetectContentType(raw)
	if mt != "image/jpeg" && mt != "image/png" {
		s.checkAnswer(w, r, who, nil, &FieldError{Status: http.StatusBadRequest, Code: "not_an_image", Field: "photo", Message: "the photo must be a JPEG or PNG image"})
		return
	}
	s.verifyImage(w, r, who, mt, raw)
}

// verifyImage posts an image to POST /v1/verify, which reads its QR code.
func (s *Server) verifyImage(w http.ResponseWriter, r *http.Request, who Who, mediaType string, raw []byte) {
	var v verification
	_, err := s.api.ServeRaw(r, http.MethodPost, "/v1/verify", mediaType, raw).Decode(&v)
	s.checkAnswer(w, r, who, &v, err)
}

// checkAnswer renders the checkpoint page with one verification, or the
// refusal err. A refusal of the caller (not logged in, not a checkpoint)
// is the page's error; a refusal of the code is the result.
func (s *Server) checkAnswer(w http.ResponseWriter, r *http.Request, who Who, v *verification, err error) {
	lang := s.i18n.lang(r)
	if err == nil {
		s.render(w, r, http.StatusOK, "checkpoint", Page{Who: who, Data: checkpointPage{Result: v.view(lang)}})
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		s.formError(w, r, "checkpoint", err)
		return
	}
	if fe.Status == http.StatusUnauthorized {
		redirect(w, r, "/app/checkpoint/login?done=checkpoint_login_needed")
		return
	}
	res := &verdictView{Refused: fe, NoCode: fe.Code == "no_qr_code"}
	s.render(w, r, fe.Status, "checkpoint", Page{Who: who, Data: checkpointPage{Result: res}})
}

// formFile reads the file field of a multipart form of at most limit
// bytes.
func formFile(w http.ResponseWriter, r *http.Request, field string, limit int64) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_" + field, Field: field, Message: "choose a file"}
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_" + field, Field: field, Message: "choose a file"}
		}
		if err != nil {
			return nil, &FieldError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: field, Message: "the form is unreadable or too large"}
		}
		if p.FormName() != field {
			continue
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			return nil, &FieldError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: field, Message: "the file is too large"}
		}
		if len(raw) == 0 {
			return nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_" + field, Field: field, Message: "the file is empty"}
		}
		return raw, nil
	}
}

// rollRow is one row of a school roll: a label (the rest of the CSV row:
// a class, a roll number) and its code's verification.
type rollRow struct {
	N     int
	Label string
	*verdictView
}

// rollView is a checked roll: its rows and the count of each colour
// (refused codes under "refused").
type rollView struct {
	Rows                        []rollRow
	Green, Yellow, Red, Refused int
}

// checkpointRoll checks a school roll: a file of codes (one per line; a
// CSV whose column "code", else whose longest field, is the code; the
// NDJSON or JSON of /v1/verify/batch) through POST /v1/verify/batch.
func (s *Server) checkpointRoll(w http.ResponseWriter, r *http.Request) {
	who, ok := s.checkpointCaller(w, r)
	if !ok {
		return
	}
	raw, err := formFile(w, r, "roll", maxRollFile)
	var codes, labels []string
	if err == nil {
		codes, labels, err = parseRoll(raw)
	}
	var answer struct {
		Results []verification `json:"results"`
	}
	if err == nil {
		_, err = s.api.Do(r, http.MethodPost, "/v1/verify/batch", map[string][]string{"codes": codes}, &answer)
	}
	if err == nil && len(answer.Results) != len(codes) {
		err = errors.New("web: /v1/verify/batch answered a different number of results")
	}
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
			redirect(w, r, "/app/checkpoint/login?done=checkpoint_login_needed")
			return
		}
		if errors.As(err, &fe) && fe.Field == "" {
			c := *fe
			c.Field = "roll"
			err = &c
		}
		s.formError(w, r, "checkpoint", err)
		return
	}
	lang := s.i18n.lang(r)
	roll := &rollView{}
	for i := range answer.Results {
		v := answer.Results[i].view(lang)
		roll.Rows = append(roll.Rows, rollRow{N: i + 1, Label: labels[i], verdictView: v})
		switch {
		case v.Refused != nil:
			roll.Refused++
		case v.Colour == string(hcx.Green):
			roll.Green++
		case v.Colour == string(hcx.Yellow):
			roll.Yellow++
		default:
			roll.Red++
		}
	}
	s.render(w, r, http.StatusOK, "checkpoint", Page{Who: who, Data: checkpointPage{Roll: roll}})
}

// parseRoll reads a roll's codes and their labels.
func parseRoll(raw []byte) (codes, labels []string, err error) {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // a spreadsheet's UTF-8 mark
	tooMany := &FieldError{Status: http.StatusBadRequest, Code: "roll_too_long", Field: "roll", Message: "a roll has at most 5000 codes"}
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' {
		// The JSON of /v1/verify/batch, {"codes": [...]}; NDJSON (one
		// {"code": ...} per line) is not one object and is read below.
		var batch struct {
			Codes []string `json:"codes"`
		}
		if json.Unmarshal(t, &batch) == nil && batch.Codes != nil {
			if len(batch.Codes) > MaxRollRows {
				return nil, nil, tooMany
			}
			return batch.Codes, make([]string, len(batch.Codes)), nil
		}
	}
	cr := csv.NewReader(bytes.NewReader(raw))
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = false
	codeCol := -1
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_roll", Field: "roll", Message: "the roll is not readable as CSV: " + err.Error()}
		}
		if len(rec) == 1 && strings.HasPrefix(strings.TrimSpace(rec[0]), "{") {
			// The NDJSON of /v1/verify/batch: {"code":"..."} per line. A
			// code has no comma, so the line is one CSV field.
			var item struct {
				Code string `json:"code"`
			}
			if err := json.Unmarshal([]byte(rec[0]), &item); err != nil {
				return nil, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_roll", Field: "roll", Message: "line " + strconv.Itoa(line) + " is not {\"code\": \"...\"}"}
			}
			rec = []string{item.Code}
		}
		if line == 1 && codeCol < 0 {
			for i, f := range rec {
				if strings.EqualFold(strings.TrimSpace(f), "code") {
					codeCol = i
				}
			}
			if codeCol >= 0 {
				continue // the header
			}
		}
		col := codeCol
		if col < 0 || col >= len(rec) {
			col = 0
			for i, f := range rec {
				if len(strings.TrimSpace(f)) > len(strings.TrimSpace(rec[col])) {
					col = i
				}
			}
		}
		code := strings.TrimSpace(rec[col])
		if code == "" {
			continue
		}
		var rest []string
		for i, f := range rec {
			if f = strings.TrimSpace(f); i != col && f != "" {
				rest = append(rest, f)
			}
		}
		if len(codes) == MaxRollRows {
			return nil, nil, tooMany
		}
		codes = append(codes, code)
		labels = append(labels, strings.Join(rest, " "))
	}
	if len(codes) == 0 {
		return nil, nil, &FieldError{Status: http.StatusBadRequest, Code: "invalid_roll", Field: "roll", Message: "the roll holds no code"}
	}
	return codes, labels, nil
}
