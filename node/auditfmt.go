package node

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// The stored form of an audit entry (docs/decisions.md, "Issue 9: audit
// storage"). The chain hash is SM3 of the entry's canonical JSON; that JSON
// is rebuilt from this form (with seq from the key and prev from the entry
// before), so an entry hashes the same whichever way it is stored.
//
//	version  1 byte  (auditFormatV1)
//	flags    1 byte  (auditFlag*)
//	at       8 bytes unix nanoseconds, big-endian
//	role     1 byte  code in auditRoles; auditEscape then a string
//	method   1 byte  code in auditMethods; auditEscape then a string
//	action   1 byte  code in auditActions; auditEscape then a string
//	actor, province, subject, why, note, request id: uvarint length + bytes
//	         (the subject's raw base32-decoded bytes under auditFlagRawSubject,
//	         a "cert:" actor's raw kid under auditFlagCertActor, a hex
//	         request id's raw bytes under auditFlagHexReqID; each only when
//	         the text is exactly what encoding the raw bytes gives back)
//	prev     32 bytes, only in anchor entries (seq % auditAnchorEvery == 1)
//
// Every anchor entry carries its prev so that a page of the trail that starts
// mid-way rehashes at most auditAnchorEvery-1 entries to find its first prev.
// Decoding is strict: an entry decodes only if encoding it again gives the
// same bytes.
const (
	auditFormatV1 = 1

	auditFlagRawSubject = 1 << 0
	auditFlagPrev       = 1 << 1
	auditFlagCertActor  = 1 << 2 // actor "cert:<kid>" stored as the kid's raw bytes
	auditFlagHexReqID   = 1 << 3 // request id of lower-case hex stored as its raw bytes
	auditFlagsKnown     = auditFlagRawSubject | auditFlagPrev | auditFlagCertActor | auditFlagHexReqID

	auditEscape = 0xff

	auditAnchorEvery = 256

	// auditMaxString bounds every string field of a stored entry.
	auditMaxString = 4096
)

// The code tables. Codes are stored: append only, never reorder.
var (
	auditRoles = []string{"", string(auth.RoleAnonymous), string(auth.RoleResident), string(auth.RoleOperator),
		string(auth.RoleAuditor), string(auth.RoleFeed), string(auth.RoleCheckpoint), string(auth.RoleProvince), string(auth.RoleHub), string(auth.RoleNational)}
	auditMethods = []string{string(auth.MethodNone), string(auth.MethodSession), string(auth.MethodBearer), string(auth.MethodRequestToken)}
	auditActions = []string{"", ActionResidentRegister, ActionLabPost, ActionContactPost, ActionRulesReload, ActionResidentReadIdentity,
		ActionDeclarationPost, ActionVaccinationPost, ActionTravelPost, ActionOrderPost, ActionCheckInPost,
		// Issue 10's other actions. Actions of issue 9 (enrolments, guardians,
		// devices) stay in the escape form: stores hold them so, and an entry
		// decodes only if it encodes back to the same bytes.
		ActionOrderConfirm, ActionOrderLift, ActionOrderRead, ActionOrderReadPending, ActionDeclarationRead,
		ActionDependantRegister, ActionRiskDesignate, ActionRiskEnd, ActionVaccinationRead,
		ActionAppealFile, ActionAppealOpen, ActionAppealDecide, ActionRecordVoid, ActionIdentityReclaim,
		// Issue 11.
		ActionScanPost, ActionVenueApply, ActionVenueReview, ActionVenueRetire, ActionVenueCategoryAdd}
)

var subjectBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// The exact compressions of text fields: decode, and encode back.
var (
	subjectText = textForm{decode: func(s string) ([]byte, error) { return subjectBase32.DecodeString(s) }, encode: subjectBase32.EncodeToString}
	certActor   = textForm{prefix: "cert:", decode: base64.RawURLEncoding.DecodeString, encode: base64.RawURLEncoding.EncodeToString}
	hexText     = textForm{decode: hex.DecodeString, encode: hex.EncodeToString}
)

// textForm is a text encoding of bytes after a fixed prefix.
type textForm struct {
	prefix string
	decode func(string) ([]byte, error)
	encode func([]byte) string
}

// raw returns the bytes s stands for if encoding them gives exactly s.
func (f textForm) raw(s string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(s, f.prefix)
	if !ok || rest == "" {
		return nil, false
	}
	b, err := f.decode(rest)
	if err != nil || f.encode(b) != rest {
		return nil, false
	}
	return b, true
}

func (f textForm) text(b []byte) string { return f.prefix + f.encode(b) }

func auditAnchor(seq uint64) bool { return seq%auditAnchorEvery == 1 }

