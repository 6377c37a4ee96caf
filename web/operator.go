package web

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/api"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/node"
)

// An operator's pages (issue 16 item 4): a landing page with the queues'
// counts, the appeals queue, feed uploads, orders, risk areas, device
// enrolments and the audit trail. Every form that changes or reads a
// person's data has a reason field, sent to the API as X-HCX-Reason: the
// API records it in the audit trail and refuses an audited call without
// one, so the page does not check it itself.
func init() {
	addRoutes(
		route{"GET /app/operator", (*Server).operator},
		route{"GET /app/operator/appeals", (*Server).opAppeals},
		route{"POST /app/operator/appeals/{id}/open", (*Server).opAppealOpen},
		route{"POST /app/operator/appeals/{id}/decision", (*Server).opAppealDecide},
		route{"GET /app/operator/feeds", (*Server).opFeeds},
		route{"POST /app/operator/feeds", (*Server).opFeedUpload},
		route{"GET /app/operator/orders", (*Server).opOrders},
		route{"POST /app/operator/orders", (*Server).opOrderPlace},
		route{"POST /app/operator/orders/{sub}/{id}/lift", (*Server).opOrderLift},
		route{"GET /app/operator/risk-areas", (*Server).opRiskAreas},
		route{"POST /app/operator/risk-areas", (*Server).opRiskDesignate},
		route{"POST /app/operator/risk-areas/end", (*Server).opRiskEnd},
		route{"GET /app/operator/devices", (*Server).opDevices},
		route{"POST /app/operator/devices/{id}/{decision}", (*Server).opDeviceDecide},
		route{"GET /app/operator/audit", (*Server).opAudit},
	)
	// The API refusals the operator's pages translate (err_<code>).
	translatedErrors = append(translatedErrors, "reason_required", "invalid_reason")
}

// Bounds of the operator's forms.
const (
	maxOpForm = 16 << 10
	// maxFeedUpload is the API's bound on one feed request and room for
	// the form's other fields: a larger file is pushed with hcx feed push,
	// which splits it.
	maxFeedUpload = api.MaxFeedBody + 64<<10
	// opPage is how many rows a queue page shows.
	opPage = 50
)

// needStaff handles the error of a staff page's read: not logged in sends
// the browser to log in at the identity provider and come back here;
// any other refusal is shown on the error page.
func (s *Server) needStaff(w http.ResponseWriter, r *http.Request, err error) bool {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
		redirect(w, r, "/v1/auth/oidc/login?next="+url.QueryEscape(r.URL.Path))
		return false
	}
	if err != nil {
		s.formError(w, r, "error", err)
		return false
	}
	return true
}

// withReason is r carrying the form's reason as X-HCX-Reason, for the
// API's audit trail. An empty reason sends none: the API refuses an
// audited call without one, naming the header, which opField maps back
// to the form's field.
func withReason(r *http.Request, reason string) *http.Request {
	c := r.Clone(r.Context())
	c.Header = r.Header.Clone()
	c.Header.Del(auth.HeaderReason)
	if reason = strings.TrimSpace(reason); reason != "" {
		c.Header.Set(auth.HeaderReason, reason)
	}
	return c
}

// opField moves an API refusal onto the form field it is about: an item
// of a list ("areas[0].from") onto its field ("from"), the fields named in
// rename onto theirs, and the reason header, unless rename names it (a
// page with several reason fields), onto "reason".
func opField(err error, rename map[string]string) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	c := *fe
	if i := strings.LastIndex(c.Field, "]."); i >= 0 {
		c.Field = c.Field[i+2:]
	}
	if to, ok := rename[c.Field]; ok {
		c.Field = to
	} else if c.Field == auth.HeaderReason {
		c.Field = "reason"
	}
	return &c
}

// parseOpForm reads a urlencoded form of at most maxOpForm bytes.
func parseOpForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxOpForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form is unreadable or over 16 KiB", http.StatusBadRequest)
		return false
	}
	return true
}

