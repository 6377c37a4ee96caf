package exchange

import (
	"strings"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// Trail heads (PROTOCOL.md §3, 1.6; docs/decisions.md "Issue 13: the
// operator trail is append-only"). A province node keeps an operator audit
// trail, a hash chain of entries; a trail head is the chain's end, (seq,
// hash), signed by the province. The node logs its head to the hub every
// few minutes, and serves it signed with every page of its trail: an
// auditor who holds logged heads holds the province to the history they
// name, so an entry rewritten before a logged head, even with the chain
// recomputed, contradicts the province's own signature in the log.

// TrailZeroHash is the hash of the empty trail (and the prev of its first
// entry): 64 zeros.
const TrailZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditHead is a trail head envelope's payload.
type AuditHead struct {
	Typ string           `json:"typ"`
	Iss hcx.ProvinceCode `json:"iss"`
	At  int64            `json:"at"`
	// Seq is the trail's last entry (0 for an empty trail) and Hash the
	// lowercase hex SM3 of its canonical bytes (TrailZeroHash for none).
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Validate checks a trail head's content, naming the first wrong field.
func (h *AuditHead) Validate() error {
	if h.Typ != TypAuditHead {
		return hcx.Invalidf("typ", "trail head typ is %q, want %q", h.Typ, TypAuditHead)
	}
	if err := h.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if h.At <= 0 {
		return hcx.Invalidf("at", "at must be Unix seconds, got %d", h.At)
	}
	if len(h.Hash) != 64 || strings.Trim(h.Hash, "0123456789abcdef") != "" {
		return hcx.Invalidf("hash", "hash must be 64 lowercase hex digits (SM3), got %d characters", len(h.Hash))
	}
	if (h.Seq == 0) != (h.Hash == TrailZeroHash) {
		return hcx.Invalidf("hash", "hash is all zeros exactly for the empty trail (seq 0); seq %d", h.Seq)
	}
	return nil
}

// SealAuditHead validates and signs a trail head of the signer's province
// at at.
func SealAuditHead(s *certs.Signer, at int64, seq uint64, hash string) (string, error) {
	h := AuditHead{Typ: TypAuditHead, Iss: s.Province, At: at, Seq: seq, Hash: hash}
	if err := h.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypAuditHead, &h)
}

// DecodeAuditHead reads the trail head in a verified envelope and checks
// its content.
func DecodeAuditHead(env *Envelope) (*AuditHead, error) {
	return decodeValid[AuditHead](env, TypAuditHead)
}