// encodeAuditEntry returns the stored form of e under seq; prev is the hash
// of the entry before, stored only when seq is an anchor. e.Seq and e.Prev
// are not read.
func encodeAuditEntry(e *AuditEntry, seq uint64, prev [32]byte) ([]byte, error) {
	ns := e.At.UnixNano()
	if !time.Unix(0, ns).Equal(e.At) {
		return nil, fmt.Errorf("audit entry time %v is out of the storable range", e.At)
	}
	strs := []string{e.Actor, string(e.Province), string(e.Subject), e.Why, e.Note, e.RequestID}
	for _, s := range strs {
		if len(s) > auditMaxString {
			return nil, fmt.Errorf("audit entry has a field of %d bytes, over %d", len(s), auditMaxString)
		}
	}
	var flags byte
	fields := make([][]byte, len(strs))
	for i, s := range strs {
		fields[i] = []byte(s)
	}
	for _, c := range []struct {
		i    int
		form textForm
		flag byte
	}{{0, certActor, auditFlagCertActor}, {2, subjectText, auditFlagRawSubject}, {5, hexText, auditFlagHexReqID}} {
		if raw, ok := c.form.raw(strs[c.i]); ok {
			fields[c.i], flags = raw, flags|c.flag
		}
	}
	if auditAnchor(seq) {
		flags |= auditFlagPrev
	}
	b := make([]byte, 0, 64+len(e.Actor)+len(e.Why)+len(e.Note)+len(e.RequestID))
	b = append(b, auditFormatV1, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
	b = appendCode(b, auditRoles, string(e.Role))
	b = appendCode(b, auditMethods, string(e.Method))
	b = appendCode(b, auditActions, e.Action)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	if flags&auditFlagPrev != 0 {
		b = append(b, prev[:]...)
	}
	return b, nil
}

func appendCode(b []byte, table []string, s string) []byte {
	for i, t := range table {
		if t == s {
			return append(b, byte(i))
		}
	}
	b = append(b, auditEscape)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// auditReader reads a stored entry field by field, bounds-checked.
type auditReader struct {
	b   []byte
	err error
}

func (r *auditReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *auditReader) next(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("%s: %d bytes wanted, %d left", what, n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *auditReader) bytes(what string) []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.fail("%s: bad length", what)
		return nil
	}
	if n > auditMaxString {
		r.fail("%s: length %d over %d", what, n, auditMaxString)
		return nil
	}
	r.b = r.b[k:]
	return r.next(int(n), what)
}

func (r *auditReader) code(table []string, what string) string {
	c := r.next(1, what)
	if r.err != nil {
		return ""
	}
	if c[0] == auditEscape {
		return string(r.bytes(what))
	}
	if int(c[0]) >= len(table) {
		r.fail("%s: unknown code %d", what, c[0])
		return ""
	}
	return table[c[0]]
}

// decodeAuditEntry decodes the stored entry b under seq. The entry's Prev is
// the hex of its stored prev if seq is an anchor, else empty (the caller
// sets it from the entry before). A record that does not decode, or is not
// in its canonical form, is an error naming seq.
func decodeAuditEntry(seq uint64, b []byte) (AuditEntry, error) {
	e, err := decodeAuditFields(seq, b)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit entry %d: %w", seq, err)
	}
	return e, nil
}

func decodeAuditFields(seq uint64, b []byte) (AuditEntry, error) {
	var e AuditEntry
	r := &auditReader{b: b}
	head := r.next(2, "header")
	if r.err != nil {
		return e, r.err
	}
	if head[0] != auditFormatV1 {
		return e, fmt.Errorf("unknown stored format version %d", head[0])
	}
	flags := head[1]
	if flags&^auditFlagsKnown != 0 {
		return e, fmt.Errorf("unknown flags %#x", flags)
	}
	if (flags&auditFlagPrev != 0) != auditAnchor(seq) {
		return e, errors.New("prev stored where it must not be, or missing where it must be")
	}
	at := r.next(8, "at")
	e.Role = auth.Role(r.code(auditRoles, "role"))
	e.Method = auth.Method(r.code(auditMethods, "method"))
	e.Action = r.code(auditActions, "action")
	actor := r.bytes("actor")
	e.Province = hcx.ProvinceCode(r.bytes("province"))
	sub := r.bytes("subject")
	e.Why = string(r.bytes("why"))
	e.Note = string(r.bytes("note"))
	reqID := r.bytes("request id")
	var prev [32]byte
	if flags&auditFlagPrev != 0 {
		copy(prev[:], r.next(32, "prev"))
	}
	if r.err != nil {
		return e, r.err
	}
	if len(r.b) != 0 {
		return e, fmt.Errorf("%d bytes after the entry", len(r.b))
	}
	e.Seq = seq
	e.At = time.Unix(0, int64(binary.BigEndian.Uint64(at))).UTC()
	e.Actor = fieldText(actor, flags&auditFlagCertActor != 0, certActor)
	e.Subject = hcx.Subject(fieldText(sub, flags&auditFlagRawSubject != 0, subjectText))
	e.RequestID = fieldText(reqID, flags&auditFlagHexReqID != 0, hexText)
	again, err := encodeAuditEntry(&e, seq, prev)
	if err != nil {
		return e, err
	}
	if !bytes.Equal(again, b) {
		return e, errors.New("not in canonical form")
	}
	if flags&auditFlagPrev != 0 {
		e.Prev = hex.EncodeToString(prev[:])
	}
	return e, nil
}

func fieldText(b []byte, raw bool, f textForm) string {
	if raw {
		return f.text(b)
	}
	return string(b)
}
