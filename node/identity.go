package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// Binding a person to a document needs proof (DESIGN.md §8b): an operator's
// in-person check (Register, IssueEnrolment) or an OIDC login whose ID token
// carries the verified document (BindVerifiedIdentity). A resident then logs
// in with the enrolment code once, or with the identity provider, and adds
// passkeys for daily use. Guardians act for dependants through delegation
// records (AddGuardian), checked by the API's scope on every route.

// Audit actions of this file.
const (
	ActionEnrolmentIssue = "enrolment.issue"
	ActionEnrolmentUse   = "enrolment.use"
	ActionIdentityBind   = "resident.bind_identity"
	ActionGuardianAdd    = "guardian.add"
	ActionGuardianRemove = "guardian.remove"
)

// Key prefixes.
const (
	pEnrol    = "enrol/"    // enrol/<hex SM3(code)> -> enrolmentRecord
	pEnrolOf  = "enrolof/"  // enrolof/<sub> -> the key of the resident's newest code
	pDeleg    = "deleg/"    // deleg/<guardian>/<dependant> -> delegation
	pGuardian = "guardian/" // guardian/<dependant>/<guardian> -> delegation (reverse index)
)

// Limits of delegation records (the Tianjin rules of issue 10 may narrow them).
const (
	MaxDependants = 10 // per guardian
	MaxGuardians  = 4  // per dependant (both parents, grandparents)
)

// EnrolmentTTL is how long an enrolment code stays usable.
const EnrolmentTTL = 72 * time.Hour

// ErrAlreadyRegistered answers a registration of a document the node holds.
// It does not carry the subject: only a caller who proves they own the
// document (an OIDC login with it) learns it.
func errAlreadyRegistered() error {
	return &hcx.Error{Class: hcx.EConflict, Code: "already_registered", Field: "doc_number",
		Message: "this document is already registered at this node; its owner logs in with the identity provider or an enrolment code from an operator"}
}

type enrolmentRecord struct {
	Sub      hcx.Subject `json:"sub"`
	Expires  time.Time   `json:"expires"`
	IssuedBy string      `json:"issued_by"`
	Used     *time.Time  `json:"used,omitempty"`
}

type delegation struct {
	Guardian  hcx.Subject `json:"guardian"`
	Dependant hcx.Subject `json:"dependant"`
	Since     time.Time   `json:"since"`
	By        string      `json:"by"`
	Relation  string      `json:"relation,omitempty"` // stated by a guardian who registered the dependant
}

// ResidentEnrolment is an issued enrolment code.
type ResidentEnrolment struct {
	Code    string      `json:"code"`
	Subject hcx.Subject `json:"subject"`
	Expires time.Time   `json:"expires"`
	// Registered is true when the resident was registered by this
	// enrolment, false when they were registered before.
	Registered bool `json:"registered"`
}

// crockford is Crockford's base32 alphabet: no I, L, O or U, so a code read
// aloud or typed is not mistaken.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newEnrolmentCode makes 20 random base32 characters (100 bits) in four
// groups of five.
func newEnrolmentCode() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%5 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(crockford[int(c)&31])
	}
	return sb.String(), nil
}

