package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// Browser checkpoint sessions (issue 16 item 2): a browser cannot hold a
// checkpoint device's SM2 key, so an operator of the province hands the
// staff of a checkpoint a one-time code, and the code starts a session
// whose principal is a checkpoint of the province. The design is the
// resident enrolment code's (identity.go): the same 20-character Crockford
// code, only SM3 of it stored, used once (a second use, even a concurrent
// one, is refused), a bounded time to use it; and an operator may revoke
// it, which also ends the session it started.

// Audit actions of this file.
const (
	ActionCheckpointCodeIssue  = "checkpoint_code.issue"
	ActionCheckpointCodeUse    = "checkpoint_code.use"
	ActionCheckpointCodeRevoke = "checkpoint_code.revoke"
)

// Key prefixes.
const (
	pCPCode   = "cpcode/"   // cpcode/<hex SM3(code)> -> checkpointCodeRecord
	pCPCodeID = "cpcodeid/" // cpcodeid/<id> -> the key of the code's record
)

// Checkpoint code limits.
const (
	// CheckpointCodeTTL is how long a checkpoint code may be used: a day,
	// so that a code handed out for tomorrow's shift is not a standing
	// credential. The session it starts lasts the node's session time
	// (Config.SessionTTL, 12 h by default: one shift).
	CheckpointCodeTTL = 24 * time.Hour
	// MaxCheckpointNameLen bounds a checkpoint's name and unit, in
	// characters.
	MaxCheckpointNameLen = 64
)

// CheckpointActorPrefix starts the actor of a checkpoint code's session:
// "checkpoint-code:<id>" in the audit trail and the session store.
const CheckpointActorPrefix = "checkpoint-code:"

// CheckpointCodeRequest is an operator's request for a checkpoint code.
type CheckpointCodeRequest struct {
	// Name is the checkpoint's name as its staff and the audit trail see
	// it, such as "Gate 3, Baiyun station" (not a person's name).
	Name string `json:"name"`
	// Unit is the unit that runs the checkpoint.
	Unit string `json:"unit"`
}

// CheckpointCode is an issued checkpoint code (the code only in the
// answer to its issue) or a checkpoint code's state.
type CheckpointCode struct {
	ID       string           `json:"id"`
	Code     string           `json:"code,omitempty"`
	Name     string           `json:"name"`
	Unit     string           `json:"unit"`
	Province hcx.ProvinceCode `json:"province"`
	// Issued is when an operator issued it (zero in a record written
	// before it was kept: CheckpointCodes fills it in from Expires).
	Issued   time.Time  `json:"issued"`
	Expires  time.Time  `json:"expires"`
	IssuedBy string     `json:"issued_by,omitempty"`
	Used     *time.Time `json:"used,omitempty"`
	Revoked  *time.Time `json:"revoked,omitempty"`
}

// checkpointCodeRecord is what the node keeps: the code's state, never the
// code.
type checkpointCodeRecord = CheckpointCode

func checkpointCodeKey(norm string) string { return pCPCode + enrolKey(norm)[len(pEnrol):] }

// checkCheckpointText checks a checkpoint's name or unit: 1 to MaxCheckpointNameLen
// characters, no control characters (they end up in pages and the trail).
func checkCheckpointText(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return hcx.Invalidf(field, "%s is required", field)
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxCheckpointNameLen {
		return hcx.Invalidf(field, "%s is at most %d characters of UTF-8", field, MaxCheckpointNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return hcx.Invalidf(field, "%s has a control character", field)
		}
	}
	return nil
}

// IssueCheckpointCode is an operator's: it answers a one-time code, valid
// for CheckpointCodeTTL, with which the staff of the checkpoint req names
// start a browser checkpoint session of this province. Only SM3 of the
// code is stored. Audited as checkpoint_code.issue.
func (n *Node) IssueCheckpointCode(ctx context.Context, req CheckpointCodeRequest) (*CheckpointCode, error) {
	entry, err := callerEntry(ctx, ActionCheckpointCodeIssue, "")
	if err != nil {
		return nil, err
	}
	req.Name, req.Unit = strings.TrimSpace(req.Name), strings.TrimSpace(req.Unit)
	if err := checkCheckpointText("name", req.Name); err != nil {
		return nil, err
	}
	if err := checkCheckpointText("unit", req.Unit); err != nil {
		return nil, err
	}
	code, err := newEnrolmentCode()
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	// The id starts with the issue's second, so that the codes list newest
	// first in key order (CheckpointCodes); the rest is random.
	var id [8]byte
	binary.BigEndian.PutUint32(id[:4], uint32(now.Unix()))
	if _, err := rand.Read(id[4:]); err != nil {
		return nil, err
	}
	rec := &checkpointCodeRecord{ID: hex.EncodeToString(id[:]), Name: req.Name, Unit: req.Unit, Province: n.Province(),
		Issued: now, Expires: now.Add(CheckpointCodeTTL), IssuedBy: entry.Actor}
	entry.Note = "checkpoint code " + rec.ID
	key := checkpointCodeKey(strings.ReplaceAll(code, "-", ""))
	w := &write{}
	w.record(entry)
	w.set(pCPCodeID+rec.ID, []byte(key))
	if err := w.setJSON(key, rec); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	out := *rec
	out.Code = code
	return &out, nil
}

