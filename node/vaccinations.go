package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
	"github.com/hcxfed/hcx/exchange"
	"github.com/hcxfed/hcx/policy"
)

// Vaccinations across provinces (docs/decisions.md, "Issue 10:
// vaccinations across provinces").
//
// A dose a province's registry records for a subject its node does not
// hold is not refused: the node writes it to the vaccination outbox
// (vaxout/) in the same synced commit as the record id and the audit entry,
// and the publisher sends the outbox to the hub as hcx.vax.v1 envelopes
// (subjects and dose facts, never an identity). Every node's follower reads
// them: doses about its residents are queued (vaxin/) and recorded in the
// residents' histories by vaxLoop, the node's own background write, which
// re-decides them; doses about subjects it does not hold are kept (fdose/,
// bounded per subject, for RecordRetention) for a resident who registers
// later (adoptForeignDoses).
const (
	pVaxOut     = "vaxout/"          // vaxout/<unix nanos 20>/<sub>/<id> -> exchange.VaxDose
	pVaxIn      = "vaxin/"           // vaxin/<sub>/<iss>/<id> -> exchange.VaxDose, about a resident, to record
	pForeignVax = "fdose/"           // fdose/<sub>/<iss>/<id> -> exchange.VaxDose, about a subject not held
	kVaxPending = "meta/vax-pending" // pendingVax: signed, maybe submitted, not yet acknowledged
)

// MaxForeignDosesPerSubject bounds the doses kept for one subject the node
// does not hold; further doses about them are dropped (and counted).
const MaxForeignDosesPerSubject = 16

// ActionVaccinationRead names a read of a resident's vaccination details in
// the audit trail.
const ActionVaccinationRead = "vaccination.read"

// Products are the vaccines the registry feeds may name, with the doses of
// their primary course: a dose of another product is refused (product), a
// course that contradicts the product's is refused (course_doses).
var Products = map[string]int{
	"BBIBP-CorV":  2, // Sinopharm (Beijing)
	"WIBP-CorV":   2, // Sinopharm (Wuhan)
	"CoronaVac":   2, // Sinovac
	"KCONVAC":     2, // Shenzhen Kangtai
	"IMBCAMS":     2, // Chinese Academy of Medical Sciences
	"Ad5-nCoV":    1, // CanSino, injected
	"Ad5-nCoV-IH": 1, // CanSino, inhaled
	"ZF2001":      3, // Zhifei Longcom
}

