package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// Device enrolment (issue 9): a checkpoint device or feed system makes its
// own SM2 key and a CSR (`hcx device keygen`), files it at its province's
// node, an operator of that province approves it, the national CA issues a
// certificate for the key, and the device fetches it by the enrolment's id.
// The node keeps the requests; it never holds a device's key.

// Keys of the enrolment book.
const (
	pEnrolment = "dev/e/" // dev/e/<id> -> Enrolment
	pEnrolPend = "dev/p/" // dev/p/<id> -> nothing: the pending ones, to count them
)

// Bounds of the enrolment book.
const (
	// MaxPendingEnrolments bounds the requests waiting for an operator:
	// anyone may file one, so a flood fills this and no more.
	MaxPendingEnrolments = 256
	// MaxListedEnrolments bounds one listing.
	MaxListedEnrolments = 500
)

// Enrolment states.
const (
	EnrolmentPending  = "pending"
	EnrolmentIssued   = "issued"
	EnrolmentRejected = "rejected"
)

// EnrolmentRequest is what a device files.
type EnrolmentRequest struct {
	// CSR is the PEM certificate signing request (certs.CreateCSR), whose
	// signature proves the device holds the key.
	CSR string `json:"csr"`
	// Name becomes the certificate's common name and its name in the CA:
	// lower-case letters, digits, '.', '_' and '-', at most 64.
	Name string `json:"name"`
	// Role is "checkpoint" (default) or "feed".
	Role certs.Role `json:"role,omitempty"`
}

