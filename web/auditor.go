package web

import (
	"net/http"
	"time"

	"github.com/hcxfed/hcx/node"
)

// The auditor's page (issue 16 item 5): the node's view of the hub's log
// (its size, the newest checkpoint and its age, the witnessed checkpoint
// with each cosignature, a fork, readiness) and the head of the node's
// audit trail, from GET /v1/log/status.
func init() {
	addRoutes(
		route{"GET /app/auditor", (*Server).auditor},
		// The trail reads the same for the auditor (any node) as for an
		// operator (their own).
		route{"GET /app/auditor/audit", (*Server).opAudit},
	)
}

// logStatus is GET /v1/log/status's answer, and the newest checkpoint's
// age in whole seconds when the page was made.
type logStatus struct {
	node.LogStatus
	Province  string         `json:"province"`
	AuditHead node.AuditHead `json:"audit_head"`
	Age       int            `json:"-"`
}

func (s *Server) auditor(w http.ResponseWriter, r *http.Request) {
	var st logStatus
	if !s.needStaff(w, r, s.getJSON(r, "/v1/log/status", &st)) {
		return
	}
	if st.Checkpoint != nil && !st.Checkpoint.Time.IsZero() {
		st.Age = int(time.Since(st.Checkpoint.Time).Seconds())
	}
	s.render(w, r, http.StatusOK, "auditor", Page{Who: s.staffWho(r), Data: st})
}
