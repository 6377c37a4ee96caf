package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/devidp"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/node"
)

// Appeals through the HTTP API of a real federation, with real roles: a
// feed's wrong positive lab result, appealed by the resident, opened and
// accepted by an operator, turns the resident green, and the attestation
// of green reaches a checkpoint in another province through the hub; a
// rejected appeal changes nothing; an appeal on someone else's record
// writes nothing; every step is in the audit trail.

type appealAnswer struct {
	ID          string              `json:"id"`
	Subject     hcx.Subject         `json:"subject"`
	Kind        string              `json:"kind"`
	Status      string              `json:"status"`
	StatusText  node.Text           `json:"status_text"`
	Reason      string              `json:"reason"`
	Voided      []node.VoidedRecord `json:"voided"`
	ColourAfter hcx.Colour          `json:"colour_after"`
}

type errorAnswer struct {
	Error struct {
		Code  string `json:"code"`
		Field string `json:"field"`
	} `json:"error"`
}

func residentColour(t *testing.T, f *federation, who caller, p hcx.ProvinceCode, sub hcx.Subject) hcx.Colour {
	t.Helper()
	var res struct {
		Status struct {
			Colour hcx.Colour `json:"colour"`
		} `json:"status"`
	}
	if st := callAs(t, f.client(), who, "GET", f.NodeURLs[p]+"/v1/residents/"+string(sub), nil, &res); st != http.StatusOK {
		t.Fatalf("read resident %s: status %d", sub, st)
	}
	return res.Status.Colour
}

