package node

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// Proxy registration under the Tianjin rules (issue 10, USERS.md
// "Residents"): a resident registers a dependant who has no smartphone (a
// child, an elderly person) and holds them; several guardians may hold one
// dependant (both parents), at most MaxGuardians; once the dependant proves
// their own identity (an enrolment code used, an OIDC login with their
// document) every delegation for them ends and nobody holds them again.

// ActionDependantRegister is a guardian registering (or, for a dependant
// registered before, claiming) a dependant. The actor is the guardian, the
// subject the dependant.
const ActionDependantRegister = "dependant.register"

// Relations a guardian may state for a dependant.
var relations = map[string]bool{
	"child": true, "grandchild": true, "parent": true, "grandparent": true,
	"spouse": true, "sibling": true, "other": true,
}

// DependantRequest is a guardian's registration of a dependant: the
// dependant's document and name as in RegisterRequest, and how the guardian
// is related to them.
type DependantRequest struct {
	DocType   hcx.DocType `json:"doc_type"`
	DocNumber string      `json:"doc_number"`
	Name      string      `json:"name"`
	Phone     string      `json:"phone,omitempty"`
	Relation  string      `json:"relation"`
}

// DependantAnswer is what the guardian learns: the dependant's subject (the
// guardian proved they know the document and the registered name) and
// whether this registration created the record.
type DependantAnswer struct {
	Dependant  hcx.Subject `json:"dependant"`
	Guardian   hcx.Subject `json:"guardian"`
	Relation   string      `json:"relation"`
	Registered bool        `json:"registered"`
}

func errSelfRegistered(field string) error {
	return &hcx.Error{Class: hcx.EConflict, Code: "self_registered", Field: field,
		Message: "this person registered with their own identity, so nobody can hold them by proxy any more; they use their own code"}
}

// RegisterDependant registers the dependant of req for guardian (the
// caller, a resident), or, when the node already holds the document under
// the same name and the person never registered themselves, adds guardian
// to their guardians. Refused: the guardian's own document (400 doc_number),
// another name (409 name_mismatch), a self-registered dependant (409
// self_registered), a delegation that exists (409 already_guardian), more
// than MaxDependants per guardian or MaxGuardians per dependant (409).
// Audited as dependant.register with the guardian as actor and the
// dependant as subject; the record and the delegation are one write.
func (n *Node) RegisterDependant(ctx context.Context, guardian hcx.Subject, req DependantRequest) (*DependantAnswer, error) {
	entry, err := callerEntry(ctx, ActionDependantRegister, "")
	if err != nil {
		return nil, err
	}
	if !relations[req.Relation] {
		return nil, hcx.Invalidf("relation", "relation %q: want one of child, grandchild, parent, grandparent, spouse, sibling, other (what the dependant is to you)", req.Relation)
	}
	entry.Note = "relation " + req.Relation
	reg := RegisterRequest{DocType: req.DocType, DocNumber: req.DocNumber, Name: req.Name, Phone: req.Phone}
	sub, created, err := n.ensureResident(ctx, reg, entry, func(rec *residentRecord) error {
		if rec.Sub == guardian {
			return hcx.Invalidf("doc_number", "this is your own document: register a dependant with theirs")
		}
		// Compared as stored: ensureResident validated and normalised its copy.
		name, _ := hcx.NormaliseName(reg.Name)
		if err := n.checkName(rec, name); err != nil {
			return err
		}
		return n.db.View(func(txn *badger.Txn) error {
			if self, err := selfRegistered(txn, rec); err != nil || !self {
				return err
			}
			return errSelfRegistered("doc_number")
		})
	}, func(w *write, rec *residentRecord) (bool, error) {
		if err := n.db.View(func(txn *badger.Txn) error {
			return n.canHold(txn, rec.Sub, guardian, "doc_number")
		}); err != nil {
			return false, err
		}
		d := delegation{Guardian: guardian, Dependant: rec.Sub, Since: n.cfg.Now().UTC(), By: entry.Actor, Relation: req.Relation}
		if err := w.setJSON(pDeleg+string(guardian)+"/"+string(rec.Sub), &d); err != nil {
			return false, err
		}
		if err := w.setJSON(pGuardian+string(rec.Sub)+"/"+string(guardian), &d); err != nil {
			return false, err
		}
		// Held by proxy now, whether the guardian registered the record or
		// claimed one an operator registered.
		changed := !rec.Proxy
		rec.Proxy = true
		return changed, nil
	}, guardian)
	if err != nil {
		return nil, err
	}
	return &DependantAnswer{Dependant: sub, Guardian: guardian, Relation: req.Relation, Registered: created}, nil
}