// Enrolment is one filed request and what became of it.
type Enrolment struct {
	ID       string           `json:"id"`
	Name     string           `json:"name"`
	Role     certs.Role       `json:"role"`
	Province hcx.ProvinceCode `json:"province"`
	// KeyID identifies the requested key: b64u of SM3 over the public
	// key, first 16 bytes; the operator compares it with the device's
	// screen before approving.
	KeyID   string `json:"key_id"`
	Status  string `json:"status"`
	Filed   int64  `json:"filed"`
	Decided int64  `json:"decided,omitempty"`
	// DecidedBy is the operator's actor id.
	DecidedBy string `json:"decided_by,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// KID and Cert (PEM) are set once issued.
	KID  string `json:"kid,omitempty"`
	Cert string `json:"cert,omitempty"`
	CSR  string `json:"csr,omitempty"`
}

// ErrEnrolmentsFull: too many enrolments wait for an operator.
var ErrEnrolmentsFull = hcx.Errorf(hcx.EUnavailable, "enrolments_full", "%d device enrolments are waiting for an operator; retry once they have been decided", MaxPendingEnrolments)

// IssueDeviceFunc issues a certificate of role for the key in csrPEM, bound
// to province and named name, and returns it in PEM.
type IssueDeviceFunc func(ctx context.Context, csrPEM []byte, role certs.Role, province hcx.ProvinceCode, name string) ([]byte, error)

// FileEnrolment checks a device's request and files it as pending. Errors:
// invalid_csr, invalid_name, invalid_role (400), enrolments_full (503).
func (n *Node) FileEnrolment(ctx context.Context, req EnrolmentRequest) (*Enrolment, error) {
	if req.Role == "" {
		req.Role = certs.RoleCheckpoint
	}
	if req.Role != certs.RoleCheckpoint && req.Role != certs.RoleFeed {
		return nil, hcx.Invalidf("role", "a device enrols as checkpoint or feed, not %q", req.Role)
	}
	if err := certs.CheckName(req.Name); err != nil {
		return nil, hcx.Invalidf("name", "%v", err)
	}
	pub, err := certs.ParseCSR([]byte(req.CSR))
	if err != nil {
		return nil, hcx.Invalidf("csr", "%v; make one with `hcx device keygen`", err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	keySum := certs.SM3(certs.MarshalPublicKey(pub))
	e := &Enrolment{
		ID: base64.RawURLEncoding.EncodeToString(id), Name: req.Name, Role: req.Role, Province: n.cfg.Province,
		KeyID: base64.RawURLEncoding.EncodeToString(keySum[:16]), Status: EnrolmentPending, Filed: n.cfg.Now().Unix(), CSR: req.CSR,
	}
	n.enrolMu.Lock()
	defer n.enrolMu.Unlock()
	err = n.db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pEnrolPend)})
		pending := 0
		for it.Rewind(); it.Valid() && pending < MaxPendingEnrolments; it.Next() {
			pending++
		}
		it.Close()
		if pending >= MaxPendingEnrolments {
			return ErrEnrolmentsFull
		}
		return putEnrolment(txn, e)
	})
	if err != nil {
		return nil, err
	}
	n.log.Info("device enrolment filed", "enrolment", e.ID, "role", e.Role)
	return e, nil
}

// Audit actions of device enrolment.
const (
	ActionDeviceApprove = "device.approve"
	ActionDeviceReject  = "device.reject"
)

func putEnrolment(txn *badger.Txn, e *Enrolment) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := txn.Set([]byte(pEnrolment+e.ID), b); err != nil {
		return err
	}
	if e.Status == EnrolmentPending {
		return txn.Set([]byte(pEnrolPend+e.ID), nil)
	}
	return txn.Delete([]byte(pEnrolPend + e.ID))
}

func getEnrolment(txn *badger.Txn, id string) (*Enrolment, error) {
	if len(id) != 22 || strings.ContainsAny(id, "/") {
		return nil, hcx.Errorf(hcx.ENotFound, "no_enrolment", "no device enrolment %q", id)
	}
	item, err := txn.Get([]byte(pEnrolment + id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, hcx.Errorf(hcx.ENotFound, "no_enrolment", "no device enrolment %q", id)
	}
	if err != nil {
		return nil, err
	}
	var e Enrolment
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
		return nil, fmt.Errorf("read enrolment %s: %w", id, err)
	}
	return &e, nil
}

// Enrolment returns one enrolment (no_enrolment, 404, if unknown).
func (n *Node) Enrolment(ctx context.Context, id string) (*Enrolment, error) {
	var e *Enrolment
	err := n.db.View(func(txn *badger.Txn) (err error) { e, err = getEnrolment(txn, id); return err })
	return e, err
}

// Enrolments lists enrolments in status ("" for pending), at most
// MaxListedEnrolments, oldest id first.
func (n *Node) Enrolments(ctx context.Context, status string) ([]Enrolment, error) {
	if status == "" {
		status = EnrolmentPending
	}
	switch status {
	case EnrolmentPending, EnrolmentIssued, EnrolmentRejected:
	default:
		return nil, hcx.Invalidf("status", "status is pending, issued or rejected, not %q", status)
	}
	out := []Enrolment{}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pEnrolment), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < MaxListedEnrolments; it.Next() {
			var e Enrolment
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return err
			}
			if e.Status == status {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// DecideEnrolment approves (issuing through issue) or rejects a pending
// enrolment, as the operator in ctx. Errors: no_enrolment (404),
// enrolment_decided (409) when it was decided before, and issue's errors
// (nothing is recorded when issuing fails).
func (n *Node) DecideEnrolment(ctx context.Context, id string, approve bool, reason string, issue IssueDeviceFunc) (*Enrolment, error) {
	if len(reason) > 500 {
		return nil, hcx.Invalidf("reason", "at most 500 bytes")
	}
	action := ActionDeviceReject
	if approve {
		action = ActionDeviceApprove
	}
	entry, err := callerEntry(ctx, action, "")
	if err != nil {
		return nil, err
	}
	entry.Note = "enrolment " + id
	by := auth.FromContext(ctx)
	n.enrolMu.Lock()
	defer n.enrolMu.Unlock()
	e, err := n.Enrolment(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Status != EnrolmentPending {
		return nil, hcx.Errorf(hcx.EConflict, "enrolment_decided", "enrolment %s was already %s", id, e.Status)
	}
	e.Status, e.Decided, e.DecidedBy, e.Reason = EnrolmentRejected, n.cfg.Now().Unix(), by.Actor, reason
	if approve {
		certPEM, err := issue(ctx, []byte(e.CSR), e.Role, e.Province, e.Name)
		if err != nil {
			return nil, err
		}
		kid, err := certKID(certPEM)
		if err != nil {
			return nil, err
		}
		e.Status, e.Cert, e.KID = EnrolmentIssued, string(certPEM), kid
	}
	e.CSR = ""
	if e.KID != "" {
		entry.Note += ", certificate " + e.KID
	}
	w := &write{}
	w.record(entry)
	if err := w.setJSON(pEnrolment+e.ID, e); err != nil {
		return nil, err
	}
	w.del([]byte(pEnrolPend + e.ID))
	if err := n.write(w); err != nil {
		return nil, err
	}
	n.log.Info("device enrolment decided", "enrolment", e.ID, "status", e.Status, "by", by.Actor)
	return e, nil
}

func certKID(certPEM []byte) (string, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", errors.New("the device issuer returned no PEM certificate")
	}
	return certs.KID(blk.Bytes), nil
}

// TrustStore is the trust store in force at this node: the national root
// and the trust lists it has followed from the hub. Request tokens are
// checked against it (auth.RequestTokens.Trust), so a revocation in the log
// locks a device out as soon as the node has followed it.
func (n *Node) TrustStore() *certs.TrustStore { return n.trust }
