package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// A history is read and rewritten by every event about its resident, so it is
// stored in a compact binary form rather than JSON (which spends most of its
// time formatting and parsing times):
//
//	version 1 (1 byte)
//	recorded, dropped (uvarints)
//	labs: count (uvarint), then per result: Unix nanoseconds (8 bytes, big
//	      endian), flags (1 byte: 1 positive, 2 antigen)
//	contacts: count (uvarint), then per flag: Unix nanoseconds (8 bytes),
//	      issuer (uvarint length, bytes)
const historyVersion = 1

const (
	labPositive = 1 << iota
	labAntigen
)

func (h *history) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(h.Labs)*9+len(h.Contacts)*16+8)
	b = append(b, historyVersion)
	b = binary.AppendUvarint(b, h.Recorded)
	b = binary.AppendUvarint(b, h.Dropped)
	b = binary.AppendUvarint(b, uint64(len(h.Labs)))
	for _, l := range h.Labs {
		var f byte
		if l.Positive {
			f |= labPositive
		}
		switch l.Kind {
		case "pcr":
		case "antigen":
			f |= labAntigen
		default:
			return nil, fmt.Errorf("lab result kind %q cannot be stored: want pcr or antigen", l.Kind)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(l.At.UnixNano()))
		b = append(b, f)
	}
	b = binary.AppendUvarint(b, uint64(len(h.Contacts)))
	for _, c := range h.Contacts {
		b = binary.BigEndian.AppendUint64(b, uint64(c.At.UnixNano()))
		b = binary.AppendUvarint(b, uint64(len(c.Issuer)))
		b = append(b, c.Issuer...)
	}
	return b, nil
}

var errHistoryShort = errors.New("history value is cut short")

func (h *history) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != historyVersion {
		return fmt.Errorf("history value of unknown version; this node reads version %d", historyVersion)
	}
	b = b[1:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errHistoryShort
		}
		b = b[n:]
		return v, nil
	}
	at := func() (time.Time, error) {
		if len(b) < 8 {
			return time.Time{}, errHistoryShort
		}
		t := time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
		b = b[8:]
		return t, nil
	}
	var err error
	if h.Recorded, err = uv(); err != nil {
		return err
	}
	if h.Dropped, err = uv(); err != nil {
		return err
	}
	nl, err := uv()
	if err != nil || nl > uint64(len(b)/9) {
		return errHistoryShort
	}
	h.Labs = make([]policy.LabResult, nl)
	for i := range h.Labs {
		if h.Labs[i].At, err = at(); err != nil || len(b) < 1 {
			return errHistoryShort
		}
		f := b[0]
		b = b[1:]
		h.Labs[i].Positive = f&labPositive != 0
		h.Labs[i].Kind = "pcr"
		if f&labAntigen != 0 {
			h.Labs[i].Kind = "antigen"
		}
	}
	nc, err := uv()
	if err != nil || nc > uint64(len(b)/9) {
		return errHistoryShort
	}
	h.Contacts = make([]policy.ContactFlag, nc)
	for i := range h.Contacts {
		if h.Contacts[i].At, err = at(); err != nil {
			return err
		}
		n, err := uv()
		if err != nil || n > uint64(len(b)) {
			return errHistoryShort
		}
		h.Contacts[i].Issuer = hcx.ProvinceCode(b[:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return fmt.Errorf("history value has %d bytes after its end", len(b))
	}
	return nil
}
