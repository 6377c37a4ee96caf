package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
)

// Residents' passkeys (DESIGN.md §8b). Each resident with a passkey has a
// random 32-byte user handle, the only thing about them an authenticator
// stores: never the subject, a name or a document number.
//
//	pkuser/<sub>            -> user handle (32 bytes)
//	pkhandle/<hex handle>   -> sub
//	pk/<sub>/<hex cred id>  -> Passkey
//	pkid/<hex cred id>      -> sub: a credential belongs to one resident
const (
	pPasskeyUser   = "pkuser/"
	pPasskeyHandle = "pkhandle/"
	pPasskey       = "pk/"
	pPasskeyID     = "pkid/"
)

// MaxPasskeys bounds the passkeys one resident may hold.
const MaxPasskeys = 16

// maxCredentialID bounds a credential id (WebAuthn allows up to 1023 bytes).
const maxCredentialID = 1023

// Passkey is one of a resident's passkeys.
type Passkey struct {
	ID       []byte    `json:"id"`
	Name     string    `json:"name,omitempty"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// Counter is the authenticator's signature counter at the last use; a
	// login whose counter does not go up is refused (UsePasskey).
	Counter uint32 `json:"counter"`
	// Credential is the relying party library's record of the credential
	// (public key, flags), kept as it encodes it.
	Credential json.RawMessage `json:"credential"`
}

func passkeyKey(sub hcx.Subject, id []byte) []byte {
	return []byte(pPasskey + string(sub) + "/" + hex.EncodeToString(id))
}

func checkCredentialID(id []byte) error {
	if len(id) == 0 || len(id) > maxCredentialID {
		return hcx.Invalidf("id", "a credential id is 1 to %d bytes, got %d", maxCredentialID, len(id))
	}
	return nil
}

// PasskeyHandle returns the resident's user handle, making one if they have
// none yet. A handle is made once and kept, so every passkey of a resident
// carries the same one.
func (n *Node) PasskeyHandle(ctx context.Context, sub hcx.Subject) ([]byte, error) {
	if err := sub.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var handle []byte
	err := n.updateAside(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(pPasskeyUser + string(sub)))
		if err == nil {
			handle, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		handle = make([]byte, 32)
		if _, err := rand.Read(handle); err != nil {
			return err
		}
		if err := txn.Set([]byte(pPasskeyUser+string(sub)), handle); err != nil {
			return err
		}
		return txn.Set([]byte(pPasskeyHandle+hex.EncodeToString(handle)), []byte(sub))
	})
	if err != nil {
		return nil, fmt.Errorf("passkey user handle: %w", err)
	}
	return handle, nil
}

// PasskeyOwner returns the resident whose user handle this is; an unknown
// handle is an EUnauthorized error with code passkey_unknown.
func (n *Node) PasskeyOwner(ctx context.Context, handle []byte) (hcx.Subject, error) {
	if len(handle) != 32 {
		return "", UnknownPasskey()
	}
	var sub hcx.Subject
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(pPasskeyHandle + hex.EncodeToString(handle)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return UnknownPasskey()
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { sub = hcx.Subject(b); return nil })
	})
	return sub, err
}

// UnknownPasskey is the error of a login with a passkey this node does not
// hold (never registered, or removed).
func UnknownPasskey() *hcx.Error {
	return hcx.Errorf(hcx.EUnauthorized, "passkey_unknown", "this passkey is not registered here (it may have been removed); log in another way")
}

// Passkeys lists the resident's passkeys in the order of their ids.
func (n *Node) Passkeys(ctx context.Context, sub hcx.Subject) ([]Passkey, error) {
	if err := sub.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Passkey
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		out, err = passkeysOf(txn, sub)
		return err
	})
	return out, err
}

func passkeysOf(txn *badger.Txn, sub hcx.Subject) ([]Passkey, error) {
	out := []Passkey{}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pPasskey + string(sub) + "/")})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var pk Passkey
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &pk) }); err != nil {
			return nil, err
		}
		out = append(out, pk)
	}
	return out, nil
}

// AddPasskey stores a new passkey of the resident. A credential id already
// registered (to anyone) is EConflict passkey_exists; a resident holding
// MaxPasskeys already is EConflict passkey_limit.
func (n *Node) AddPasskey(ctx context.Context, sub hcx.Subject, pk Passkey) error {
	if err := sub.Validate(); err != nil {
		return err
	}
	if err := checkCredentialID(pk.ID); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return n.updateAside(func(txn *badger.Txn) error {
		idKey := []byte(pPasskeyID + hex.EncodeToString(pk.ID))
		if _, err := txn.Get(idKey); err == nil {
			return hcx.Errorf(hcx.EConflict, "passkey_exists", "this passkey is registered already")
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		have, err := passkeysOf(txn, sub)
		if err != nil {
			return err
		}
		if len(have) >= MaxPasskeys {
			return hcx.Errorf(hcx.EConflict, "passkey_limit", "you hold %d passkeys, the most allowed; remove one first", len(have))
		}
		if err := setJSON(txn, string(passkeyKey(sub, pk.ID)), &pk); err != nil {
			return err
		}
		return txn.Set(idKey, []byte(sub))
	})
}

// UsePasskey records a login with the resident's passkey: its new
// signature counter, the library's updated record and the time. A counter
// that does not go up (when either counter is non-zero: authenticators that
// keep no counter always send 0) is EUnauthorized passkey_counter, the sign
// of a cloned authenticator; a passkey removed meanwhile is passkey_unknown.
func (n *Node) UsePasskey(ctx context.Context, sub hcx.Subject, id []byte, counter uint32, credential json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := n.cfg.Now()
	return n.updateAside(func(txn *badger.Txn) error {
		var pk Passkey
		ok, err := getJSON(txn, string(passkeyKey(sub, id)), &pk)
		if err != nil {
			return err
		}
		if !ok {
			return UnknownPasskey()
		}
		if (counter != 0 || pk.Counter != 0) && counter <= pk.Counter {
			return hcx.Errorf(hcx.EUnauthorized, "passkey_counter", "this passkey's signature counter went backwards (%d after %d): it may have been copied; remove it and register a new one", counter, pk.Counter)
		}
		pk.Counter, pk.LastUsed, pk.Credential = counter, now, credential
		return setJSON(txn, string(passkeyKey(sub, id)), &pk)
	})
}

// RemovePasskey deletes one of the resident's passkeys and returns how many
// they still hold. A passkey that is not theirs is ENotFound
// passkey_not_found (whoever holds it).
func (n *Node) RemovePasskey(ctx context.Context, sub hcx.Subject, id []byte) (int, error) {
	if err := sub.Validate(); err != nil {
		return 0, err
	}
	if err := checkCredentialID(id); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	left := 0
	err := n.updateAside(func(txn *badger.Txn) error {
		key := passkeyKey(sub, id)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return hcx.Errorf(hcx.ENotFound, "passkey_not_found", "you hold no passkey with this id; list yours with GET /v1/auth/passkeys")
		} else if err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		if err := txn.Delete([]byte(pPasskeyID + hex.EncodeToString(id))); err != nil {
			return err
		}
		have, err := passkeysOf(txn, sub)
		left = len(have)
		return err
	})
	return left, err
}
