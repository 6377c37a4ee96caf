package witness

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// SizeContentType is the type of a 409 answer: the witness's size.
const SizeContentType = "text/x.tlog.size"

// ServeAdd answers POST <prefix>/add-checkpoint for caller (authenticated
// by the server that routes here): 200 with the cosignature line as
// text/plain, 409 with the witness's size as text/x.tlog.size, and every
// other refusal as the project's JSON error with the status tlog-witness
// gives it.
func (w *Witness) ServeAdd(rw http.ResponseWriter, r *http.Request, caller string) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestBody))
	if err != nil {
		writeJSONError(rw, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("an add-checkpoint body is at most %d bytes", MaxRequestBody))
		return
	}
	line, err := w.Add(caller, body)
	var e *Error
	switch {
	case err == nil:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write(line)
	case errors.As(err, &e) && e.Status == http.StatusConflict:
		rw.Header().Set("Content-Type", SizeContentType)
		rw.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(rw, strconv.FormatUint(e.Size, 10)+"\n")
	case errors.As(err, &e):
		writeJSONError(rw, e.Status, e.Code, e.Message)
	default:
		w.cfg.Logger.Error("witness", "err", err)
		writeJSONError(rw, http.StatusInternalServerError, "internal", "internal error")
	}
}

func writeJSONError(rw http.ResponseWriter, status int, code, msg string) {
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// badgerStore keeps the state under one key: size (8 bytes, big-endian) ||
// root (32) || note.
type badgerStore struct {
	db  *badger.DB
	key []byte
}

// NewBadgerStore keeps a witness's state in db under key. Writes are as
// durable as db's (a synced badger makes them survive a crash).
func NewBadgerStore(db *badger.DB, key string) Store {
	return &badgerStore{db: db, key: []byte(key)}
}

func (s *badgerStore) Latest() (size uint64, root []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		size, root, err = s.read(txn)
		return err
	})
	return size, root, err
}

func (s *badgerStore) read(txn *badger.Txn) (uint64, []byte, error) {
	it, err := txn.Get(s.key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return 0, nil, err
	}
	if len(v) < 40 {
		return 0, nil, fmt.Errorf("witness state %q is %d bytes, want at least 40", s.key, len(v))
	}
	return binary.BigEndian.Uint64(v), v[8:40], nil
}

func (s *badgerStore) Advance(old, size uint64, root, note []byte) error {
	if len(root) != 32 {
		return fmt.Errorf("witness: root is %d bytes, want 32", len(root))
	}
	return s.db.Update(func(txn *badger.Txn) error {
		cur, _, err := s.read(txn)
		if err != nil {
			return err
		}
		if cur != old {
			return fmt.Errorf("witness state moved: size %d, not %d", cur, old)
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 40+len(note)), size)
		v = append(append(v, root...), note...)
		return txn.Set(s.key, v)
	})
}

// Client submits checkpoints to one witness.
type Client struct {
	// URL is the witness's submission prefix (the route is URL +
	// "/add-checkpoint").
	URL string
	// HTTP sends the requests; the hub's signs them with its member's
	// request tokens. It must have a time-out.
	HTTP *http.Client
}

// ConflictError is a 409: the witness's stored size differs from the old
// size sent (or its root at that size differs).
type ConflictError struct{ Size uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the witness last cosigned size %d", e.Size)
}

// AddCheckpoint submits note with a consistency proof from old and returns
// the witness's cosignature lines, checked only for shape (the caller
// verifies them against the witnesses it trusts).
func (c *Client) AddCheckpoint(ctx context.Context, old uint64, p [][]byte, note []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/add-checkpoint", bytes.NewReader(EncodeRequest(old, p, note)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxRequestBody))
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", c.URL, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if !bytes.HasPrefix(body, []byte("— ")) || !bytes.HasSuffix(body, []byte("\n")) {
			return nil, fmt.Errorf("witness %s: 200 without signature lines", c.URL)
		}
		return body, nil
	case http.StatusConflict:
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != SizeContentType {
			return nil, fmt.Errorf("witness %s: 409 of type %q, want %s", c.URL, mt, SizeContentType)
		}
		v := strings.TrimSuffix(string(body), "\n")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("witness %s: 409 with size %q", c.URL, clip(body))
		}
		return nil, &ConflictError{Size: n}
	default:
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return nil, &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: fmt.Sprintf("witness %s: %d %s: %s", c.URL, resp.StatusCode, e.Error.Code, e.Error.Message)}
		}
		return nil, &Error{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Message: fmt.Sprintf("witness %s: %s", c.URL, resp.Status)}
	}
}