// auditActions are the trail's entries about sub, as "action" strings in
// order, read page by page through GET /v1/audit as the operator.
func auditActions(t *testing.T, f *federation, p hcx.ProvinceCode, sub hcx.Subject) []node.AuditRecord {
	t.Helper()
	var out []node.AuditRecord
	after := uint64(0)
	for {
		var page node.AuditPage
		url := f.NodeURLs[p] + "/v1/audit?limit=1000&after=" + itoa(after)
		if st := callAs(t, f.client(), f.asOperator(t, p), "GET", url, nil, &page); st != http.StatusOK {
			t.Fatalf("read the audit trail: status %d", st)
		}
		for _, e := range page.Entries {
			if e.Subject == sub {
				out = append(out, e)
			}
			after = e.Seq
		}
		if !page.More {
			return out
		}
	}
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func hasAction(es []node.AuditRecord, action, actorPrefix string) *node.AuditRecord {
	for i := range es {
		if es[i].Action == action && strings.HasPrefix(es[i].Actor, actorPrefix) {
			return &es[i]
		}
	}
	return nil
}

func TestAppealVoidsAWrongPositiveAndGreenReachesAnotherProvince(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd, sc hcx.ProvinceCode = "440000", "510000"
	url := f.NodeURLs[gd]
	op := f.asOperator(t, gd)
	id := func(first17 string) string { return first17 + string(hcx.CNIDCheckDigit(first17)) }
	sub, res := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619900101555"), "name": "张三"})
	otherSub, other := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010619850505666"), "name": "李四"})
	waitKnown(t, f, f.asFeed(gd), url+"/readyz")
	waitKnown(t, f, f.asCheckpoint(sc), f.NodeURLs[sc]+"/readyz")

	// The bureau's feed posts a positive PCR result for 张三 (sample
	// S-0001, a lab's mistake) and a true negative for 李四.
	if st := callAs(t, f.client(), f.asFeed(gd), "POST", url+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive", "id": "S-0001"}, nil); st != http.StatusOK {
		t.Fatalf("post the positive result: status %d", st)
	}
	if st := callAs(t, f.client(), f.asFeed(gd), "POST", url+"/v1/residents/"+string(otherSub)+"/labs", map[string]string{"result": "negative", "id": "S-0002"}, nil); st != http.StatusOK {
		t.Fatalf("post the negative result: status %d", st)
	}
	if c := residentColour(t, f, res, gd, sub); c != hcx.Red {
		t.Fatalf("after the positive result 张三 is %s, want red", c)
	}
	// Sichuan's checkpoint sees red once the attestation is through the hub.
	verifyAt := func(want hcx.Colour) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var code struct {
				Code string `json:"code"`
			}
			if st := callAs(t, f.client(), res, "GET", url+"/v1/residents/"+string(sub)+"/code", nil, &code); st != http.StatusOK {
				t.Fatalf("open the code: status %d", st)
			}
			var v struct {
				Valid  bool       `json:"valid"`
				Colour hcx.Colour `json:"colour"`
			}
			st := callAs(t, f.client(), f.asCheckpoint(sc), "POST", f.NodeURLs[sc]+"/v1/verify", map[string]string{"code": code.Code}, &v)
			if st == http.StatusOK && v.Valid && v.Colour == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Sichuan's checkpoint sees %d %+v, want %s", st, v, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	verifyAt(hcx.Red)

	// Appeals on someone else's record: through another resident's route
	// the gate refuses (403); on one's own route, naming the other's record
	// id, the record is not found (404 naming record.id). Nothing is written.
	waitSettled(t, f)
	before := auditSeq(t, f.Nodes[gd])
	appeal := map[string]any{"kind": "record", "record": map[string]string{"kind": "lab", "id": "S-0001"}, "text": "我没有做过这次核酸检测 / I was not tested that day"}
	var e errorAnswer
	if st := callAs(t, f.client(), other, "POST", url+"/v1/residents/"+string(sub)+"/appeals", appeal, &e); st != http.StatusForbidden {
		t.Errorf("李四 appeals 张三's record: status %d, want 403", st)
	}
	if st := callAs(t, f.client(), other, "POST", url+"/v1/residents/"+string(otherSub)+"/appeals", appeal, &e); st != http.StatusNotFound || e.Error.Field != "record.id" {
		t.Errorf("李四 appeals S-0001 as their own: status %d %+v, want 404 naming record.id", st, e)
	}
	for _, bad := range []map[string]any{
		{"kind": "record", "text": "x"},
		{"kind": "record", "record": map[string]string{"kind": "lab", "id": "S-0001"}, "text": strings.Repeat("长", node.MaxAppealText+1)},
		{"kind": "record", "record": map[string]string{"kind": "pcr", "id": "S-0001"}, "text": "x"},
		{"kind": "colour", "text": ""},
		{"kind": "reclaim", "text": "x"},
	} {
		if st := callAs(t, f.client(), res, "POST", url+"/v1/residents/"+string(sub)+"/appeals", bad, &e); st != http.StatusBadRequest || e.Error.Field == "" {
			t.Errorf("appeal %v: status %d %+v, want 400 naming the field", bad, st, e)
		}
	}
	if after := auditSeq(t, f.Nodes[gd]); after != before {
		t.Errorf("refused appeals wrote to the store: audit trail head %d -> %d", before, after)
	}

	// 张三 appeals the record.
	var filed appealAnswer
	if st := callAs(t, f.client(), res, "POST", url+"/v1/residents/"+string(sub)+"/appeals", appeal, &filed); st != http.StatusCreated || filed.Status != node.AppealFiled || filed.StatusText.ZH == "" {
		t.Fatalf("file the appeal: status %d %+v", st, filed)
	}
	// The operator lists the open appeals and opens this one.
	var page node.AppealPage
	if st := callAs(t, f.client(), op, "GET", url+"/v1/appeals?limit=10", nil, &page); st != http.StatusOK || len(page.Appeals) != 1 || page.Appeals[0].ID != filed.ID {
		t.Fatalf("open appeals: status %d %+v", st, page)
	}
	var ev node.Evidence
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed.ID+"/open", nil, &ev); st != http.StatusOK {
		t.Fatalf("open the appeal: status %d", st)
	}
	if ev.Appeal.Status != node.AppealUnderReview || ev.Status.Colour != hcx.Red || len(ev.Records) != 1 || ev.Records[0].ID != "S-0001" || ev.Records[0].Event.Lab == nil || !ev.Records[0].Event.Lab.Positive {
		t.Errorf("evidence: %+v", ev)
	}
	if len(ev.PreCheck.RestsOn) != 1 || ev.PreCheck.RestsOn[0] != (node.RecordRef{Kind: "lab", ID: "S-0001"}) || ev.PreCheck.Summary.EN == "" {
		t.Errorf("pre-check: %+v", ev.PreCheck)
	}
	var mine appealAnswer
	if st := callAs(t, f.client(), res, "GET", url+"/v1/residents/"+string(sub)+"/appeals/"+filed.ID, nil, &mine); st != http.StatusOK || mine.Status != node.AppealUnderReview {
		t.Errorf("the resident's view while under review: status %d %+v", st, mine)
	}
	// 李四 cannot read it, even knowing its id.
	if st := callAs(t, f.client(), other, "GET", url+"/v1/residents/"+string(otherSub)+"/appeals/"+filed.ID, nil, &e); st != http.StatusNotFound {
		t.Errorf("李四 reads 张三's appeal through their own route: status %d, want 404", st)
	}

	// A decision without a reason is refused and writes nothing.
	before = auditSeq(t, f.Nodes[gd])
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed.ID+"/decision", map[string]string{"decision": "accept"}, &e); st != http.StatusBadRequest || e.Error.Field != "reason" {
		t.Errorf("decision without a reason: status %d %+v", st, e)
	}
	if after := auditSeq(t, f.Nodes[gd]); after != before {
		t.Errorf("a refused decision wrote to the store")
	}
	var d node.AppealDecision
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed.ID+"/decision", map[string]string{"decision": "accept", "reason": "实验室确认样本标签错误 / the lab confirmed a mislabelled sample"}, &d); st != http.StatusOK {
		t.Fatalf("accept: status %d", st)
	}
	if d.Appeal.Status != node.AppealAccepted || d.Status == nil || d.Status.Colour != hcx.Green || len(d.Appeal.Voided) != 1 || d.Appeal.ColourBefore != hcx.Red || d.Appeal.ColourAfter != hcx.Green {
		t.Errorf("decision: %+v status %+v", d.Appeal, d.Status)
	}
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed.ID+"/decision", map[string]string{"decision": "reject", "reason": "again"}, &e); st != http.StatusConflict || e.Error.Code != "appeal_decided" {
		t.Errorf("decide twice: status %d %+v", st, e)
	}
	if c := residentColour(t, f, res, gd, sub); c != hcx.Green {
		t.Errorf("after the accepted appeal 张三 is %s, want green", c)
	}
	if st := callAs(t, f.client(), res, "GET", url+"/v1/residents/"+string(sub)+"/appeals/"+filed.ID, nil, &mine); st != http.StatusOK || mine.Status != node.AppealAccepted || mine.Reason == "" || len(mine.Voided) != 1 || mine.ColourAfter != hcx.Green {
		t.Errorf("the resident's view of the outcome: status %d %+v", st, mine)
	}
	// The feed sending the voided result again does not bring it back.
	if st := callAs(t, f.client(), f.asFeed(gd), "POST", url+"/v1/residents/"+string(sub)+"/labs", map[string]string{"result": "positive", "id": "S-0001"}, nil); st != http.StatusOK && st != http.StatusConflict {
		t.Errorf("re-sent voided result: status %d", st)
	}
	if c := residentColour(t, f, res, gd, sub); c != hcx.Green {
		t.Errorf("the re-sent voided result turned 张三 %s", c)
	}
	// The attestation of green reaches Sichuan through the hub.
	verifyAt(hcx.Green)
	// The hub's answer for the subject is Guangdong's latest attestation:
	// green, the second after the red (read with the auditor's certificate).
	var logged exchange.SubjectAnswer
	hubURL := f.HubURLs[0] + "/v1/subjects/" + string(sub)
	if st := callAs(t, f.client(), f.asMachine("auditor-cert", f.PKI.Auditor), "GET", hubURL, nil, &logged); st != http.StatusOK || len(logged.Attestations) != 1 {
		t.Fatalf("the hub's attestations about 张三: status %d %+v", st, logged)
	}
	if last := logged.Attestations[len(logged.Attestations)-1]; last.Iss != gd || last.Colour != hcx.Green || last.N != 2 {
		t.Errorf("the hub's last attestation about 张三: %+v, want Guangdong's green", last)
	}

	// A rejected appeal changes nothing: 李四's negative result stays.
	var filed2 appealAnswer
	if st := callAs(t, f.client(), other, "POST", url+"/v1/residents/"+string(otherSub)+"/appeals", map[string]any{"kind": "colour", "text": "please check"}, &filed2); st != http.StatusCreated {
		t.Fatalf("file the second appeal: status %d", st)
	}
	colourBefore := residentColour(t, f, other, gd, otherSub)
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed2.ID+"/decision", map[string]string{"decision": "reject", "reason": "the records are right"}, &d); st != http.StatusOK || d.Appeal.Status != node.AppealRejected {
		t.Fatalf("reject: status %d %+v", st, d.Appeal)
	}
	if c := residentColour(t, f, other, gd, otherSub); c != colourBefore {
		t.Errorf("a rejected appeal changed the colour: %s -> %s", colourBefore, c)
	}
	var again node.Evidence
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed2.ID+"/open", nil, &again); st != http.StatusOK || again.Appeal.Status != node.AppealRejected {
		t.Errorf("open the rejected appeal: status %d %+v", st, again.Appeal)
	}
	if st := callAs(t, f.client(), op, "GET", url+"/v1/appeals", nil, &page); st != http.StatusOK || len(page.Appeals) != 0 {
		t.Errorf("open appeals after both decisions: %d %+v", st, page)
	}

	// A guardian appeals for their dependant (李四 for the child they
	// registered, Tianjin rules); the appeal says who filed it.
	kid := f.dependantOf(t, gd, otherSub, other, map[string]string{"doc_type": "CN-ID", "doc_number": id("44010620170707777"), "name": "李小"})
	var byGuardian appealAnswer
	if st := callAs(t, f.client(), other, "POST", url+"/v1/residents/"+string(kid)+"/appeals", map[string]any{"kind": "colour", "text": "替孩子申诉 / for my child"}, &byGuardian); st != http.StatusCreated || byGuardian.Subject != kid {
		t.Errorf("the guardian's appeal: status %d %+v", st, byGuardian)
	}
	var forDependant struct {
		Appeals []struct {
			ID      string `json:"id"`
			FiledBy string `json:"filed_by"`
		} `json:"appeals"`
	}
	if st := callAs(t, f.client(), other, "GET", url+"/v1/residents/"+string(kid)+"/appeals", nil, &forDependant); st != http.StatusOK || len(forDependant.Appeals) != 1 || forDependant.Appeals[0].FiledBy != "resident:"+string(otherSub) {
		t.Errorf("the child's appeals after the guardian's: status %d %+v", st, forDependant)
	}
	if st := callAs(t, f.client(), res, "GET", url+"/v1/residents/"+string(kid)+"/appeals", nil, nil); st != http.StatusForbidden {
		t.Errorf("张三 reads 李四's child's appeals: status %d, want 403", st)
	}

	// Every step is in the trail, with the actor and the reason.
	trail := auditActions(t, f, gd, sub)
	for _, step := range []struct{ action, actor string }{
		{node.ActionAppealFile, "resident:"}, {node.ActionAppealOpen, "oidc:"}, {node.ActionAppealDecide, "oidc:"}, {node.ActionRecordVoid, "oidc:"},
	} {
		e := hasAction(trail, step.action, step.actor)
		if e == nil {
			t.Errorf("no %s by %s… about 张三 in the trail", step.action, step.actor)
			continue
		}
		if step.actor == "oidc:" && e.Why == "" {
			t.Errorf("%s has no reason: %+v", step.action, e)
		}
		if strings.Contains(e.Note, "张") || strings.Contains(e.Note, "4401") {
			t.Errorf("%s note names the resident: %q", step.action, e.Note)
		}
	}
	if e := hasAction(trail, node.ActionRecordVoid, "oidc:"); e != nil && !strings.Contains(e.Note, "lab/S-0001") {
		t.Errorf("record.void note %q does not name the record", e.Note)
	}
	if hasAction(auditActions(t, f, gd, otherSub), node.ActionAppealDecide, "oidc:") == nil {
		t.Errorf("the rejection is not in the trail")
	}
}