func productNames() string {
	var s []string
	for p := range Products {
		s = append(s, p)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// checkProduct checks a vaccination's product and fills its course from it.
func checkProduct(v *policy.Vaccination) error {
	course, ok := Products[v.Product]
	if !ok {
		return hcx.Invalidf("product", "product %q is not a known vaccine; want one of %s", v.Product, productNames())
	}
	if v.CourseDoses == 0 {
		v.CourseDoses = course
	}
	if v.CourseDoses != course {
		return hcx.Invalidf("course_doses", "%s has a primary course of %d doses, not %d; leave course_doses out to take the product's", v.Product, course, v.CourseDoses)
	}
	return nil
}

// checkDoseOrder refuses a dose that contradicts the doses recorded before:
// numbered below one recorded but given after it, numbered above one but
// given before it, or a dose number already recorded under another id.
func checkDoseOrder(h *history, v *policy.Vaccination) error {
	for _, o := range h.Vaccinations {
		day := o.At.UTC().Format(time.DateOnly)
		switch {
		case v.Dose == o.Dose:
			return hcx.Invalidf("dose", "dose %d was already recorded (given %s, record %q); a correction is an appeal", v.Dose, day, o.ID)
		case v.Dose < o.Dose && v.At.After(o.At):
			return hcx.Invalidf("dose", "dose %d is dated after dose %d (given %s): doses out of order; check the dose number or the date", v.Dose, o.Dose, day)
		case v.Dose > o.Dose && v.At.Before(o.At):
			return hcx.Invalidf("dose", "dose %d is dated before dose %d (given %s): doses out of order; check the dose number or the date", v.Dose, o.Dose, day)
		}
	}
	return nil
}

// doseOf is the wire form of a vaccination about sub.
func doseOf(sub hcx.Subject, v *policy.Vaccination) exchange.VaxDose {
	return exchange.VaxDose{Sub: sub, Dose: v.Dose, Course: v.CourseDoses, Prod: v.Product, At: v.At.Unix(), ID: v.ID}
}

// vaccinationOf is a dose from the hub as a history event of province iss.
func vaccinationOf(iss hcx.ProvinceCode, d *exchange.VaxDose) *Event {
	return &Event{Vaccination: &policy.Vaccination{At: time.Unix(d.At, 0).UTC(), Dose: d.Dose, CourseDoses: d.Course,
		Product: d.Prod, Province: iss, ID: d.ID}}
}

// foreignRecordKey is the record key of a dose another province reported:
// its id qualified by the province, so that two registries' ids never meet.
func foreignRecordKey(iss hcx.ProvinceCode, id string) string {
	return pRecord + KindVaccination + "/" + id + "@" + string(iss)
}

// forwardVaccination records a dose given here to someone this node does
// not hold: the record id (so that a re-sent record counts once) and the
// dose in the vaccination outbox, with entry, in one synced commit. The
// caller holds sub's lock.
func (n *Node) forwardVaccination(sub hcx.Subject, ev *Event, entry *AuditEntry) (*Status, error) {
	v := ev.Vaccination
	if v.ID == "" {
		return nil, hcx.Invalidf("id", "a dose for a resident of another province needs the registry's record id: it travels to their home node and counts once by it")
	}
	if v.Province != "" && v.Province != n.cfg.Province {
		return nil, hcx.Invalidf("province", "this node reports doses given in %s, not %s", n.cfg.Province, v.Province)
	}
	v.Province = n.cfg.Province
	rid := recordKey(ev)
	var dup bool
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		dup, err = checkRecord(txn, rid, sub, ev)
		return err
	})
	if err != nil {
		return nil, err
	}
	if dup {
		n.metrics.duplicates.Add(1)
		return &Status{Forwarded: true}, nil
	}
	w := &write{}
	w.record(entry)
	w.setTTL(rid, recordValue(sub, ev), recordTTL(ev))
	key := fmt.Sprintf("%s%020d/%s/%s", pVaxOut, n.cfg.Now().UnixNano(), sub, v.ID)
	if err := w.setJSON(key, doseOf(sub, v)); err != nil {
		return nil, err
	}
	if err := n.write(w); err != nil {
		return nil, err
	}
	n.metrics.events.Add(1)
	n.pokePublisher()
	return &Status{Forwarded: true}, nil
}

// pendingVax is a vaccination envelope that was signed and may have been
// submitted, with the outbox keys it carries: stored before the first
// submission, so that a restart resubmits the same bytes.
type pendingVax struct {
	JWS  string   `json:"jws"`
	Keys []string `json:"keys"`
}

// publishVax submits the pending vaccination envelope, or seals the next
// one from the vaccination outbox, and removes what the hub acknowledged.
// It reports whether an envelope was acknowledged.
func (n *Node) publishVax(ctx context.Context) (bool, error) {
	var p pendingVax
	var found bool
	err := n.db.Update(func(txn *badger.Txn) error {
		var err error
		if found, err = getJSON(txn, kVaxPending, &p); err != nil || found {
			return err
		}
		v := exchange.Vax{Iss: n.cfg.Province, At: n.cfg.Now().Unix()}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pVaxOut), PrefetchValues: true})
		size := 0
		for it.Rewind(); it.Valid() && len(v.Doses) < exchange.MaxVaxDoses && size < exchange.MaxEnvelopeBytes/4; it.Next() {
			var d exchange.VaxDose
			if err := it.Item().Value(func(b []byte) error { size += len(b); return json.Unmarshal(b, &d) }); err != nil {
				it.Close()
				return err
			}
			d.At = min(d.At, v.At) // a dose stamped a moment ahead of this clock
			v.Doses = append(v.Doses, d)
			p.Keys = append(p.Keys, string(it.Item().KeyCopy(nil)))
		}
		it.Close()
		if len(v.Doses) == 0 {
			return nil
		}
		if p.JWS, err = exchange.SealVax(n.cfg.Signer, &v); err != nil {
			return fmt.Errorf("seal vaccination envelope: %w", err)
		}
		found = true
		return setJSON(txn, kVaxPending, &p)
	})
	if err != nil || !found {
		return false, err
	}
	if _, err := n.cfg.Hub.Submit(ctx, p.JWS); err != nil {
		var apiErr *exchange.APIError
		if errors.As(err, &apiErr) && apiErr.Code == "clock_skew" {
			// As for colour batches: sign the same doses again at the
			// clock as it is now.
			if derr := n.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(kVaxPending)) }); derr != nil {
				return false, derr
			}
		}
		return false, fmt.Errorf("submit vaccination envelope of %d doses: %w", len(p.Keys), err)
	}
	err = n.db.Update(func(txn *badger.Txn) error {
		for _, k := range p.Keys {
			if err := txn.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return txn.Delete([]byte(kVaxPending))
	})
	if err != nil {
		return false, fmt.Errorf("record acknowledgement of a vaccination envelope: %w", err)
	}
	n.metrics.vaxForwarded.Add(uint64(len(p.Keys)))
	n.log.Debug("vaccination envelope published", "doses", len(p.Keys))
	return true, nil
}

