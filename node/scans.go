package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/exchange"
)

// Venue scans (issue 11, item 2; docs/decisions.md "Issue 11: scans").
//
// A resident (or a guardian, for a dependant) scans a venue code posted at
// an entrance. The node verifies the code (a venue code of any province),
// records the scan durably and answers the unveiled code: the venue's name
// and division, the time of entry, the resident's colour and vaccination
// mark. A scan is trajectory data: it holds the subject, the venue and the
// time, nothing else, and it expires TrajectoryRetention (60 days) after
// the entry, in badger (setExpires), under two keys:
//
//	scan/<iss>/<vid>/<unix nanos, 19 digits>/<sub>   by venue and time: one
//	    venue-window is one range read (exposures, item 3)
//	scanr/<sub>/<unix nanos, 19 digits>/<iss>/<vid>  by resident: their own
//	    trajectory list, most recent first
//
// <vid> is path-escaped (a venue id is printable ASCII and may hold "/").
// A scan is not a colour event: it is not part of the history and needs no
// re-decision, so it takes no resident lock and one small write.
const (
	pScanVenue    = "scan/"
	pScanResident = "scanr/"
)

// Bounds of scans.
const (
	// MaxScanLag is how old an offline scan's time may be: a phone that
	// scanned without a connection sends the scan within minutes; an older
	// one (a scan replayed from yesterday) is refused.
	MaxScanLag = 5 * time.Minute
	// MaxScansListed bounds one page of a resident's trajectory list.
	MaxScansListed = 500
)

// ActionScanPost is the trail's name for a venue scan.
const ActionScanPost = "scan.post"

// NotVenueCodeText is Tianjin's answer to a string that is not a valid venue
// code, in each of hcx.Langs.
var NotVenueCodeText = hcx.Texts{
	"不是有效的场所码，请扫描重点场所张贴的二维码图片",
	"Not a valid venue code, please scan the QR code posted at the venue",
	"有効な場所コードではありません。施設に掲示されているQRコードをスキャンしてください",
	"유효한 장소 코드가 아닙니다. 장소에 게시된 QR 코드를 스캔하세요",
}

// VenueRetiredText is the answer to a code of a venue its province retired.
var VenueRetiredText = hcx.Texts{
	"该场所码已停用，请扫描场所现行张贴的二维码图片",
	"This venue code has been retired, please scan the QR code currently posted at the venue",
	"この場所コードは廃止されました。現在掲示されているQRコードをスキャンしてください",
	"이 장소 코드는 폐지되었습니다. 현재 게시된 QR 코드를 스캔하세요",
}

// ErrVenueRetired is a scan of a retired venue of this province.
var ErrVenueRetired = &hcx.Error{Class: hcx.EUnprocessable, Code: "venue_retired",
	Message: VenueRetiredText[0] + " / " + VenueRetiredText[1]}

// ScanRequest is what a resident's phone posts: the scanned text and, for a
// scan made offline, when it was made (at most MaxScanLag ago).
type ScanRequest struct {
	Code string     `json:"code"`
	At   *time.Time `json:"at,omitempty"`
}

// ScanVenue is a venue as its code names it.
type ScanVenue struct {
	Iss     hcx.ProvinceCode `json:"iss"`
	ID      string           `json:"vid"`
	Name    string           `json:"name"`
	Div     hcx.DivisionCode `json:"div"`
	DivName string           `json:"div_name,omitempty"`
	Cat     string           `json:"cat,omitempty"`
}

// ScanResult is the unveiled code: the venue, the time of entry, and the
// resident's masked name, colour and vaccination mark.
type ScanResult struct {
	Venue      ScanVenue   `json:"venue"`
	EnteredAt  time.Time   `json:"entered_at"`
	Subject    hcx.Subject `json:"subject"`
	Name       string      `json:"name"`
	Colour     hcx.Colour  `json:"colour"`
	Vaccinated bool        `json:"vaccinated"`
}

// ScanRecord is one scan of a resident's trajectory list.
type ScanRecord struct {
	Venue     ScanVenue `json:"venue"`
	EnteredAt time.Time `json:"entered_at"`
}

// scanValue is the value under a resident's scan key: the venue as its code
// named it (no identity; the key holds the subject).
type scanValue struct {
	Name string           `json:"n"`
	Div  hcx.DivisionCode `json:"d"`
	Cat  string           `json:"c,omitempty"`
}

func scanTime(at time.Time) string { return fmt.Sprintf("%019d", at.UnixNano()) }

func scanVenuePrefix(iss hcx.ProvinceCode, vid string) string {
	return pScanVenue + string(iss) + "/" + url.PathEscape(vid) + "/"
}

func scanVenueKey(iss hcx.ProvinceCode, vid string, at time.Time, sub hcx.Subject) string {
	return scanVenuePrefix(iss, vid) + scanTime(at) + "/" + string(sub)
}