// normaliseCode reads a typed code: case and dashes and spaces do not
// matter, and the letters people confuse with digits read as the digits.
func normaliseCode(code string) (string, error) {
	var sb strings.Builder
	for _, r := range strings.ToUpper(code) {
		switch r {
		case '-', ' ':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if !strings.ContainsRune(crockford, r) {
			return "", hcx.Invalidf("code", "an enrolment code has only the characters 0-9 and A-Z (without U); got %q", r)
		}
		sb.WriteRune(r)
	}
	if sb.Len() != 20 {
		return "", hcx.Invalidf("code", "an enrolment code has 20 characters in four groups of five; got %d", sb.Len())
	}
	return sb.String(), nil
}

func enrolKey(code string) string {
	h := certs.SM3([]byte(code))
	return pEnrol + hex.EncodeToString(h[:])
}

// ensureResident registers the resident of req if the node does not hold
// them yet, in the same write as extra's and with entry, under the
// resident's lock (and the locks of also). onExisting decides what an
// existing record means. extra adds to the write and may change the record
// (new or existing); it reports whether it did, so that it is written.
func (n *Node) ensureResident(ctx context.Context, req RegisterRequest, entry *AuditEntry, onExisting func(rec *residentRecord) error, extra func(w *write, rec *residentRecord) (bool, error), also ...hcx.Subject) (hcx.Subject, bool, error) {
	if err := req.Validate(n.cfg.Now().In(n.rules.Load().rs.Location())); err != nil {
		return "", false, err
	}
	now := n.cfg.Now().UTC()
	sub := n.cfg.SubjectKey.Subject(req.DocType, req.DocNumber)
	entry.Subject = sub
	unlock, err := n.holdAll(ctx, append(also, sub)...)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	var old residentRecord
	var found bool
	err = n.db.View(func(txn *badger.Txn) error {
		found, err = getJSON(txn, pResident+string(sub), &old)
		return err
	})
	if err != nil {
		return "", false, err
	}
	w := &write{}
	w.record(entry)
	rec := &old
	if found {
		if err := onExisting(&old); err != nil {
			return "", false, err
		}
	} else {
		rec = n.newResidentRecord(sub, &req, now)
		if err := n.adoptForeignDoses(w, rec, now); err != nil {
			return "", false, err
		}
	}
	changed := !found
	if extra != nil {
		if changed, err = extra(w, rec); err != nil {
			return "", false, err
		}
		changed = changed || !found
	}
	if changed {
		if err := w.setJSON(pResident+string(sub), rec); err != nil {
			return "", false, err
		}
	}
	if err := n.write(w); err != nil {
		return "", false, err
	}
	if !found {
		n.metrics.registrations.Add(1)
	}
	return sub, !found, nil
}

// newResidentRecord is the record of a new resident of the validated req,
// its identity fields sealed.
func (n *Node) newResidentRecord(sub hcx.Subject, req *RegisterRequest, now time.Time) *residentRecord {
	rec := residentRecord{Sub: sub, DocType: req.DocType, SKV: n.cfg.SubjectKey.Version, Registered: now}
	rec.Doc = n.fields.Seal([]byte(req.DocNumber), aad(sub, "doc"))
	rec.Name = n.fields.Seal([]byte(req.Name), aad(sub, "name"))
	if req.Phone != "" {
		rec.Phone = n.fields.Seal([]byte(req.Phone), aad(sub, "phone"))
	}
	return &rec
}

// IssueEnrolment is an operator's in-person check: it registers the
// resident of req if new (an existing resident must have the same name) and
// answers a one-time code, valid for EnrolmentTTL, with which the resident
// starts their first session and adds passkeys. Only SM3 of the code is
// stored, and only the resident's newest code: issuing one voids the last. Audited as enrolment.issue.
func (n *Node) IssueEnrolment(ctx context.Context, req RegisterRequest) (*ResidentEnrolment, error) {
	entry, err := callerEntry(ctx, ActionEnrolmentIssue, "")
	if err != nil {
		return nil, err
	}
	code, err := newEnrolmentCode()
	if err != nil {
		return nil, err
	}
	expires := n.cfg.Now().UTC().Add(EnrolmentTTL)
	sub, created, err := n.ensureResident(ctx, req, entry, func(rec *residentRecord) error {
		return n.checkName(rec, req.Name)
	}, func(w *write, rec *residentRecord) (bool, error) {
		return false, n.replaceEnrolment(w, rec.Sub, code, expires, entry.Actor)
	})
	if err != nil {
		return nil, err
	}
	return &ResidentEnrolment{Code: code, Subject: sub, Expires: expires, Registered: created}, nil
}

// replaceEnrolment adds to w a new enrolment code for sub, issued by
// actor, and the deletion of the resident's last one: a resident holds one
// code at a time (used or not), so the store keeps one record per resident.
func (n *Node) replaceEnrolment(w *write, sub hcx.Subject, code string, expires time.Time, actor string) error {
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(pEnrolOf + string(sub)))
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		prev, err := item.ValueCopy(nil)
		if err == nil {
			w.del(prev)
		}
		return err
	})
	if err != nil {
		return err
	}
	key := enrolKey(strings.ReplaceAll(code, "-", ""))
	w.set(pEnrolOf+string(sub), []byte(key))
	return w.setJSON(key, &enrolmentRecord{Sub: sub, Expires: expires, IssuedBy: actor})
}

