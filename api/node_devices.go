package api

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/node"
)

// Devices is what the enrolment routes need from a node (node.Node).
type Devices interface {
	FileEnrolment(ctx context.Context, req node.EnrolmentRequest) (*node.Enrolment, error)
	Enrolment(ctx context.Context, id string) (*node.Enrolment, error)
	Enrolments(ctx context.Context, status string) ([]node.Enrolment, error)
	DecideEnrolment(ctx context.Context, id string, approve bool, reason string, issue node.IssueDeviceFunc) (*node.Enrolment, error)
}

var _ Devices = (*node.Node)(nil)

// DeviceIssuer issues device certificates when an operator approves an
// enrolment: the national CA, and whatever publishes its next trust list
// (`hcx dev` passes its in-process CA; devIssuer in cmd/hcx).
type DeviceIssuer interface {
	IssueDevice(ctx context.Context, csrPEM []byte, role certs.Role, province hcx.ProvinceCode, name string) (certPEM []byte, err error)
}

// maxEnrolmentBody bounds a filed enrolment: a CSR (certs.MaxCSRPEM) and a
// name.
const maxEnrolmentBody = certs.MaxCSRPEM + 1<<10

// devicesRules are the device enrolment routes. Filing and fetching are
// anonymous (a device has no credential yet; the id is 128 random bits and
// the answer carries no person's data); listing and deciding are for the
// province's operators, in the audit trail.
func (h *nodeHandler) devicesRules() []Rule {
	anyone := []Grant{{Role: auth.RoleAnonymous, Scope: ScopeAny}}
	operators := []Grant{{Role: auth.RoleOperator, Scope: ScopeProvince}}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/devices/enrolments", Priority: PriorityBulk, Allow: anyone, Handler: h.fileEnrolment},
		// The auditor reads everything, decides nothing (DESIGN.md §8b).
		{Method: http.MethodGet, Path: "/v1/devices/enrolments", Query: []string{"status"}, Priority: PriorityOperator, Allow: []Grant{operators[0], {Role: auth.RoleAuditor, Scope: ScopeAny}}, Handler: h.listEnrolments},
		{Method: http.MethodGet, Path: "/v1/devices/enrolments/{id}", Priority: PriorityBulk, Allow: anyone, Handler: h.getEnrolment},
		{Method: http.MethodPost, Path: "/v1/devices/enrolments/{id}/approve", Priority: PriorityOperator, Allow: operators, Audited: true, Handler: h.decideEnrolment(true)},
		{Method: http.MethodPost, Path: "/v1/devices/enrolments/{id}/reject", Priority: PriorityOperator, Allow: operators, Audited: true, Handler: h.decideEnrolment(false)},
	}
}

func (h *nodeHandler) devices() (Devices, error) {
	d, ok := h.n.(Devices)
	if !ok {
		return nil, hcx.Errorf(hcx.EUnavailable, "no_enrolments", "this node keeps no device enrolments")
	}
	return d, nil
}

// publicEnrolment is what a device sees of its enrolment.
type publicEnrolment struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	KeyID  string `json:"key_id"`
	KID    string `json:"kid,omitempty"`
	Cert   string `json:"cert,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func publicOf(e *node.Enrolment) publicEnrolment {
	return publicEnrolment{ID: e.ID, Status: e.Status, Name: e.Name, Role: string(e.Role), KeyID: e.KeyID, KID: e.KID, Cert: e.Cert, Reason: e.Reason}
}

func (h *nodeHandler) fileEnrolment(w http.ResponseWriter, r *http.Request) {
	d, err := h.devices()
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	var req node.EnrolmentRequest
	if err := DecodeJSON(w, r, maxEnrolmentBody, &req); err != nil {
		WriteError(w, h.log, err)
		return
	}
	e, err := d.FileEnrolment(r.Context(), req)
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, publicOf(e))
}

func (h *nodeHandler) getEnrolment(w http.ResponseWriter, r *http.Request) {
	d, err := h.devices()
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	e, err := d.Enrolment(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, publicOf(e))
}

func (h *nodeHandler) listEnrolments(w http.ResponseWriter, r *http.Request) {
	d, err := h.devices()
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	list, err := d.Enrolments(r.Context(), r.URL.Query().Get("status"))
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"enrolments": list})
}

func (h *nodeHandler) decideEnrolment(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := h.devices()
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
		var body struct {
			Reason string `json:"reason,omitempty"`
		}
		if r.ContentLength != 0 {
			if err := DecodeJSON(w, r, 4<<10, &body); err != nil {
				WriteError(w, h.log, err)
				return
			}
		}
		issue := func(ctx context.Context, csr []byte, role certs.Role, prov hcx.ProvinceCode, name string) ([]byte, error) {
			if h.opts.DeviceIssuer == nil {
				return nil, hcx.Errorf(hcx.EUnavailable, "no_device_issuer", "this node cannot issue certificates; issue at the national CA with `hcx ca issue --csr FILE --role %s --province %s --name %s` and publish the trust list", role, prov, name)
			}
			return h.opts.DeviceIssuer.IssueDevice(ctx, csr, role, prov, name)
		}
		e, err := d.DecideEnrolment(r.Context(), mux.Vars(r)["id"], approve, body.Reason, issue)
		if err != nil {
			WriteError(w, h.log, err)
			return
		}
		WriteJSON(w, http.StatusOK, e)
	}
}