// showOp renders an operator's page with data, and with err (an API
// refusal, 4xx) when a form is shown again.
func (s *Server) showOp(w http.ResponseWriter, r *http.Request, page string, data any, err error) {
	status := http.StatusOK
	var fe *FieldError
	if err != nil {
		if !errors.As(err, &fe) {
			s.log.Error("web: API call failed", "page", page, "err", err)
			fe = &FieldError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
		}
		status = fe.Status
		fe = onPage(fe, page)
	}
	s.render(w, r, status, page, Page{Who: s.staffWho(r), Error: fe, Data: data})
}

// pageFields are the fields each staff page shows a refusal next to.
var pageFields = map[string][]string{
	"operator-appeals": {"reason"},
	"operator-appeal":  {"decision", "decision_reason", "reason"},
	"operator-feeds":   {"kind", "format", "file", "reason"},
	"operator-orders":  {"sub", "colour", "note", "reason", "find-sub", "find-reason", "lift-reason"},
	"operator-risk":    {"div", "level", "from", "to", "reason", "end-reason"},
	"operator-devices": {"reason"},
	"operator-rules":   {"candidate", "publish-reason", "sub", "explain-reason"},
}

// onPage is fe as page shows it: a refusal naming a field the page has
// no input for (a list item such as "areas[0]", a header) is shown at the
// top of the page, where the layout shows refusals without a field;
// otherwise nobody would see it.
func onPage(fe *FieldError, page string) *FieldError {
	if fe.Field == "" || slices.Contains(pageFields[page], fe.Field) {
		return fe
	}
	c := *fe
	c.Field = ""
	return &c
}

// textIn picks a node.Text in the page's language.
func textIn(t node.Text, lang string) string {
	switch lang {
	case "en":
		return t.EN
	case "ja":
		return t.JA
	case "ko":
		return t.KO
	}
	return t.ZH
}

// operatorHome is the landing page: the queues' counts.
type operatorHome struct {
	Appeals, Devices, RiskAreas int
	AppealsMore                 bool
}

func (s *Server) operator(w http.ResponseWriter, r *http.Request) {
	var (
		appeals node.AppealPage
		devs    struct {
			Enrolments []node.Enrolment `json:"enrolments"`
		}
		areas struct {
			Areas []node.RiskArea `json:"areas"`
		}
	)
	err := s.getJSON(r, "/v1/appeals?limit="+strconv.Itoa(opPage), &appeals)
	if err == nil {
		err = s.getJSON(r, "/v1/devices/enrolments?status="+node.EnrolmentPending, &devs)
	}
	if err == nil {
		err = s.getJSON(r, "/v1/risk-areas?in_force=true", &areas)
	}
	if !s.needStaff(w, r, err) {
		return
	}
	s.render(w, r, http.StatusOK, "operator", Page{Who: s.staffWho(r), Data: operatorHome{
		Appeals: len(appeals.Appeals), AppealsMore: appeals.Next != "", Devices: len(devs.Enrolments), RiskAreas: len(areas.Areas)}})
}

// appealRow is an appeal of the queue, its status in the page's language.
type appealRow struct {
	*node.Appeal
	StatusText string
}

type opAppealsPage struct {
	Appeals []appealRow
	Next    string
}

func (s *Server) opAppeals(w http.ResponseWriter, r *http.Request) {
	var page node.AppealPage
	path := "/v1/appeals?limit=" + strconv.Itoa(opPage)
	if after := r.URL.Query().Get("after"); after != "" {
		path += "&after=" + url.QueryEscape(after)
	}
	if !s.needStaff(w, r, s.getJSON(r, path, &page)) {
		return
	}
	lang := s.i18n.lang(r)
	data := opAppealsPage{Next: page.Next}
	for _, a := range page.Appeals {
		data.Appeals = append(data.Appeals, appealRow{a, textIn(a.StatusText, lang)})
	}
	s.render(w, r, http.StatusOK, "operator-appeals", Page{Who: s.staffWho(r), Data: data})
}

// opAppealView is an opened appeal: its evidence and the decision form.
type opAppealView struct {
	Evidence   node.Evidence
	StatusText string
	PreCheck   string
	Reason     string // the audit reason the operator opened it with
}