// A squatter registered li-lei's document under another name and logged
// in. li-lei proves the document with the identity provider and files a
// reclaim; the squatter cannot reclaim it back; the operator accepts, which
// ends the squatter's session (their next request is 401) and gives li-lei
// an enrolment code they log in with.
func TestReclaimEndsTheSquatterAndTheOwnerLogsIn(t *testing.T) {
	f := startTestFederation(t, 1)
	const gd hcx.ProvinceCode = "440000"
	url := f.NodeURLs[gd]
	op := f.asOperator(t, gd)
	var owner *devidp.User
	for _, u := range f.IdP.Users() {
		if u.Name == "li-lei" {
			owner = &u
		}
	}
	sub, squatter := f.asResident(t, gd, map[string]string{"doc_type": "CN-ID", "doc_number": owner.DocNumber, "name": "王冒名"})
	// The squatter holds a dependant under the identity, too.
	kid := f.dependantOf(t, gd, sub, squatter, map[string]string{"doc_type": "CN-ID", "doc_number": "440106201805050010", "name": "王小冒"})
	if st := callAs(t, f.client(), squatter, "GET", url+"/v1/residents/"+string(sub), nil, nil); st != http.StatusOK {
		t.Fatalf("the squatter's session: status %d", st)
	}

	// The squatter, logged in, cannot file a reclaim: a session proves
	// nothing about the document.
	var e errorAnswer
	before := auditSeq(t, f.Nodes[gd])
	if st := callAs(t, f.client(), squatter, "POST", url+"/v1/reclaims", map[string]string{"text": "mine"}, &e); st != http.StatusBadRequest || e.Error.Field != "Authorization" {
		t.Errorf("the squatter files a reclaim: status %d %+v, want 400", st, e)
	}
	// Another resident's verified identity cannot reclaim li-lei's document:
	// the document is the token's, not the body's.
	if st := callAs(t, f.client(), f.asPerson(t, "han-meimei"), "POST", url+"/v1/reclaims", map[string]string{"doc_type": "CN-ID", "doc_number": owner.DocNumber, "name": "韩梅梅", "text": "mine"}, &e); st != http.StatusBadRequest {
		t.Errorf("han-meimei names li-lei's document: status %d %+v, want 400", st, e)
	}
	if after := auditSeq(t, f.Nodes[gd]); after != before {
		t.Errorf("refused reclaims wrote to the store")
	}

	// li-lei files it with their ID token.
	ownerCaller := f.asPerson(t, "li-lei")
	var filed appealAnswer
	if st := callAs(t, f.client(), ownerCaller, "POST", url+"/v1/reclaims", map[string]string{"text": "这是我的身份证，被他人冒用 / my document was registered by someone else"}, &filed); st != http.StatusCreated || filed.Kind != node.AppealReclaim || filed.Subject != sub {
		t.Fatalf("file the reclaim: status %d %+v", st, filed)
	}
	if st := callAs(t, f.client(), ownerCaller, "POST", url+"/v1/reclaims", map[string]string{"text": "again"}, &e); st != http.StatusConflict || e.Error.Code != "reclaim_open" {
		t.Errorf("a second reclaim while one is open: status %d %+v", st, e)
	}
	// The claimant follows it with their ID token; another resident's
	// token does not find it; the squatter's session does not see it.
	var seen appealAnswer
	if st := callAs(t, f.client(), ownerCaller, "GET", url+"/v1/reclaims/"+filed.ID, nil, &seen); st != http.StatusOK || seen.Status != node.AppealFiled {
		t.Errorf("the claimant reads the reclaim: status %d %+v", st, seen)
	}
	if st := callAs(t, f.client(), f.asPerson(t, "han-meimei"), "GET", url+"/v1/reclaims/"+filed.ID, nil, &e); st != http.StatusNotFound {
		t.Errorf("han-meimei reads li-lei's reclaim: status %d, want 404", st)
	}
	var list struct {
		Appeals []appealAnswer `json:"appeals"`
	}
	if st := callAs(t, f.client(), squatter, "GET", url+"/v1/residents/"+string(sub)+"/appeals", nil, &list); st != http.StatusOK || len(list.Appeals) != 0 {
		t.Errorf("the squatter lists the identity's appeals: status %d %+v, want none shown", st, list)
	}
	if st := callAs(t, f.client(), squatter, "GET", url+"/v1/residents/"+string(sub)+"/appeals/"+filed.ID, nil, &e); st != http.StatusNotFound {
		t.Errorf("the squatter reads the reclaim: status %d, want 404", st)
	}
	var ev node.Evidence
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed.ID+"/open", nil, &ev); st != http.StatusOK || ev.Reclaim == nil {
		t.Fatalf("open the reclaim: status %d %+v", st, ev)
	}
	if ev.Reclaim.RegisteredName != hcx.MaskName("王冒名") || ev.Reclaim.ClaimedName != hcx.MaskName(owner.FullName) || ev.Reclaim.Proof != "oidc" || ev.Reclaim.Delegations != 1 {
		t.Errorf("reclaim evidence: %+v", ev.Reclaim)
	}
	var d node.AppealDecision
	if st := callAs(t, f.client(), op, "POST", url+"/v1/appeals/"+filed.ID+"/decision", map[string]string{"decision": "accept", "reason": "身份证原件核验 / original document checked"}, &d); st != http.StatusOK || d.Enrolment == nil || d.Appeal.Reclaim == nil {
		t.Fatalf("accept the reclaim: status %d %+v", st, d)
	}
	if r := d.Appeal.Reclaim; r.Sessions < 1 || r.Delegations != 1 {
		t.Errorf("reclaim outcome: %+v", r)
	}
	// The squatter's session is over.
	if st := callAs(t, f.client(), squatter, "GET", url+"/v1/residents/"+string(sub), nil, nil); st != http.StatusUnauthorized {
		t.Errorf("the squatter's next request: status %d, want 401", st)
	}
	// li-lei logs in with the new code and is shown under their name.
	resp, err := f.client().Post(url+"/v1/auth/enrol", "application/json", strings.NewReader(`{"code":"`+d.Enrolment.Code+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if resp.StatusCode == http.StatusOK && c.Value != "" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("enrol with the reclaim's code: status %d", resp.StatusCode)
	}
	var me struct {
		Subject    hcx.Subject `json:"subject"`
		Name       string      `json:"name"`
		Dependants []any       `json:"dependants"`
	}
	if st := callAs(t, f.client(), withCookie(cookie), "GET", url+"/v1/me", nil, &me); st != http.StatusOK || me.Subject != sub || me.Name != hcx.MaskName(owner.FullName) {
		t.Errorf("/v1/me of the owner: status %d %+v", st, me)
	}
	if st := callAs(t, f.client(), ownerCaller, "GET", url+"/v1/reclaims/"+filed.ID, nil, &seen); st != http.StatusOK || seen.Status != node.AppealAccepted || seen.Reason == "" {
		t.Errorf("the claimant reads the outcome: status %d %+v", st, seen)
	}
	if st := callAs(t, f.client(), withCookie(cookie), "GET", url+"/v1/residents/"+string(sub)+"/appeals", nil, &list); st != http.StatusOK || len(list.Appeals) != 1 || list.Appeals[0].Status != node.AppealAccepted {
		t.Errorf("the owner lists their appeals: status %d %+v", st, list)
	}
	// The guardian the squatter set up no longer reaches the identity.
	if ok, err := f.Nodes[gd].Delegated(t.Context(), sub, kid); err != nil || ok {
		t.Errorf("the squatter's delegation survived the reclaim: %v %v", ok, err)
	}
	// The owner's identity-provider login binds now (the names match).
	if _, err := f.Nodes[gd].ResidentIdentity(t.Context(), sub); err != nil {
		t.Fatal(err)
	}
	// Every step is in the trail.
	trail := auditActions(t, f, gd, sub)
	for _, a := range []string{node.ActionAppealFile, node.ActionAppealOpen, node.ActionAppealDecide, node.ActionIdentityReclaim} {
		if hasAction(trail, a, "") == nil {
			t.Errorf("no %s in the trail", a)
		}
	}
}
