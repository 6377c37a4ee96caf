package node

import (
	"encoding/hex"
	"errors"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/exchange"
)

// LogStatus is the node's view of the hub's log, as the auditor's page shows
// it (issue 16): how far the node applied the log, the newest checkpoint it
// verified against its tree, the newest one with the witness cosignatures
// it requires (each cosignature by witness name and time, and whether it
// verifies under a witness key the node trusts now), and whether the node is
// ready or why not (a fork names the member).
type LogStatus struct {
	// Size is the number of log entries the node applied.
	Size uint64 `json:"log_size"`
	// Checkpoint is the newest hub checkpoint verified against the node's
	// tree; nil before the first.
	Checkpoint *CheckpointView `json:"checkpoint,omitempty"`
	// Witnessed is the newest checkpoint with Cosignatures witness
	// cosignatures; nil when none is required or none is held yet.
	Witnessed *CheckpointView `json:"witnessed,omitempty"`
	// Cosignatures is how many witness cosignatures the node requires (k).
	Cosignatures int `json:"cosignatures_required"`
	// Ready is "ready", or the code of Ready's refusal (no_trust_list,
	// rules_not_loaded, unwitnessed, log_fork, ...).
	Ready string `json:"ready"`
	// ReadyMessage says why the node is not ready; empty when it is.
	ReadyMessage string `json:"ready_message,omitempty"`
	// Fork is set when the node stopped following a member that served a
	// log contradicting its own.
	Fork *ForkView `json:"fork,omitempty"`
}

// CheckpointView is a checkpoint note as the auditor reads it.
type CheckpointView struct {
	Size uint64    `json:"size"`
	Time time.Time `json:"time"`
	// Root is the tree's root hash, hex.
	Root         string            `json:"root"`
	Cosignatures []CosignatureView `json:"cosignatures"`
	Note         string            `json:"note"`
}

// CosignatureView is one witness line of a checkpoint.
type CosignatureView struct {
	Witness string    `json:"witness"`
	Time    time.Time `json:"time"`
	// Verified: the line verifies under the key of a witness the node
	// trusts now (a line by a witness the node does not know is shown, not
	// counted).
	Verified bool `json:"verified"`
}

// ForkView names where the hub's log forked.
type ForkView struct {
	Member string `json:"member"`
	Size   uint64 `json:"size"`
	Reason string `json:"reason"`
}

// LogStatus reports the node's view of the hub's log.
func (n *Node) LogStatus() LogStatus {
	n.treeMu.Lock()
	t := n.tree
	n.treeMu.Unlock()
	now := n.cfg.Now()
	st := LogStatus{Size: t.rng.End(), Cosignatures: n.cfg.Cosignatures, Ready: "ready"}
	ws := n.Witnesses(now)
	view := func(tc *treeCheckpoint) *CheckpointView {
		if tc == nil {
			return nil
		}
		cp, err := exchange.ParseCheckpoint([]byte(tc.Note))
		if err != nil {
			return nil // verified when stored: cannot happen
		}
		valid, _ := cp.VerifyCosignatures(ws, now)
		v := &CheckpointView{Size: cp.Size, Time: cp.Time, Root: hex.EncodeToString(cp.Root), Cosignatures: []CosignatureView{}, Note: tc.Note}
		for _, c := range cp.Cosigs {
			ok := false
			for _, name := range valid {
				ok = ok || name == c.Name
			}
			v.Cosignatures = append(v.Cosignatures, CosignatureView{Witness: c.Name, Time: c.Time, Verified: ok})
		}
		return v
	}
	st.Checkpoint, st.Witnessed = view(t.cp), view(t.wcp)
	if err := n.Ready(); err != nil {
		st.Ready, st.ReadyMessage = "not_ready", err.Error()
		var fork *ForkError
		var he *hcx.Error
		switch {
		case errors.As(err, &fork):
			st.Ready = CodeLogFork
			st.Fork = &ForkView{Member: fork.Member, Size: fork.Size, Reason: fork.Reason}
		case errors.As(err, &he):
			st.Ready = he.Code
		}
	}
	return st
}