func scanResidentKey(sub hcx.Subject, at time.Time, iss hcx.ProvinceCode, vid string) string {
	return pScanResident + string(sub) + "/" + scanTime(at) + "/" + string(iss) + "/" + url.PathEscape(vid)
}

// venueRetired reports whether a venue of this province may not be scanned:
// retired, failed, under review or unknown here (venues.go, VenueRetired) —
// a code of this province's that its node never passed is not a venue. Of
// other provinces' venues the node knows nothing and says no. A store error
// refuses the scan (logged): an unreadable venue is not a valid one.
// retiredVenue, when a test sets it, answers instead.
func (n *Node) venueRetired(iss hcx.ProvinceCode, vid string) bool {
	if iss != n.cfg.Province {
		return false
	}
	if n.retiredVenue != nil {
		return n.retiredVenue(iss, vid)
	}
	retired, err := n.VenueRetired(context.Background(), vid)
	if err != nil {
		n.log.Error("venue state unreadable; the scan is refused", "venue", vid, "err", err)
		return true
	}
	return retired
}

// scanAt is the time of entry: the node's clock, or an offline scan's time
// if it is at most MaxScanLag old and not ahead of the clock.
func scanAt(now time.Time, at *time.Time) (time.Time, error) {
	if at == nil || at.IsZero() {
		return now, nil
	}
	if at.After(now.Add(exchange.MaxCodeSkew)) {
		return time.Time{}, hcx.Invalidf("at", "scan time %s is in the future (the node's clock says %s)", at.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if at.Before(now.Add(-MaxScanLag)) {
		return time.Time{}, hcx.Invalidf("at", "scan time %s is more than %s ago: scan the venue code again at the entrance", at.UTC().Format(time.RFC3339), MaxScanLag)
	}
	return at.UTC(), nil
}

// Scan records a venue scan by (or for) resident sub, synced before it
// answers, and answers the unveiled code. A string that is not a valid
// venue code is exchange.ErrNotVenueCode (422); a retired venue of this
// province ErrVenueRetired; a wrong field 400. None of them writes.
func (n *Node) Scan(ctx context.Context, sub hcx.Subject, req *ScanRequest) (*ScanResult, error) {
	entry, err := callerEntry(ctx, ActionScanPost, sub)
	if err != nil {
		return nil, err
	}
	now := n.cfg.Now().UTC()
	at, err := scanAt(now, req.At)
	if err != nil {
		return nil, err
	}
	vc, err := n.venueCodes.verify(n.trust, req.Code, now)
	if err != nil {
		return nil, err
	}
	if n.venueRetired(vc.Iss, vc.VID) {
		return nil, ErrVenueRetired
	}
	// The answer is read before the write: a scan changes no colour.
	r, err := n.Resident(ctx, sub)
	if errors.Is(err, ErrUnknownResident) {
		return nil, notResidentHere(n.cfg.Province)
	}
	if err != nil {
		return nil, err
	}
	release, err := n.admit(ctx)
	if err != nil {
		return nil, err
	}
	w := &write{}
	// The entry names no venue: the trail is kept for good, trajectory
	// data 60 days.
	w.record(entry)
	n.addScan(w, sub, vc, at)
	err = n.write(w)
	release()
	if err != nil {
		return nil, err
	}
	n.metrics.scans.Add(1)
	return &ScanResult{Venue: venueOf(vc), EnteredAt: at, Subject: sub, Name: r.MaskedName,
		Colour: r.Status.Colour, Vaccinated: r.Status.Vaccinated}, nil
}

// venueCache remembers venue codes verified recently. A venue's code is
// printed at its entrance and scanned by everyone who enters, so the same
// text is verified thousands of times an hour; an SM2 verification is most
// of a scan's CPU. An entry is used for at most venueCacheFor, only under
// the trust list it was verified with (a new list, such as one revoking
// the key, empties the cache), and its key's revocation is checked again at
// every use. At most venueCacheSize entries; a full cache is emptied.
type venueCache struct {
	mu  sync.RWMutex
	ver uint64
	m   map[[32]byte]venueCached
}

type venueCached struct {
	claims *exchange.VenueClaims
	entry  *certs.Entry
	until  time.Time
}

const (
	venueCacheSize = 1 << 16
	venueCacheFor  = 10 * time.Minute
)

func (c *venueCache) verify(ts *certs.TrustStore, qr string, now time.Time) (*exchange.VenueClaims, error) {
	key := sha256.Sum256([]byte(strings.TrimSpace(qr)))
	ver := ts.Version()
	c.mu.RLock()
	hit, ok := c.m[key]
	ok = ok && c.ver == ver && now.Before(hit.until)
	c.mu.RUnlock()
	if ok && ts.CheckRevokedAt(hit.entry, now) == nil {
		return hit.claims, nil
	}
	claims, entry, err := exchange.VerifyVenueCode(ts, qr, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.ver != ver || len(c.m) >= venueCacheSize {
		c.ver, c.m = ver, nil
	}
	if c.m == nil {
		c.m = make(map[[32]byte]venueCached)
	}
	c.m[key] = venueCached{claims: claims, entry: entry, until: now.Add(venueCacheFor)}
	c.mu.Unlock()
	return claims, nil
}

func venueOf(vc *exchange.VenueClaims) ScanVenue {
	return ScanVenue{Iss: vc.Iss, ID: vc.VID, Name: vc.Name, Div: vc.Div, DivName: vc.Div.Name(), Cat: vc.Cat}
}

// addScan adds a scan's two keys to w, both expiring TrajectoryRetention
// after the entry.
func (n *Node) addScan(w *write, sub hcx.Subject, vc *exchange.VenueClaims, at time.Time) {
	v, _ := json.Marshal(scanValue{Name: vc.Name, Div: vc.Div, Cat: vc.Cat})
	exp := at.Add(TrajectoryRetention)
	w.setExpires(scanVenueKey(vc.Iss, vc.VID, at, sub), nil, exp)
	w.setExpires(scanResidentKey(sub, at, vc.Iss, vc.VID), v, exp)
}

// Scans lists resident sub's scans of the last TrajectoryRetention, most
// recent first, at most limit (1 to MaxScansListed).
func (n *Node) Scans(ctx context.Context, sub hcx.Subject, limit int) ([]ScanRecord, error) {
	if limit <= 0 || limit > MaxScansListed {
		return nil, hcx.Invalidf("limit", "limit is 1 to %d", MaxScansListed)
	}
	since := n.cfg.Now().Add(-TrajectoryRetention)
	prefix := []byte(pScanResident + string(sub) + "/")
	out := []ScanRecord{}
	err := n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(append(append([]byte{}, prefix...), 0xff)); it.Valid() && len(out) < limit; it.Next() {
			// scanr/<sub>/<nanos>/<iss>/<vid>
			parts := strings.SplitN(string(it.Item().Key()[len(prefix):]), "/", 3)
			if len(parts) != 3 {
				continue
			}
			nanos, err := strconv.ParseInt(parts[0], 10, 64)
			if err != nil {
				continue
			}
			at := time.Unix(0, nanos).UTC()
			if at.Before(since) {
				break // older ones follow
			}
			vid, err := url.PathUnescape(parts[2])
			if err != nil {
				continue
			}
			var sv scanValue
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &sv) }); err != nil {
				return fmt.Errorf("scan %s: %w", it.Item().Key(), err)
			}
			out = append(out, ScanRecord{EnteredAt: at, Venue: ScanVenue{Iss: hcx.ProvinceCode(parts[1]), ID: vid,
				Name: sv.Name, Div: sv.Div, DivName: sv.Div.Name(), Cat: sv.Cat}})
		}
		return nil
	})
	return out, err
}