// opAppealOpen opens an appeal (the API marks it under review and answers
// the evidence; an audited read of the person's records) and shows the
// decision form.
func (s *Server) opAppealOpen(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	s.showAppeal(w, r, r.PathValue("id"), r.PostForm.Get("reason"), nil)
}

// showAppeal opens appeal id with reason and shows it, with decideErr
// (the decision's refusal) next to its field.
func (s *Server) showAppeal(w http.ResponseWriter, r *http.Request, id, reason string, decideErr error) {
	var ev node.Evidence
	_, err := s.api.Do(withReason(r, reason), http.MethodPost, "/v1/appeals/"+url.PathEscape(id)+"/open", nil, &ev)
	if err != nil {
		if fe := (*FieldError)(nil); errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
			s.needStaff(w, r, err)
			return
		}
		// The reason was missing or the appeal is gone: back to the queue
		// with the refusal next to the reason field.
		var page node.AppealPage
		_ = s.getJSON(r, "/v1/appeals?limit="+strconv.Itoa(opPage), &page)
		lang := s.i18n.lang(r)
		data := opAppealsPage{Next: page.Next}
		for _, a := range page.Appeals {
			data.Appeals = append(data.Appeals, appealRow{a, textIn(a.StatusText, lang)})
		}
		s.showOp(w, r, "operator-appeals", data, opField(err, nil))
		return
	}
	lang := s.i18n.lang(r)
	v := opAppealView{Evidence: ev, PreCheck: textIn(ev.PreCheck.Summary, lang), Reason: reason}
	if ev.Appeal != nil {
		v.StatusText = textIn(ev.Appeal.StatusText, lang)
	}
	s.showOp(w, r, "operator-appeal", v, decideErr)
}

func (s *Server) opAppealDecide(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	f := r.PostForm
	req := node.DecisionRequest{Decision: f.Get("decision"), Reason: strings.TrimSpace(f.Get("decision_reason"))}
	for _, v := range f["void"] {
		kind, id, ok := strings.Cut(v, "/")
		if !ok {
			s.showAppeal(w, r, r.PathValue("id"), f.Get("reason"), &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: "void", Message: "void: want kind/id"})
			return
		}
		req.Void = append(req.Void, node.RecordRef{Kind: kind, ID: id})
	}
	_, err := s.api.Do(withReason(r, f.Get("reason")), http.MethodPost, "/v1/appeals/"+url.PathEscape(r.PathValue("id"))+"/decision", req, nil)
	if err != nil {
		s.showAppeal(w, r, r.PathValue("id"), f.Get("reason"), opField(err, map[string]string{"reason": "decision_reason"}))
		return
	}
	redirect(w, r, "/app/operator/appeals?done=appeal_decided")
}

// feedKinds are the feeds an operator may upload, as the API names them.
var feedKinds = []string{api.FeedResidents, api.FeedLabs, api.FeedVaccinations, api.FeedItineraries, api.FeedContacts}

// feedFormats are the formats of an upload and their media types.
var feedFormats = map[string]string{
	"ndjson":      "application/x-ndjson",
	"fhir-ndjson": "application/fhir+ndjson",
	"fhir-json":   "application/fhir+json",
}

// feedPage is the upload form and, after an upload, the API's result with
// the lines it refused.
type feedPage struct {
	Kinds  []string
	Kind   string
	Format string
	File   string
	Result *api.FeedResult
}

func (s *Server) opFeeds(w http.ResponseWriter, r *http.Request) {
	// The page itself reads nothing; an anonymous browser still goes to
	// log in first (the upload would be refused).
	if !s.needStaff(w, r, s.getJSON(r, "/v1/devices/enrolments?status="+node.EnrolmentPending, nil)) {
		return
	}
	s.render(w, r, http.StatusOK, "operator-feeds", Page{Who: s.staffWho(r), Data: feedPage{Kinds: feedKinds, Kind: api.FeedLabs, Format: "ndjson"}})
}