// canHold checks that guardian may start holding dependant: the guardian is
// a resident here, holds no delegation for them yet, and both are within
// their limits. field names what the caller sent to identify the
// dependant.
func (n *Node) canHold(txn *badger.Txn, dependant, guardian hcx.Subject, field string) error {
	if _, err := txn.Get([]byte(pResident + string(guardian))); err == badger.ErrKeyNotFound {
		return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_resident", Field: "guardian", Message: "no resident with that subject is registered at this node"}
	} else if err != nil {
		return err
	}
	if _, err := txn.Get([]byte(pDeleg + string(guardian) + "/" + string(dependant))); err == nil {
		return &hcx.Error{Class: hcx.EConflict, Code: "already_guardian", Field: field, Message: "this guardian already holds this dependant"}
	}
	if c := countPrefix(txn, pDeleg+string(guardian)+"/"); c >= MaxDependants {
		return &hcx.Error{Class: hcx.EConflict, Code: "too_many_dependants", Field: field,
			Message: fmt.Sprintf("a guardian holds at most %d dependants; end a delegation you no longer need first", MaxDependants)}
	}
	if c := countPrefix(txn, pGuardian+string(dependant)+"/"); c >= MaxGuardians {
		return &hcx.Error{Class: hcx.EConflict, Code: "too_many_guardians", Field: field,
			Message: fmt.Sprintf("a dependant has at most %d guardians; one of them ends their delegation first", MaxGuardians)}
	}
	return nil
}

// selfRegistered reports whether rec's person proved their own identity:
// marked so since issue 10, or, for residents who logged in before the
// mark existed, holding a used enrolment code or a passkey (only the
// resident's own session registers one).
func selfRegistered(txn *badger.Txn, rec *residentRecord) (bool, error) {
	if rec.SelfRegistered != nil {
		return true, nil
	}
	if _, err := txn.Get([]byte(pPasskeyUser + string(rec.Sub))); err == nil {
		return true, nil
	} else if err != badger.ErrKeyNotFound {
		return false, err
	}
	item, err := txn.Get([]byte(pEnrolOf + string(rec.Sub)))
	if err == badger.ErrKeyNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	key, err := item.ValueCopy(nil)
	if err != nil {
		return false, err
	}
	var e enrolmentRecord
	found, err := getJSON(txn, string(key), &e)
	return found && e.Used != nil, err
}

// selfRegister marks rec as registered by its own person at now and ends
// every delegation for them, each in its own audited write (guardian.remove,
// with the principal of ctx as actor), before the caller's write that
// stores rec. The caller holds rec's lock, so no guardian is added between.
// It reports whether rec changed.
func (n *Node) selfRegister(ctx context.Context, rec *residentRecord, now time.Time) (bool, error) {
	if rec.SelfRegistered != nil {
		return false, nil
	}
	var guardians []hcx.Subject
	prefix := []byte(pGuardian + string(rec.Sub) + "/")
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			guardians = append(guardians, hcx.Subject(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, g := range guardians {
		entry, err := callerEntry(ctx, ActionGuardianRemove, rec.Sub)
		if err != nil {
			return false, err
		}
		entry.Note = "guardian " + string(g) + "; ended: the dependant registered with their own identity"
		w := &write{}
		w.record(entry)
		w.del([]byte(pDeleg + string(g) + "/" + string(rec.Sub)))
		w.del([]byte(pGuardian + string(rec.Sub) + "/" + string(g)))
		if err := n.write(w); err != nil {
			return false, err
		}
	}
	t := now.UTC()
	rec.SelfRegistered = &t
	return true, nil
}

// residentPrincipal is the principal of a resident acting for themselves.
func residentPrincipal(sub hcx.Subject) *auth.Principal {
	return &auth.Principal{Role: auth.RoleResident, Actor: "resident:" + string(sub), Subject: sub, Method: auth.MethodSession}
}
