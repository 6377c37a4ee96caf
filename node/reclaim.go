package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// Identity reclaim (docs/decisions.md, "Issue 10: appeals and
// corrections", threat model). The claimant proves the document, the
// node checks it is registered here under another name, and an operator
// decides. A claim is never granted by filing it.

// FileReclaim files a reclaim of the document in req by its owner, who
// proved it as proof says: "oidc" (the identity provider's verified
// document and name, read from the caller's ID token by the API) or "desk"
// (an operator's in-person check; the caller is that operator). The
// document must be registered here under another name: an unregistered one
// is 404 unknown_resident (register it instead), one under the same name is
// 409 name_matches (nothing to reclaim: log in). Audited as appeal.file with
// the subject reclaimed.
func (n *Node) FileReclaim(ctx context.Context, req ReclaimRequest, proof ReclaimProof) (*Appeal, error) {
	entry, err := callerEntry(ctx, ActionAppealFile, "")
	if err != nil {
		return nil, err
	}
	if proof.Method != "oidc" && proof.Method != "desk" {
		return nil, fmt.Errorf("reclaim proof %q: want oidc or desk", proof.Method)
	}
	reg := RegisterRequest{DocType: req.DocType, DocNumber: req.DocNumber, Name: req.Name}
	if err := reg.Validate(n.cfg.Now().In(n.rules.Load().rs.Location())); err != nil {
		return nil, err
	}
	text, err := checkText("text", req.Text, MaxAppealText)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	id, err := newAppealID(now)
	if err != nil {
		return nil, err
	}
	sub := n.cfg.SubjectKey.Subject(reg.DocType, reg.DocNumber)
	entry.Subject = sub
	unlock, err := n.hold(ctx, sub)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var rec residentRecord
	err = n.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, pResident+string(sub), &rec)
		if err != nil {
			return err
		}
		if !found {
			return &hcx.Error{Class: hcx.ENotFound, Code: "unknown_resident", Field: "doc_number",
				Message: "this document is not registered at this node: there is nothing to reclaim; register it (an operator, or log in with the identity provider)"}
		}
		have, err := appealsOf(txn, sub)
		if err != nil {
			return err
		}
		return checkRoom(have, AppealReclaim)
	})
	if err != nil {
		return nil, err
	}
	if err := n.checkName(&rec, reg.Name); err == nil {
		return nil, &hcx.Error{Class: hcx.EConflict, Code: "name_matches", Field: "name",
			Message: "this document is registered under this very name: there is nothing to reclaim; log in with the identity provider or ask an operator for an enrolment code"}
	} else if e := (*hcx.Error)(nil); !errors.As(err, &e) || e.Code != "name_mismatch" {
		return nil, err
	}
	a := &appealRecord{
		Appeal: Appeal{ID: id, Subject: sub, Kind: AppealReclaim, Text: text, Status: AppealFiled, Filed: now, FiledBy: entry.Actor, Proof: proof.Method},
		// The claimed name is sealed like a registered one, bound to
		// this appeal: it is shown masked until the reclaim is accepted.
		ClaimedName: n.fields.Seal([]byte(reg.Name), aad(sub, "reclaim/"+id)),
		ProofActor:  proof.Actor,
	}
	entry.Note = "appeal " + id + " reclaim proven by " + proof.Method
	return n.storeAppeal(entry, a)
}

// Reclaim returns the reclaim with id; sub, if not empty, must be the
// subject reclaimed (the claimant's document), else it is unknown_appeal.
func (n *Node) Reclaim(ctx context.Context, id string, sub hcx.Subject) (*Appeal, error) {
	a, err := n.readAppeal(id)
	if err != nil {
		return nil, err
	}
	if a.Kind != AppealReclaim || (sub != "" && a.Subject != sub) {
		return nil, unknownAppeal()
	}
	return a.view(), nil
}

func (n *Node) reclaimEvidence(a *appealRecord, rec *residentRecord) (*ReclaimEvidence, error) {
	have, _, err := n.identity(rec)
	if err != nil {
		return nil, err
	}
	claimed := []byte(have) // accepted: the claimed name is the registered one now
	if a.Status != AppealAccepted {
		if claimed, err = n.fields.Open(a.ClaimedName, aad(a.Subject, "reclaim/"+a.ID)); err != nil {
			return nil, fmt.Errorf("appeal %s claimed name: %w", a.ID, err)
		}
	}
	ev := &ReclaimEvidence{RegisteredName: hcx.MaskName(have), ClaimedName: hcx.MaskName(string(claimed)), Proof: a.Proof, ProofActor: a.ProofActor}
	err = n.db.View(func(txn *badger.Txn) error {
		ev.Passkeys = countPrefix(txn, pPasskey+string(a.Subject)+"/")
		ev.Delegations = countPrefix(txn, pDeleg+string(a.Subject)+"/") + countPrefix(txn, pGuardian+string(a.Subject)+"/")
		return nil
	})
	return ev, err
}