// opFeedUpload sends an uploaded file to POST /v1/feeds/<kind> as one
// request and shows the API's per-line result. The file's lines are the
// request's, so the line numbers the API names are the file's.
func (s *Server) opFeedUpload(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFeedUpload)
	data := feedPage{Kinds: feedKinds}
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		s.showOp(w, r, "operator-feeds", data, &FieldError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "file",
			Message: "the upload is unreadable or over " + strconv.Itoa(api.MaxFeedBody>>20) + " MiB; push larger files with hcx feed push, which splits them"})
		return
	}
	defer r.MultipartForm.RemoveAll()
	data.Kind, data.Format = r.FormValue("kind"), r.FormValue("format")
	ctype, ok := feedFormats[data.Format]
	if !ok {
		s.showOp(w, r, "operator-feeds", data, &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: "format", Message: "format: want ndjson, fhir-ndjson or fhir-json"})
		return
	}
	known := false
	for _, k := range feedKinds {
		known = known || k == data.Kind
	}
	if !known {
		s.showOp(w, r, "operator-feeds", data, &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: "kind", Message: "kind: want one of " + strings.Join(feedKinds, ", ")})
		return
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		s.showOp(w, r, "operator-feeds", data, &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: "file", Message: "file: choose the file to upload"})
		return
	}
	defer file.Close()
	data.File = hdr.Filename
	body, err := io.ReadAll(io.LimitReader(file, api.MaxFeedBody+1))
	if err == nil && len(body) > api.MaxFeedBody {
		err = &FieldError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "file", Message: "the file is over the API's bound for one request; push it with hcx feed push, which splits it"}
	}
	if err != nil {
		s.showOp(w, r, "operator-feeds", data, err)
		return
	}
	var res api.FeedResult
	_, err = s.rawAPI(withReason(r, r.FormValue("reason")), http.MethodPost, "/v1/feeds/"+data.Kind, ctype, body).Decode(&res)
	if err != nil {
		s.showOp(w, r, "operator-feeds", data, opField(err, map[string]string{"body": "file", "Content-Type": "format"}))
		return
	}
	data.Result = &res
	s.showOp(w, r, "operator-feeds", data, nil)
}

// rawAPI is APICaller.Serve for a body that is not JSON (a feed file).
func (s *Server) rawAPI(r *http.Request, method, path, ctype string, body []byte) *Recorder {
	req := r.Clone(r.Context())
	req.Method, req.URL.Path, req.URL.RawPath, req.URL.RawQuery, req.RequestURI = method, path, "", "", ""
	req.Header = r.Header.Clone()
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", ctype)
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	rec := &Recorder{header: http.Header{}}
	s.api.Handler.ServeHTTP(rec, req)
	return rec
}

// ordersPage shows the red orders awaiting national confirmation and one
// resident's orders; both are audited reads, shown once a reason is given.
type ordersPage struct {
	Asked   bool // a reason was given: the lists were read
	Pending []node.CDCOrder
	Sub     string
	Orders  []node.CDCOrder
}

func (s *Server) opOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := ordersPage{Sub: strings.TrimSpace(q.Get("sub"))}
	if q.Get("reason") == "" && data.Sub == "" {
		// Nothing asked yet; an anonymous browser still goes to log in.
		if !s.needStaff(w, r, s.getJSON(r, "/v1/devices/enrolments?status="+node.EnrolmentPending, nil)) {
			return
		}
		s.render(w, r, http.StatusOK, "operator-orders", Page{Who: s.staffWho(r), Data: data})
		return
	}
	rr := withReason(r, q.Get("reason"))
	var page node.OrderPage
	_, err := s.api.Do(rr, http.MethodGet, "/v1/orders?state=pending&limit="+strconv.Itoa(opPage), nil, &page)
	if err == nil && data.Sub != "" {
		var mine struct {
			Orders []node.CDCOrder `json:"orders"`
		}
		_, err = s.api.Do(rr, http.MethodGet, "/v1/residents/"+url.PathEscape(data.Sub)+"/orders", nil, &mine)
		data.Orders = mine.Orders
	}
	if fe := (*FieldError)(nil); errors.As(err, &fe) && fe.Status == http.StatusUnauthorized {
		s.needStaff(w, r, err)
		return
	}
	data.Asked, data.Pending = err == nil, page.Orders
	s.showOp(w, r, "operator-orders", data, opField(err, map[string]string{"sub": "find-sub", auth.HeaderReason: "find-reason"}))
}

