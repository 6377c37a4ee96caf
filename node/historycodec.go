package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/policy"
)

// A history is read and rewritten by every event about its resident, so it is
// stored in a compact binary form rather than JSON (which spends most of its
// time formatting and parsing times). Times are Unix nanoseconds, 8 bytes big
// endian; counts and lengths uvarints; strings a uvarint length and bytes.
//
//	version 2 (1 byte)
//	recorded, dropped
//	labs:         count, then per result: time, flags (1 byte: 1 positive,
//	              2 antigen), id
//	contacts:     count, then per flag: time, issuer, id
//	declarations: count, then per declaration: time, temperature (float64
//	              bits, 8 bytes), symptoms (count, strings), id
//	vaccinations: count, then per dose: time, dose, course doses, product,
//	              province, id
//	travel:       count, then per stay: time, division, id
//	orders:       count, then per order: time, id, colour, flags (1 byte:
//	              1 local, 2 national confirmation, 4 lifted)
//	check-ins:    count, then per check-in: time, temperature, symptoms, id
//	venues:       (version 3) count, then per venue exposure: time, venue
//	              id, division, level, issuer, id
//
// Version 1 (issue 8) had labs and contacts only, without ids; version 2
// (issue 10) had no venues. Both are read and written back as version 3.
const (
	historyV1      = 1
	historyV2      = 2
	historyVersion = 3
)

const (
	labPositive = 1 << iota
	labAntigen
)

const (
	orderLocal = 1 << iota
	orderNational
	orderLifted
)

// Bounds of one stored string (ids, products, symptoms).
const maxHistoryString = 256

type histWriter struct{ b []byte }

func (w *histWriter) uv(v uint64)    { w.b = binary.AppendUvarint(w.b, v) }
func (w *histWriter) at(t time.Time) { w.b = binary.BigEndian.AppendUint64(w.b, uint64(t.UnixNano())) }
func (w *histWriter) f64(v float64)  { w.b = binary.BigEndian.AppendUint64(w.b, math.Float64bits(v)) }
func (w *histWriter) str(s string)   { w.uv(uint64(len(s))); w.b = append(w.b, s...) }
func (w *histWriter) strs(s []string) {
	w.uv(uint64(len(s)))
	for _, x := range s {
		w.str(x)
	}
}

func (h *history) MarshalBinary() ([]byte, error) {
	w := histWriter{b: make([]byte, 0, 16+len(h.Labs)*10+len(h.Contacts)*17+len(h.Travel)*16+len(h.Vaccinations)*32+len(h.Declarations)*24)}
	w.b = append(w.b, historyVersion)
	w.uv(h.Recorded)
	w.uv(h.Dropped)
	w.uv(uint64(len(h.Labs)))
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
		w.at(l.At)
		w.b = append(w.b, f)
		w.str(l.ID)
	}
	w.uv(uint64(len(h.Contacts)))
	for _, c := range h.Contacts {
		w.at(c.At)
		w.str(string(c.Issuer))
		w.str(c.ID)
	}
	w.uv(uint64(len(h.Declarations)))
	for _, d := range h.Declarations {
		w.at(d.At)
		w.f64(d.TempC)
		w.strs(d.Symptoms)
		w.str(d.ID)
	}
	w.uv(uint64(len(h.Vaccinations)))
	for _, v := range h.Vaccinations {
		if v.Dose < 0 || v.CourseDoses < 0 {
			return nil, fmt.Errorf("vaccination dose %d of %d cannot be stored", v.Dose, v.CourseDoses)
		}
		w.at(v.At)
		w.uv(uint64(v.Dose))
		w.uv(uint64(v.CourseDoses))
		w.str(v.Product)
		w.str(string(v.Province))
		w.str(v.ID)
	}
	w.uv(uint64(len(h.Travel)))
	for _, t := range h.Travel {
		w.at(t.At)
		w.str(string(t.Div))
		w.str(t.ID)
	}
	w.uv(uint64(len(h.Orders)))
	for _, o := range h.Orders {
		var f byte
		if o.LocalConfirmed {
			f |= orderLocal
		}
		if o.NationalConfirmed {
			f |= orderNational
		}
		if o.Lifted {
			f |= orderLifted
		}
		w.at(o.At)
		w.str(o.ID)
		w.str(string(o.Colour))
		w.b = append(w.b, f)
	}
	w.uv(uint64(len(h.CheckIns)))
	for _, c := range h.CheckIns {
		w.at(c.At)
		w.f64(c.TempC)
		w.strs(c.Symptoms)
		w.str(c.ID)
	}
	w.uv(uint64(len(h.Venues)))
	for _, v := range h.Venues {
		w.at(v.At)
		w.str(v.VenueID)
		w.str(string(v.Div))
		w.str(v.Level)
		w.str(string(v.Issuer))
		w.str(v.ID)
	}
	return w.b, nil
}

