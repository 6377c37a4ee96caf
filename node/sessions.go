package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/certs"
)

// Server-side sessions (DESIGN.md §8b): a resident's browser holds only a
// random 32-byte secret; the node keeps SM3(secret) as the key, so that a
// copy of the store does not hand anyone a live session.
//
//	sess/<hex sm3(secret)>                     -> sessionRecord
//	sessa/<hex sm3(actor)>/<created 20>/<hash> -> nil: an actor's sessions, oldest first
//	sessx/<expires unix 20>/<hash>             -> nil: sessions by absolute expiry, for the purge
const (
	pSession      = "sess/"
	pSessionActor = "sessa/"
	pSessionExp   = "sessx/"
)

// Session defaults.
const (
	DefaultSessionTTL       = 12 * time.Hour
	DefaultSessionIdle      = 30 * time.Minute
	DefaultSessionsPerActor = 10
	// sessionTouchEvery bounds how often a session's last use is written:
	// the idle expiry slides, but a busy page does not write on every call.
	sessionTouchEvery = time.Minute
	// sessionPurgeBatch bounds the expired sessions one purge deletes.
	sessionPurgeBatch = 256
)

// sessionSecretLen is the length of a session secret in bytes.
const sessionSecretLen = 32

// sessionRecord is what the node keeps about a session. It carries the
// principal, never a name or document number.
type sessionRecord struct {
	Principal auth.Principal `json:"principal"`
	Created   time.Time      `json:"created"`
	LastSeen  time.Time      `json:"last_seen"`
	Expires   time.Time      `json:"expires"`
}

// sessionDefaults fills the session settings of c.
func (c *Config) sessionDefaults() {
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SessionIdle <= 0 || c.SessionIdle > c.SessionTTL {
		c.SessionIdle = min(DefaultSessionIdle, c.SessionTTL)
	}
	if c.SessionsPerActor <= 0 {
		c.SessionsPerActor = DefaultSessionsPerActor
	}
}

func sessionHash(secret []byte) string {
	h := certs.SM3(secret)
	return hex.EncodeToString(h[:])
}

func actorKey(actor string) string {
	h := certs.SM3([]byte(actor))
	return pSessionActor + hex.EncodeToString(h[:16]) + "/"
}

func sessionActorKey(rec *sessionRecord, id string) []byte {
	return []byte(fmt.Sprintf("%s%020d/%s", actorKey(rec.Principal.Actor), rec.Created.UnixNano(), id))
}

func sessionExpKey(rec *sessionRecord, id string) []byte {
	return []byte(fmt.Sprintf("%s%020d/%s", pSessionExp, rec.Expires.Unix(), id))
}