// applyVax folds a vaccination envelope from the log: doses about this
// node's residents are queued for vaxLoop, doses about others are kept for
// a later registration. The subjects' locks are held until the follower's
// transaction holding them is committed, so that a registration either sees
// the kept doses or is seen as a resident here.
func (n *Node) applyVax(w *followTxn, env *exchange.Envelope) error {
	v, err := exchange.DecodeVax(env)
	if err != nil {
		return err
	}
	subs := make([]hcx.Subject, len(v.Doses))
	for i := range v.Doses {
		subs[i] = v.Doses[i].Sub
	}
	unlock := n.locks.ofAll(subs)
	defer unlock()
	queued := false
	for i := range v.Doses {
		d := &v.Doses[i]
		val, err := jsonMarshal(d)
		if err != nil {
			return stored(err)
		}
		tail := string(d.Sub) + "/" + string(v.Iss) + "/" + d.ID
		_, err = w.txn.Get([]byte(pResident + string(d.Sub)))
		switch {
		case err == nil:
			if err := w.set([]byte(pVaxIn+tail), val); err != nil {
				return stored(err)
			}
			queued = true
			continue
		case !errors.Is(err, badger.ErrKeyNotFound):
			return stored(err)
		}
		if countPrefix(w.txn, pForeignVax+string(d.Sub)+"/") >= MaxForeignDosesPerSubject {
			n.metrics.vaxDropped.Add(1)
			continue
		}
		if err := w.setTTL([]byte(pForeignVax+tail), val, RecordRetention); err != nil {
			return stored(err)
		}
	}
	// Commit now, under the locks (the follow position is written with the
	// page: re-applying these keys is harmless).
	if err := w.commit(); err != nil {
		return stored(err)
	}
	if queued {
		select {
		case n.vaxKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// vaxLoop records the queued doses from the hub in the residents'
// histories, as the node's own background work.
func (n *Node) vaxLoop(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		for {
			done, err := n.recordQueuedDoses(ctx, 100)
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("recording doses from other provinces failed; will retry", "err", err)
				}
				break
			}
			if done {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.vaxKick:
		case <-tick.C:
		}
	}
}

type queuedDose struct {
	key  []byte
	sub  hcx.Subject
	iss  hcx.ProvinceCode
	dose exchange.VaxDose
}

// recordQueuedDoses records up to limit queued doses, each in its
// resident's history, re-deciding them. It reports whether the queue is
// empty.
func (n *Node) recordQueuedDoses(ctx context.Context, limit int) (bool, error) {
	var q []queuedDose
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pVaxIn), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(q) < limit; it.Next() {
			k := it.Item().KeyCopy(nil)
			parts := strings.SplitN(string(k[len(pVaxIn):]), "/", 3)
			if len(parts) != 3 {
				continue
			}
			qd := queuedDose{key: k, sub: hcx.Subject(parts[0]), iss: hcx.ProvinceCode(parts[1])}
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &qd.dose) }); err != nil {
				return err
			}
			q = append(q, qd)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for i := range q {
		if err := n.recordForeignDose(ctx, &q[i]); err != nil {
			return false, err
		}
	}
	return len(q) < limit, nil
}