// checkName refuses an in-person or OIDC binding whose name differs from
// the registered one: a squatted or mistyped identity is settled by an
// appeal, never overwritten here.
func (n *Node) checkName(rec *residentRecord, name string) error {
	have, _, err := n.identity(rec)
	if err != nil {
		return err
	}
	if have != name {
		return &hcx.Error{Class: hcx.EConflict, Code: "name_mismatch", Field: "name",
			Message: "this document is registered under another name; the resident files an appeal to correct or reclaim it"}
	}
	return nil
}

// UseEnrolment consumes an enrolment code and returns its resident. A code
// works once: a second use, even a concurrent one, is refused
// (enrolment_code_used), and so is an unknown or expired code. Audited as
// enrolment.use, with the resident as actor.
func (n *Node) UseEnrolment(ctx context.Context, code string) (hcx.Subject, error) {
	norm, err := normaliseCode(code)
	if err != nil {
		return "", err
	}
	key := enrolKey(norm)
	read := func() (*enrolmentRecord, error) {
		var rec enrolmentRecord
		var found bool
		err := n.db.View(func(txn *badger.Txn) error {
			var err error
			found, err = getJSON(txn, key, &rec)
			return err
		})
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, hcx.Errorf(hcx.EUnauthorized, "enrolment_code_unknown", "no such enrolment code at this node; check it, or ask an operator for a new one")
		}
		return &rec, nil
	}
	rec, err := read()
	if err != nil {
		return "", err
	}
	unlock, err := n.hold(ctx, rec.Sub)
	if err != nil {
		return "", err
	}
	defer unlock()
	if rec, err = read(); err != nil { // again, under the resident's lock
		return "", err
	}
	now := n.cfg.Now().UTC()
	switch {
	case rec.Used != nil:
		return "", hcx.Errorf(hcx.EConflict, "enrolment_code_used", "this enrolment code was used on %s; log in with a passkey, or ask an operator for a new code", rec.Used.Format(time.RFC3339))
	case !now.Before(rec.Expires):
		return "", hcx.Errorf(hcx.EUnauthorized, "enrolment_code_expired", "this enrolment code expired on %s; ask an operator for a new one", rec.Expires.Format(time.RFC3339))
	}
	ctx = auth.NewContext(ctx, residentPrincipal(rec.Sub))
	entry, err := callerEntry(ctx, ActionEnrolmentUse, rec.Sub)
	if err != nil {
		return "", err
	}
	// The person proves their own identity: nobody holds them by proxy
	// from now on (the Tianjin rule).
	var res residentRecord
	err = n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(rec.Sub), &res)
		if err == nil && !found {
			err = ErrUnknownResident
		}
		return err
	})
	if err != nil {
		return "", err
	}
	changed, err := n.selfRegister(ctx, &res, now)
	if err != nil {
		return "", err
	}
	rec.Used = &now
	w := &write{}
	w.record(entry)
	if err := w.setJSON(key, rec); err != nil {
		return "", err
	}
	if changed {
		if err := w.setJSON(pResident+string(res.Sub), &res); err != nil {
			return "", err
		}
	}
	if err := n.write(w); err != nil {
		return "", err
	}
	return rec.Sub, nil
}

// BindVerifiedIdentity binds the document of an OIDC login to its
// resident: registered now if new, found otherwise (the registered name
// must match: name_mismatch otherwise). The identity provider vouched for
// the document, so its owner learns the subject. Audited as
// resident.bind_identity with the provider's account as actor.
func (n *Node) BindVerifiedIdentity(ctx context.Context, id auth.VerifiedIdentity) (hcx.Subject, error) {
	p := &auth.Principal{Role: auth.RoleResident, Actor: "oidc:" + id.Issuer + "#" + id.Subject, Method: auth.MethodBearer}
	ctx = auth.NewContext(ctx, p)
	entry, err := callerEntry(ctx, ActionIdentityBind, "")
	if err != nil {
		return "", err
	}
	req := RegisterRequest{DocType: id.DocType, DocNumber: id.DocNumber, Name: id.Name}
	sub, _, err := n.ensureResident(ctx, req, entry, func(rec *residentRecord) error { return n.checkName(rec, req.Name) },
		func(_ *write, rec *residentRecord) (bool, error) { return n.selfRegister(ctx, rec, n.cfg.Now()) })
	return sub, err
}