// scannedAt returns up to limit residents who scanned venue (iss, vid) at or
// after from and before to, and within TrajectoryRetention of now: one
// range read of the venue index, for exposures (issue 11, item 3). A
// resident who scanned twice is listed once per scan.
func (n *Node) scannedAt(iss hcx.ProvinceCode, vid string, from, to, now time.Time, limit int) ([]hcx.Subject, error) {
	scans, _, err := n.venueScans(iss, vid, from, to, now, "", limit)
	subs := make([]hcx.Subject, len(scans))
	for i := range scans {
		subs[i] = scans[i].Sub
	}
	return subs, err
}

// venueScan is one scan as the venue index holds it.
type venueScan struct {
	Sub hcx.Subject
	At  time.Time
	key string // the key after the venue's prefix: a chunk's cursor
}

// venueScans is one chunk of the scans of venue (iss, vid) at or after from
// and before to (and within TrajectoryRetention of now), oldest first, each
// with its time: at most limit, starting after the key suffix after ("" for
// the first chunk). next is the suffix to pass for the following chunk, ""
// when the window has no more scans.
func (n *Node) venueScans(iss hcx.ProvinceCode, vid string, from, to, now time.Time, after string, limit int) (scans []venueScan, next string, err error) {
	from = maxTime(from, now.Add(-TrajectoryRetention))
	prefix := scanVenuePrefix(iss, vid)
	lo, hi := []byte(prefix+scanTime(from)), []byte(prefix+scanTime(to))
	if after != "" {
		if a := []byte(prefix + after + "\x00"); string(a) > string(lo) {
			lo = a
		}
	}
	err = n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Seek(lo); it.Valid(); it.Next() {
			k := it.Item().Key()
			if string(k) >= string(hi) {
				return nil
			}
			if len(scans) == limit {
				next = scans[len(scans)-1].key
				return nil
			}
			rest := k[len(prefix):] // <19 digits>/<sub>
			if len(rest) < 21 || rest[19] != '/' {
				continue
			}
			nanos, perr := strconv.ParseInt(string(rest[:19]), 10, 64)
			if perr != nil {
				continue
			}
			scans = append(scans, venueScan{Sub: hcx.Subject(rest[20:]), At: time.Unix(0, nanos).UTC(), key: string(rest)})
		}
		return nil
	})
	return scans, next, err
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
