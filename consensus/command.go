package consensus

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Raft log commands. The first byte of a log entry's data says which; the
// rest is the command's body.
const (
	cmdEnvelope   byte = 1 // body: the compact JWS, the leaf bytes (unstamped: logs written before commit times)
	cmdCheckpoint byte = 2 // body: a signed checkpoint note
	cmdMember     byte = 3 // body: JSON member (id, raft and API address)
	cmdForget     byte = 4 // body: member id whose metadata is dropped
	cmdEnvelopeAt byte = 5 // body: the proposer's clock (8 bytes, big-endian Unix seconds) || the compact JWS
	cmdCosign     byte = 6 // body: the proposer's clock (8) || checkpoint size (8) || witness cosignature lines, each ending in "\n"
)

// encodeEnvelope is the command proposing an envelope, stamped with the
// proposing member's clock: the FSM derives the leaf's commit time from the
// stamp, never from a clock of its own.
func encodeEnvelope(now time.Time, compact string) []byte {
	out := make([]byte, 1+8+len(compact))
	out[0] = cmdEnvelopeAt
	binary.BigEndian.PutUint64(out[1:9], uint64(now.Unix()))
	copy(out[9:], compact)
	return out
}

// envelopeOf reads an envelope command: the leaf bytes and, for a stamped
// command, the proposer's clock in Unix seconds (stamped false for the
// legacy, unstamped kind). ok is false for other commands.
func envelopeOf(data []byte) (raw []byte, stamp int64, stamped, ok bool) {
	if len(data) == 0 {
		return nil, 0, false, false
	}
	switch data[0] {
	case cmdEnvelope:
		return data[1:], 0, false, true
	case cmdEnvelopeAt:
		if len(data) < 9 {
			return nil, 0, true, true // refused by applyEnvelope as malformed
		}
		return data[9:], int64(binary.BigEndian.Uint64(data[1:9])), true, true
	}
	return nil, 0, false, false
}

// Member is one hub member as the cluster knows it.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	API      string `json:"api"`
	// Suffrage is "voter" or "nonvoter" (from Raft's configuration).
	Suffrage string `json:"suffrage,omitempty"`
}

func encodeCmd(kind byte, body []byte) []byte {
	out := make([]byte, 1+len(body))
	out[0] = kind
	copy(out[1:], body)
	return out
}

func encodeMember(m Member) []byte {
	b, _ := json.Marshal(Member{ID: m.ID, RaftAddr: m.RaftAddr, API: m.API})
	return encodeCmd(cmdMember, b)
}

// applyResult is what the FSM answers for one command. Err, when set, is a
// deterministic refusal: every member refused the same command the same way
// and nothing was appended.
type applyResult struct {
	Index    uint64
	LeafHash []byte
	Dup      bool
	Err      error
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func be8(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

func getBE8(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("stored integer has %d bytes, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