// AddGuardian records that guardian may act for dependant. Both must be
// residents of this node, different people, within MaxDependants and
// MaxGuardians. Audited as guardian.add (subject: the dependant).
func (n *Node) AddGuardian(ctx context.Context, dependant, guardian hcx.Subject) error {
	entry, err := callerEntry(ctx, ActionGuardianAdd, dependant)
	if err != nil {
		return err
	}
	if dependant == guardian {
		return hcx.Invalidf("guardian", "a resident cannot be their own guardian")
	}
	entry.Note = "guardian " + string(guardian)
	unlock, err := n.holdAll(ctx, dependant, guardian)
	if err != nil {
		return err
	}
	defer unlock()
	err = n.db.View(func(txn *badger.Txn) error {
		var rec residentRecord
		if found, err := getJSON(txn, pResident+string(dependant), &rec); err != nil {
			return err
		} else if !found {
			return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_resident", Field: "sub", Message: "no resident with that subject is registered at this node"}
		}
		if self, err := selfRegistered(txn, &rec); err != nil {
			return err
		} else if self {
			return errSelfRegistered("guardian")
		}
		return n.canHold(txn, dependant, guardian, "guardian")
	})
	if err != nil {
		return err
	}
	d := delegation{Guardian: guardian, Dependant: dependant, Since: n.cfg.Now().UTC(), By: entry.Actor}
	w := &write{}
	w.record(entry)
	if err := w.setJSON(pDeleg+string(guardian)+"/"+string(dependant), &d); err != nil {
		return err
	}
	if err := w.setJSON(pGuardian+string(dependant)+"/"+string(guardian), &d); err != nil {
		return err
	}
	return n.write(w)
}

// RemoveGuardian ends a delegation. Audited as guardian.remove.
func (n *Node) RemoveGuardian(ctx context.Context, dependant, guardian hcx.Subject) error {
	entry, err := callerEntry(ctx, ActionGuardianRemove, dependant)
	if err != nil {
		return err
	}
	entry.Note = "guardian " + string(guardian)
	unlock, err := n.holdAll(ctx, dependant, guardian)
	if err != nil {
		return err
	}
	defer unlock()
	ok, err := n.Delegated(ctx, guardian, dependant)
	if err != nil {
		return err
	}
	if !ok {
		return hcx.Errorf(hcx.ENotFound, "no_delegation", "this resident is not a guardian of that dependant")
	}
	w := &write{}
	w.record(entry)
	w.del([]byte(pDeleg + string(guardian) + "/" + string(dependant)))
	w.del([]byte(pGuardian + string(dependant) + "/" + string(guardian)))
	return n.write(w)
}

// Delegated reports whether guardian holds a delegation for dependant.
func (n *Node) Delegated(ctx context.Context, guardian, dependant hcx.Subject) (bool, error) {
	if guardian == "" || dependant == "" {
		return false, nil
	}
	var ok bool
	err := n.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(pDeleg + string(guardian) + "/" + string(dependant)))
		if err == badger.ErrKeyNotFound {
			return nil
		}
		ok = err == nil
		return err
	})
	return ok, err
}

// Dependants lists the residents guardian acts for.
func (n *Node) Dependants(ctx context.Context, guardian hcx.Subject) ([]hcx.Subject, error) {
	var out []hcx.Subject
	prefix := []byte(pDeleg + string(guardian) + "/")
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < MaxDependants; it.Next() {
			out = append(out, hcx.Subject(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	return out, err
}

func countPrefix(txn *badger.Txn, prefix string) int {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	defer it.Close()
	c := 0
	for it.Rewind(); it.Valid(); it.Next() {
		c++
	}
	return c
}

// Identity is a resident's full identity, for an operator whose task needs
// it (the read is audited by the API).
type Identity struct {
	Subject   hcx.Subject `json:"subject"`
	DocType   hcx.DocType `json:"doc_type"`
	DocNumber string      `json:"doc_number"`
	Name      string      `json:"name"`
}

// ResidentIdentity returns sub's full identity.
func (n *Node) ResidentIdentity(ctx context.Context, sub hcx.Subject) (*Identity, error) {
	var rec residentRecord
	err := n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err == nil && !found {
			err = ErrUnknownResident
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	name, doc, err := n.identity(&rec)
	if err != nil {
		return nil, err
	}
	return &Identity{Subject: sub, DocType: rec.DocType, DocNumber: doc, Name: name}, nil
}

// holdAll is hold for several residents at once.
func (n *Node) holdAll(ctx context.Context, subs ...hcx.Subject) (func(), error) {
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	unlock := n.locks.ofAll(subs)
	return func() { unlock(); release() }, nil
}