var errHistoryShort = errors.New("history value is cut short")

type histReader struct {
	b   []byte
	err error
}

func (r *histReader) uv() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errHistoryShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a list length, each element at least min bytes.
func (r *histReader) count(min int) int {
	v := r.uv()
	if r.err == nil && v > uint64(len(r.b)/min) {
		r.err = errHistoryShort
		return 0
	}
	return int(v)
}

func (r *histReader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errHistoryShort
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *histReader) at() time.Time { return time.Unix(0, int64(r.u64())).UTC() }
func (r *histReader) f64() float64  { return math.Float64frombits(r.u64()) }
func (r *histReader) byte1() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errHistoryShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *histReader) str() string {
	n := r.uv()
	if r.err == nil && (n > uint64(len(r.b)) || n > maxHistoryString) {
		r.err = errHistoryShort
	}
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *histReader) strs() []string {
	n := r.count(1)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

func (h *history) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] < historyV1 || b[0] > historyVersion {
		return fmt.Errorf("history value of unknown version; this node reads versions %d to %d", historyV1, historyVersion)
	}
	v2, v3 := b[0] >= historyV2, b[0] >= historyVersion
	r := &histReader{b: b[1:]}
	*h = history{Recorded: r.uv(), Dropped: r.uv()}
	lab := func(l *policy.LabResult) {
		l.At = r.at()
		f := r.byte1()
		l.Positive = f&labPositive != 0
		l.Kind = "pcr"
		if f&labAntigen != 0 {
			l.Kind = "antigen"
		}
		if v2 {
			l.ID = r.str()
		}
	}
	if n := r.count(9); n > 0 {
		h.Labs = make([]policy.LabResult, n)
		for i := range h.Labs {
			lab(&h.Labs[i])
		}
	}
	if n := r.count(9); n > 0 {
		h.Contacts = make([]policy.ContactFlag, n)
		for i := range h.Contacts {
			c := &h.Contacts[i]
			c.At = r.at()
			c.Issuer = hcx.ProvinceCode(r.str())
			if v2 {
				c.ID = r.str()
			}
		}
	}
	if v2 {
		if n := r.count(18); n > 0 {
			h.Declarations = make([]policy.Declaration, n)
			for i := range h.Declarations {
				d := &h.Declarations[i]
				d.At, d.TempC, d.Symptoms, d.ID = r.at(), r.f64(), r.strs(), r.str()
			}
		}
		if n := r.count(13); n > 0 {
			h.Vaccinations = make([]policy.Vaccination, n)
			for i := range h.Vaccinations {
				v := &h.Vaccinations[i]
				v.At, v.Dose, v.CourseDoses = r.at(), int(r.uv()), int(r.uv())
				v.Product, v.Province, v.ID = r.str(), hcx.ProvinceCode(r.str()), r.str()
			}
		}
		if n := r.count(10); n > 0 {
			h.Travel = make([]policy.TravelRecord, n)
			for i := range h.Travel {
				t := &h.Travel[i]
				t.At, t.Div, t.ID = r.at(), hcx.DivisionCode(r.str()), r.str()
			}
		}
		if n := r.count(11); n > 0 {
			h.Orders = make([]policy.Order, n)
			for i := range h.Orders {
				o := &h.Orders[i]
				o.At, o.ID, o.Colour = r.at(), r.str(), hcx.Colour(r.str())
				f := r.byte1()
				o.LocalConfirmed, o.NationalConfirmed, o.Lifted = f&orderLocal != 0, f&orderNational != 0, f&orderLifted != 0
			}
		}
		if n := r.count(18); n > 0 {
			h.CheckIns = make([]policy.CheckIn, n)
			for i := range h.CheckIns {
				c := &h.CheckIns[i]
				c.At, c.TempC, c.Symptoms, c.ID = r.at(), r.f64(), r.strs(), r.str()
			}
		}
	}
	if v3 {
		if n := r.count(13); n > 0 {
			h.Venues = make([]policy.VenueExposure, n)
			for i := range h.Venues {
				v := &h.Venues[i]
				v.At, v.VenueID, v.Div = r.at(), r.str(), hcx.DivisionCode(r.str())
				v.Level, v.Issuer, v.ID = r.str(), hcx.ProvinceCode(r.str()), r.str()
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("history value has %d bytes after its end", len(r.b))
	}
	return nil
}