func (s *Server) opOrderPlace(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	f := r.PostForm
	sub := strings.TrimSpace(f.Get("sub"))
	if sub == "" {
		s.showOp(w, r, "operator-orders", ordersPage{}, &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: "sub", Message: "sub: name the resident by their subject"})
		return
	}
	body := map[string]string{"colour": f.Get("colour"), "note": strings.TrimSpace(f.Get("note"))}
	_, err := s.api.Do(withReason(r, f.Get("reason")), http.MethodPost, "/v1/residents/"+url.PathEscape(sub)+"/orders", body, nil)
	if err != nil {
		s.showOp(w, r, "operator-orders", ordersPage{}, opField(err, nil))
		return
	}
	redirect(w, r, "/app/operator/orders?done=order_placed")
}

func (s *Server) opOrderLift(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	_, err := s.api.Do(withReason(r, r.PostForm.Get("reason")), http.MethodPost,
		"/v1/residents/"+url.PathEscape(r.PathValue("sub"))+"/orders/"+url.PathEscape(r.PathValue("id"))+"/lift", nil, nil)
	if err != nil {
		s.showOp(w, r, "operator-orders", ordersPage{Sub: r.PathValue("sub")}, opField(err, map[string]string{auth.HeaderReason: "lift-reason"}))
		return
	}
	redirect(w, r, "/app/operator/orders?done=order_lifted")
}

// riskPage lists the risk areas in force (anyone may read them) and the
// designation form.
type riskPage struct {
	Areas []riskRow
	Now   string // the form's default start, datetime-local
}

// riskRow is an area in force and the key that ends it.
type riskRow struct {
	node.RiskArea
	FromKey string // From, RFC 3339: the designation's key with Div
}

func (s *Server) riskPageData(r *http.Request) (riskPage, error) {
	var list struct {
		Areas []node.RiskArea `json:"areas"`
	}
	err := s.getJSON(r, "/v1/risk-areas?in_force=true", &list)
	data := riskPage{Now: time.Now().Format(datetimeLocal)}
	for _, a := range list.Areas {
		data.Areas = append(data.Areas, riskRow{a, a.From.Format(time.RFC3339)})
	}
	return data, err
}

// datetimeLocal is the value format of an <input type="datetime-local">.
const datetimeLocal = "2006-01-02T15:04"

func (s *Server) opRiskAreas(w http.ResponseWriter, r *http.Request) {
	data, err := s.riskPageData(r)
	if err == nil {
		// The list is public; the page is an operator's.
		err = s.getJSON(r, "/v1/devices/enrolments?status="+node.EnrolmentPending, nil)
	}
	if !s.needStaff(w, r, err) {
		return
	}
	s.render(w, r, http.StatusOK, "operator-risk", Page{Who: s.staffWho(r), Data: data})
}

// formTime reads a datetime-local field in the server's zone; empty is
// the zero time.
func formTime(v, field string) (time.Time, error) {
	if v = strings.TrimSpace(v); v == "" {
		return time.Time{}, nil
	}
	t, err := time.ParseInLocation(datetimeLocal, v, time.Local)
	if err != nil {
		return t, &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: field, Message: field + ": want a date and time, such as 2026-11-24T08:00"}
	}
	return t, nil
}