// updateAside runs fn in a read-write transaction, again if it conflicts with
// another one (sessions are written outside the group committer: they touch
// no resident's state).
func (n *Node) updateAside(fn func(txn *badger.Txn) error) error {
	var err error
	for range 5 {
		if err = n.db.Update(fn); !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

// NewSession starts a server-side session for p and returns its secret (the
// cookie value, base64url without padding) and its absolute expiry. The
// principal is stored with Method session; an actor with more live sessions
// than Config.SessionsPerActor loses the oldest. p must name an actor.
func (n *Node) NewSession(ctx context.Context, p *auth.Principal) (string, time.Time, error) {
	if p == nil || p.IsAnonymous() || p.Actor == "" {
		return "", time.Time{}, hcx.Errorf(hcx.EInvalid, "no_actor", "a session needs a principal with a role and an actor")
	}
	if p.Subject != "" {
		if err := p.Subject.Validate(); err != nil {
			return "", time.Time{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return "", time.Time{}, err
	}
	secret := make([]byte, sessionSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return "", time.Time{}, fmt.Errorf("session secret: %w", err)
	}
	id := sessionHash(secret)
	now := n.cfg.Now()
	rec := sessionRecord{Principal: *p, Created: now, LastSeen: now, Expires: now.Add(n.cfg.SessionTTL)}
	rec.Principal.Method = auth.MethodSession
	rec.Principal.Session = ""
	err := n.updateAside(func(txn *badger.Txn) error {
		if err := n.capSessions(txn, rec.Principal.Actor, now); err != nil {
			return err
		}
		if err := setJSON(txn, pSession+id, &rec); err != nil {
			return err
		}
		if err := txn.Set(sessionActorKey(&rec, id), nil); err != nil {
			return err
		}
		return txn.Set(sessionExpKey(&rec, id), nil)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store session: %w", err)
	}
	// A login is the natural moment to sweep a few expired sessions away,
	// so that a node without its periodic work still stays bounded.
	if _, err := n.purgeSessions(now, sessionPurgeBatch); err != nil {
		n.log.Warn("purge expired sessions", "err", err)
	}
	return base64.RawURLEncoding.EncodeToString(secret), rec.Expires, nil
}

// capSessions drops the actor's oldest sessions, and any that have lapsed,
// until one more fits under the cap.
func (n *Node) capSessions(txn *badger.Txn, actor string, now time.Time) error {
	ids, keys := actorSessions(txn, actor)
	live := len(ids)
	for i, id := range ids { // oldest first
		rec, ok, err := getSession(txn, id)
		if err != nil {
			return err
		}
		if ok && live < n.cfg.SessionsPerActor && !rec.lapsed(now, n.cfg.SessionIdle) {
			continue
		}
		if err := deleteSession(txn, id, rec, ok, keys[i]); err != nil {
			return err
		}
		live--
	}
	return nil
}

// actorSessions lists the ids of an actor's sessions, oldest first, with
// their index keys.
func actorSessions(txn *badger.Txn, actor string) (ids []string, keys [][]byte) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(actorKey(actor))})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		ids = append(ids, string(k[len(k)-64:]))
		keys = append(keys, k)
	}
	return ids, keys
}

func getSession(txn *badger.Txn, id string) (*sessionRecord, bool, error) {
	var rec sessionRecord
	ok, err := getJSON(txn, pSession+id, &rec)
	return &rec, ok, err
}

// deleteSession removes a session and its index entries; for a session
// that is gone already (ok false) it removes the index entry dangling
// names, if any.
func deleteSession(txn *badger.Txn, id string, rec *sessionRecord, ok bool, dangling []byte) error {
	if !ok {
		if dangling == nil {
			return nil
		}
		return txn.Delete(dangling)
	}
	for _, k := range [][]byte{[]byte(pSession + id), sessionActorKey(rec, id), sessionExpKey(rec, id)} {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (r *sessionRecord) lapsed(now time.Time, idle time.Duration) bool {
	return !now.Before(r.Expires) || !now.Before(r.LastSeen.Add(idle))
}

// Session returns the principal of the live session whose secret is given,
// with Method session and Session set to the session's id (SM3 of the
// secret, in hex). It slides the idle expiry, writing at most once a minute.
// A secret that is malformed, unknown, ended or expired is auth.InvalidSession()
// (an expired session is deleted on the way).
func (n *Node) Session(ctx context.Context, secret string) (*auth.Principal, error) {
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || len(raw) != sessionSecretLen {
		return nil, auth.InvalidSession()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := sessionHash(raw)
	now := n.cfg.Now()
	var rec *sessionRecord
	var ok bool
	if err := n.db.View(func(txn *badger.Txn) error {
		rec, ok, err = getSession(txn, id)
		return err
	}); err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	if !ok {
		return nil, auth.InvalidSession()
	}
	if rec.lapsed(now, n.cfg.SessionIdle) {
		if err := n.updateAside(func(txn *badger.Txn) error { return deleteSession(txn, id, rec, true, nil) }); err != nil {
			n.log.Warn("delete expired session", "err", err)
		}
		return nil, auth.InvalidSession()
	}
	if now.Sub(rec.LastSeen) >= sessionTouchEvery {
		err := n.updateAside(func(txn *badger.Txn) error {
			cur, ok, err := getSession(txn, id)
			if err != nil || !ok {
				return err // ended meanwhile: nothing to slide
			}
			cur.LastSeen = now
			return setJSON(txn, pSession+id, cur)
		})
		if err != nil {
			// The session stays valid; it only slides later.
			n.log.Warn("slide session expiry", "err", err)
		}
	}
	p := rec.Principal
	p.Method = auth.MethodSession
	p.Session = id
	return &p, nil
}

// EndSession deletes the session with the given id (Principal.Session).
// Ending a session that does not exist is not an error.
func (n *Node) EndSession(ctx context.Context, id string) error {
	if len(id) != 64 {
		return hcx.Invalidf("session", "a session id is 64 hex characters")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return n.updateAside(func(txn *badger.Txn) error {
		rec, ok, err := getSession(txn, id)
		if err != nil {
			return err
		}
		return deleteSession(txn, id, rec, ok, nil)
	})
}

// EndSessions deletes every session of actor except the one with id except
// (empty: all of them), and returns how many it deleted. A removed passkey
// and a reclaimed identity end the sessions they may have opened.
func (n *Node) EndSessions(ctx context.Context, actor, except string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ended := 0
	err := n.updateAside(func(txn *badger.Txn) error {
		ids, keys := actorSessions(txn, actor)
		var err error
		ended, err = deleteSessions(txn, ids, keys, except)
		return err
	})
	return ended, err
}

// PurgeSessions deletes sessions whose absolute expiry has passed (idle ones
// are deleted when next presented, and at their absolute expiry here at the
// latest). It returns how many it deleted. Run calls it every minute.
func (n *Node) PurgeSessions() (int, error) {
	total := 0
	for {
		k, err := n.purgeSessions(n.cfg.Now(), sessionPurgeBatch)
		total += k
		if err != nil || k < sessionPurgeBatch {
			return total, err
		}
	}
}

func (n *Node) purgeSessions(now time.Time, limit int) (int, error) {
	purged := 0
	err := n.updateAside(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pSessionExp)})
		var ids []string
		var keys [][]byte
		for it.Rewind(); it.Valid() && len(ids) < limit; it.Next() {
			k := it.Item().KeyCopy(nil)
			var unix int64
			if _, err := fmt.Sscanf(string(k[len(pSessionExp):len(pSessionExp)+20]), "%d", &unix); err != nil {
				break
			}
			if unix > now.Unix() {
				break
			}
			ids = append(ids, string(k[len(k)-64:]))
			keys = append(keys, k)
		}
		it.Close()
		var err error
		purged, err = deleteSessions(txn, ids, keys, "")
		return err
	})
	return purged, err
}

// deleteSessions deletes the sessions ids (but except) found under the
// index keys, and returns how many existed.
func deleteSessions(txn *badger.Txn, ids []string, keys [][]byte, except string) (int, error) {
	deleted := 0
	for i, id := range ids {
		if id == except {
			continue
		}
		rec, ok, err := getSession(txn, id)
		if err != nil {
			return deleted, err
		}
		if err := deleteSession(txn, id, rec, ok, keys[i]); err != nil {
			return deleted, err
		}
		if ok {
			deleted++
		}
	}
	return deleted, nil
}

// sessionLoop purges expired sessions every minute until ctx ends.
func (n *Node) sessionLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			if k, err := n.PruneChecks(); err != nil {
				n.log.Warn("prune check history", "err", err)
			} else if k > 0 {
				n.log.Debug("old checks pruned", "checks", k)
			}
			if k, err := n.PruneStats(); err != nil {
				n.log.Warn("prune check statistics", "err", err)
			} else if k > 0 {
				n.log.Debug("old check statistics pruned", "buckets", k)
			}
		case <-t.C:
			if k, err := n.PurgeSessions(); err != nil {
				n.log.Warn("purge expired sessions", "err", err)
			} else if k > 0 {
				n.log.Debug("expired sessions purged", "sessions", k)
			}
		}
	}
}