// acceptReclaim re-seals the registered name to the claimed one and ends
// what the registration's holder held: their sessions, passkeys (and user
// handle), enrolment code, and delegations both ways (as a guardian and as
// a dependant); it issues the owner an enrolment code. One synced write with
// the entries appeal.decide and identity.reclaim; then a sweep beside the
// committer ends sessions and passkeys made while the write waited. The
// caller holds the resident's lock and has set a's decision.
func (n *Node) acceptReclaim(ctx context.Context, entry *AuditEntry, a *appealRecord, now time.Time) (*AppealDecision, error) {
	sub := a.Subject
	claimed, err := n.fields.Open(a.ClaimedName, aad(sub, "reclaim/"+a.ID))
	if err != nil {
		return nil, fmt.Errorf("appeal %s claimed name: %w", a.ID, err)
	}
	code, err := newEnrolmentCode()
	if err != nil {
		return nil, err
	}
	expires := now.Add(EnrolmentTTL)
	var rec residentRecord
	out := &ReclaimOutcome{}
	w := &write{}
	w.record(entry)
	err = n.db.View(func(txn *badger.Txn) error {
		if _, err := getJSON(txn, pResident+string(sub), &rec); err != nil {
			return err
		}
		// Sessions: every resident login (passkey, code, OIDC) runs as
		// resident:<sub>.
		ids, keys := actorSessions(txn, residentActor(sub))
		for i, id := range ids {
			w.del(keys[i])
			if s, ok, err := getSession(txn, id); err != nil {
				return err
			} else if ok {
				w.del([]byte(pSession + id))
				w.del(sessionExpKey(s, id))
				out.Sessions++
			}
		}
		pks, err := passkeysOf(txn, sub)
		if err != nil {
			return err
		}
		for _, pk := range pks {
			w.del(passkeyKey(sub, pk.ID))
			w.del([]byte(pPasskeyID + hex.EncodeToString(pk.ID)))
			out.Passkeys++
		}
		if item, err := txn.Get([]byte(pPasskeyUser + string(sub))); err == nil {
			handle, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			w.del([]byte(pPasskeyUser + string(sub)))
			w.del([]byte(pPasskeyHandle + hex.EncodeToString(handle)))
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if item, err := txn.Get([]byte(pEnrolOf + string(sub))); err == nil {
			prev, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			var er enrolmentRecord
			if ok, err := getJSON(txn, string(prev), &er); err != nil {
				return err
			} else if ok && er.Used == nil && now.Before(er.Expires) {
				out.EnrolmentCodes = 1
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		// Delegations both ways: the squatter acting as a guardian of
		// others, and guardians set up over the squatted identity.
		for _, p := range []struct{ fwd, rev string }{{pDeleg, pGuardian}, {pGuardian, pDeleg}} {
			prefix := p.fwd + string(sub) + "/"
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				other := string(it.Item().Key()[len(prefix):])
				w.del(it.Item().KeyCopy(nil))
				w.del([]byte(p.rev + other + "/" + string(sub)))
				out.Delegations++
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The owner's enrolment code replaces the squatter's, if any.
	if err := n.replaceEnrolment(w, sub, code, expires, entry.Actor); err != nil {
		return nil, err
	}
	rec.Name = n.fields.Seal(claimed, aad(sub, "name"))
	rec.Phone = nil // the squatter's phone number is not the owner's
	if err := w.setJSON(pResident+string(sub), &rec); err != nil {
		return nil, err
	}
	a.Reclaim = out
	a.ClaimedName = nil // now the registered name
	entry.Note = "appeal " + a.ID + " accepted"
	re, err := callerEntry(ctx, ActionIdentityReclaim, sub)
	if err != nil {
		return nil, err
	}
	re.Note = fmt.Sprintf("appeal %s: name re-sealed; ended %d sessions, %d passkeys, %d enrolment codes, %d delegations; enrolment code issued",
		a.ID, out.Sessions, out.Passkeys, out.EnrolmentCodes, out.Delegations)
	w.also(re)
	w.del([]byte(pAppealOpen + a.ID))
	if err := w.setJSON(pAppeal+a.ID, a); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	// A login that raced the write (a passkey login or registration that
	// read the old credentials) is swept here, before the owner holds the
	// new code: nothing the squatter started survives the decision.
	if _, err := n.EndSessions(context.WithoutCancel(ctx), residentActor(sub), ""); err != nil {
		return nil, fmt.Errorf("reclaim %s: sweep sessions: %w", a.ID, err)
	}
	err = n.updateAside(func(txn *badger.Txn) error {
		pks, err := passkeysOf(txn, sub)
		if err != nil {
			return err
		}
		for _, pk := range pks {
			if err := txn.Delete(passkeyKey(sub, pk.ID)); err != nil {
				return err
			}
			if err := txn.Delete([]byte(pPasskeyID + hex.EncodeToString(pk.ID))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reclaim %s: sweep passkeys: %w", a.ID, err)
	}
	return &AppealDecision{Appeal: a.view(), Enrolment: &ResidentEnrolment{Code: code, Subject: sub, Expires: expires}}, nil
}

// residentActor is the actor of a resident's own logins (auth.Principal.Actor).
func residentActor(sub hcx.Subject) string { return "resident:" + string(sub) }