// holdCheckpointCode takes the lock of the code whose record is at key
// and reads the record (found false when none); the caller calls unlock.
// The key is the code's own lock stripe: a use and a revocation, or two
// uses, of one code are serialised, so only one of them finds it unused.
func (n *Node) holdCheckpointCode(ctx context.Context, key string) (rec *checkpointCodeRecord, found bool, unlock func(), err error) {
	if unlock, err = n.hold(ctx, hcx.Subject(key)); err != nil {
		return nil, false, nil, err
	}
	rec = &checkpointCodeRecord{}
	err = n.db.View(func(txn *badger.Txn) error {
		var err error
		found, err = getJSON(txn, key, rec)
		return err
	})
	if err != nil {
		unlock()
		return nil, false, nil, err
	}
	return rec, found, unlock, nil
}

// UseCheckpointCode consumes a checkpoint code and returns the principal
// of the session it starts: a checkpoint of this province named after the
// checkpoint, actor "checkpoint-code:<id>". A code works once (a second
// use, even a concurrent one, is refused: checkpoint_code_used), and an
// unknown, expired or revoked code is refused. Audited as
// checkpoint_code.use, with the code's actor.
func (n *Node) UseCheckpointCode(ctx context.Context, code string) (*auth.Principal, error) {
	norm, err := normaliseCode(code)
	if err != nil {
		return nil, hcx.Invalidf("code", "a checkpoint code is 20 letters and digits in four groups of five, as the operator handed it out")
	}
	key := checkpointCodeKey(norm)
	rec, found, unlock, err := n.holdCheckpointCode(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := n.cfg.Now().UTC()
	switch {
	case !found:
		return nil, hcx.Errorf(hcx.EUnauthorized, "checkpoint_code_unknown", "no such checkpoint code at this node; check it, or ask an operator for a new one")
	case rec.Revoked != nil:
		return nil, hcx.Errorf(hcx.EUnauthorized, "checkpoint_code_revoked", "this checkpoint code was revoked; ask an operator for a new one")
	case rec.Used != nil:
		return nil, hcx.Errorf(hcx.EConflict, "checkpoint_code_used", "this checkpoint code was used on %s; ask an operator for a new one", rec.Used.Format(time.RFC3339))
	case !now.Before(rec.Expires):
		return nil, hcx.Errorf(hcx.EUnauthorized, "checkpoint_code_expired", "this checkpoint code expired on %s; ask an operator for a new one", rec.Expires.Format(time.RFC3339))
	}
	p := &auth.Principal{Role: auth.RoleCheckpoint, Actor: CheckpointActorPrefix + rec.ID, Name: rec.Name, Province: rec.Province, Method: auth.MethodSession}
	entry, err := callerEntry(auth.NewContext(ctx, p), ActionCheckpointCodeUse, "")
	if err != nil {
		return nil, err
	}
	rec.Used = &now
	w := &write{}
	w.record(entry)
	if err := w.setJSON(key, rec); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	return p, nil
}

// RevokeCheckpointCode is an operator's: the code with the id can no
// longer be used, and the sessions it started end now. Revoking a revoked
// code answers its state again. Audited as checkpoint_code.revoke.
func (n *Node) RevokeCheckpointCode(ctx context.Context, id string) (*CheckpointCode, error) {
	entry, err := callerEntry(ctx, ActionCheckpointCodeRevoke, "")
	if err != nil {
		return nil, err
	}
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, hcx.Invalidf("id", "a checkpoint code's id is 16 lower-case hex characters")
	}
	var key string
	err = n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(pCPCodeID + id))
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		key = string(v)
		return err
	})
	if err == badger.ErrKeyNotFound {
		return nil, hcx.Errorf(hcx.ENotFound, "checkpoint_code_unknown", "no checkpoint code %s at this node", id)
	}
	if err != nil {
		return nil, err
	}
	rec, found, unlock, err := n.holdCheckpointCode(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !found {
		return nil, hcx.Errorf(hcx.ENotFound, "checkpoint_code_unknown", "no checkpoint code %s at this node", id)
	}
	if rec.Revoked == nil {
		now := n.cfg.Now().UTC()
		rec.Revoked = &now
		entry.Note = "checkpoint code " + id
		w := &write{}
		w.record(entry)
		if err := w.setJSON(key, rec); err != nil {
			return nil, err
		}
		if err := n.write(w); err != nil {
			return nil, err
		}
	}
	// Also when it was revoked before: the API starts a session just after
	// the code's use, so a use a moment before the revocation may start one
	// after this; revoking again ends it (and a crash between the two steps
	// leaves nothing behind either).
	if _, err := n.EndSessions(ctx, CheckpointActorPrefix+id, ""); err != nil {
		return nil, err
	}
	return rec, nil
}