func (s *Server) opRiskDesignate(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	f := r.PostForm
	in := node.RiskAreaInput{Level: f.Get("level")}
	in.Div = hcx.DivisionCode(strings.TrimSpace(f.Get("div")))
	from, err := formTime(f.Get("from"), "from")
	if err == nil && from.IsZero() {
		from = time.Now()
	}
	in.From = from
	var to time.Time
	if err == nil {
		to, err = formTime(f.Get("to"), "to")
	}
	if !to.IsZero() {
		in.To = &to
	}
	if err == nil {
		_, err = s.api.Do(withReason(r, f.Get("reason")), http.MethodPost, "/v1/risk-areas", map[string]any{"areas": []node.RiskAreaInput{in}}, nil)
	}
	if err != nil {
		data, _ := s.riskPageData(r)
		s.showOp(w, r, "operator-risk", data, opField(err, nil))
		return
	}
	redirect(w, r, "/app/operator/risk-areas?done=risk_area_designated")
}

func (s *Server) opRiskEnd(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	f := r.PostForm
	body := map[string]string{"div": f.Get("div"), "from": f.Get("from")}
	_, err := s.api.Do(withReason(r, f.Get("reason")), http.MethodPost, "/v1/risk-areas/end", body, nil)
	if err != nil {
		data, _ := s.riskPageData(r)
		s.showOp(w, r, "operator-risk", data, opField(err, map[string]string{auth.HeaderReason: "end-reason"}))
		return
	}
	redirect(w, r, "/app/operator/risk-areas?done=risk_area_ended")
}

// deviceRow is a pending enrolment, its filing time as a time.
type deviceRow struct {
	node.Enrolment
	FiledAt time.Time
}

func (s *Server) devicesData(r *http.Request) ([]deviceRow, error) {
	var list struct {
		Enrolments []node.Enrolment `json:"enrolments"`
	}
	err := s.getJSON(r, "/v1/devices/enrolments?status="+node.EnrolmentPending, &list)
	var rows []deviceRow
	for _, e := range list.Enrolments {
		rows = append(rows, deviceRow{e, time.Unix(e.Filed, 0)})
	}
	return rows, err
}

func (s *Server) opDevices(w http.ResponseWriter, r *http.Request) {
	list, err := s.devicesData(r)
	if !s.needStaff(w, r, err) {
		return
	}
	s.render(w, r, http.StatusOK, "operator-devices", Page{Who: s.staffWho(r), Data: list})
}

func (s *Server) opDeviceDecide(w http.ResponseWriter, r *http.Request) {
	if !parseOpForm(w, r) {
		return
	}
	d := r.PathValue("decision")
	if d != "approve" && d != "reject" {
		http.NotFound(w, r)
		return
	}
	reason := r.PostForm.Get("reason")
	_, err := s.api.Do(withReason(r, reason), http.MethodPost, "/v1/devices/enrolments/"+url.PathEscape(r.PathValue("id"))+"/"+d,
		map[string]string{"reason": strings.TrimSpace(reason)}, nil)
	if err != nil {
		list, _ := s.devicesData(r)
		s.showOp(w, r, "operator-devices", list, opField(err, nil))
		return
	}
	if d == "approve" {
		redirect(w, r, "/app/operator/devices?done=device_approved")
		return
	}
	redirect(w, r, "/app/operator/devices?done=device_rejected")
}

// auditPage is a page of the audit trail, oldest first.
type auditPage struct {
	Page   *node.AuditPage
	After  uint64
	Next   uint64 // after= of the next page
	Latest uint64 // after= of the newest page
}

func (s *Server) opAudit(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.formError(w, r, "error", &FieldError{Status: http.StatusBadRequest, Code: "invalid", Field: "after", Message: "after: want a whole number"})
			return
		}
		after = n
	}
	var page node.AuditPage
	if !s.needStaff(w, r, s.getJSON(r, "/v1/audit?limit="+strconv.Itoa(opPage)+"&after="+strconv.FormatUint(after, 10), &page)) {
		return
	}
	data := auditPage{Page: &page, After: after}
	if n := len(page.Entries); n > 0 {
		data.Next = page.Entries[n-1].Seq
	}
	if page.Head.Seq > opPage {
		data.Latest = page.Head.Seq - opPage
	}
	s.render(w, r, http.StatusOK, "operator-audit", Page{Who: s.staffWho(r), Data: data})
}