// recordForeignDose records one dose from the hub in its resident's
// history and re-decides them: a background write named "vax". A dose
// recorded before (its province-qualified record id) is dropped from the
// queue only.
func (n *Node) recordForeignDose(ctx context.Context, qd *queuedDose) error {
	release, err := n.admitBackground(ctx)
	if err != nil {
		return err
	}
	defer release()
	mu := n.locks.of(qd.sub)
	mu.Lock()
	defer mu.Unlock()
	now := n.cfg.Now().UTC()
	rules := n.rules.Load()
	ev := vaccinationOf(qd.iss, &qd.dose)
	rid := foreignRecordKey(qd.iss, qd.dose.ID)
	var rec residentRecord
	var st colourState
	var h *history
	var found, dup bool
	err = n.db.View(func(txn *badger.Txn) error {
		if found, err = getJSON(txn, pResident+string(qd.sub), &rec); err != nil || !found {
			return err
		}
		if _, err := txn.Get([]byte(rid)); err == nil {
			dup = true
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if h, err = loadHistory(txn, qd.sub); err != nil {
			return err
		}
		_, err = getJSON(txn, pState+string(qd.sub), &st)
		return err
	})
	if err != nil {
		return err
	}
	w := &write{system: "vax"}
	w.del(qd.key)
	attested := false
	if found && !dup {
		h.add(ev)
		h.expire(now)
		hb, err := h.MarshalBinary()
		if err != nil {
			return err
		}
		w.set(histKey(qd.sub), hb)
		w.setTTL(rid, recordValue(qd.sub, ev), RecordRetention)
		n.indexEvent(w, qd.sub, ev)
		if attested, err = n.decide(w, qd.sub, &rec, &st, h.facts(), rules, now); err != nil {
			return err
		}
	}
	if err := n.write(w); err != nil {
		return err
	}
	if found && !dup {
		n.metrics.vaxReceived.Add(1)
	}
	if attested {
		n.pokePublisher()
	}
	return nil
}

// adoptForeignDoses adds to w, for a resident being registered (rec, whose
// history is empty), the doses other provinces reported about them before
// they registered, and the decision they make. The caller holds the
// resident's lock.
func (n *Node) adoptForeignDoses(w *write, rec *residentRecord, now time.Time) error {
	sub := rec.Sub
	h := &history{}
	var keys [][]byte
	err := n.db.View(func(txn *badger.Txn) error {
		prefix := []byte(pForeignVax + string(sub) + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			rest := string(k[len(prefix):])
			iss, _, ok := strings.Cut(rest, "/")
			if !ok {
				continue
			}
			var d exchange.VaxDose
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &d) }); err != nil {
				return err
			}
			ev := vaccinationOf(hcx.ProvinceCode(iss), &d)
			h.add(ev)
			w.setTTL(foreignRecordKey(hcx.ProvinceCode(iss), d.ID), recordValue(sub, ev), RecordRetention)
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	for _, k := range keys {
		w.del(k)
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		return err
	}
	w.set(histKey(sub), hb)
	var st colourState
	_, err = n.decide(w, sub, rec, &st, h.facts(), n.rules.Load(), now)
	return err
}

// VaccinationRecord is one dose as the details route shows it.
type VaccinationRecord struct {
	Dose        int              `json:"dose"`
	CourseDoses int              `json:"course_doses"`
	Product     string           `json:"product,omitempty"`
	At          time.Time        `json:"at"`
	Province    hcx.ProvinceCode `json:"province,omitempty"` // where it was given
	ID          string           `json:"id,omitempty"`
}

// Vaccinations are a resident's recorded doses and their mark.
type Vaccinations struct {
	Vaccinated bool                `json:"vaccinated"`
	Doses      []VaccinationRecord `json:"doses"`
}

// Vaccinations answers a resident's doses, oldest first, and the
// vaccination mark. Who may read them is the API's to decide (the resident,
// their province's operators, the auditor; a guardian sees the mark only).
func (n *Node) Vaccinations(ctx context.Context, sub hcx.Subject) (*Vaccinations, error) {
	if auth.FromContext(ctx) == nil {
		return nil, ErrNoActor
	}
	r, err := n.Resident(ctx, sub) // ErrUnknownResident
	if err != nil {
		return nil, err
	}
	var h *history
	err = n.db.View(func(txn *badger.Txn) error {
		var err error
		h, err = loadHistory(txn, sub)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &Vaccinations{Vaccinated: r.Status.Vaccinated, Doses: []VaccinationRecord{}}
	for _, v := range h.Vaccinations {
		p := v.Province
		if p == "" {
			p = n.cfg.Province
		}
		out.Doses = append(out.Doses, VaccinationRecord{Dose: v.Dose, CourseDoses: v.CourseDoses, Product: v.Product, At: v.At, Province: p, ID: v.ID})
	}
	return out, nil
}
