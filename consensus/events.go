package consensus

import (
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// Leader and membership changes are logged at INFO by the member that sees
// them, in the member's own words: Raft's records say "entering leader
// state" on one member and nothing on the others, so an operator watching
// one member could see the term climb from 2 to 6 with nothing logged
// (issue 15).

// watchLeader logs every leader change this member sees, with the term,
// until the member closes: "leader lost" when it knows of no leader (an
// election is under way, or it lost contact), "leader changed" when it
// learns one, naming the leader before (through the election in between).
func (h *Hub) watchLeader(obs chan raft.Observation) {
	defer h.wg.Done()
	last, known := "", false
	for {
		select {
		case <-h.done:
			return
		case o := <-obs:
			lo, ok := o.Data.(raft.LeaderObservation)
			if !ok {
				continue
			}
			switch id := string(lo.LeaderID); {
			case id == "" && known:
				known = false
				h.log.Info("leader lost", "old", last, "term", h.raft.CurrentTerm())
			case id != "" && (!known || id != last):
				h.log.Info("leader changed", "old", last, "new", id, "term", h.raft.CurrentTerm())
				last, known = id, true
			}
		}
	}
}

// newLeaderObserver is the observer watchLeader reads. It never blocks
// Raft: with the buffer full an observation is dropped, and the next one
// still names the current leader.
func newLeaderObserver() (*raft.Observer, chan raft.Observation) {
	ch := make(chan raft.Observation, 16)
	return raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}), ch
}

// logConfigChange logs how configuration servers differs from the one this
// member saw last, once per change: members added, removed, promoted to
// voter or demoted. The first configuration a member sees is logged whole.
func (h *Hub) logConfigChange(servers []raft.Server) {
	h.confMu.Lock()
	defer h.confMu.Unlock()
	now := make(map[raft.ServerID]raft.Server, len(servers))
	for _, s := range servers {
		now[s.ID] = s
	}
	if h.conf == nil {
		if len(servers) > 0 {
			h.conf = now
			h.log.Info("hub configuration", "voters", idsOf(servers, raft.Voter), "nonvoters", idsOf(servers, raft.Nonvoter))
		}
		return
	}
	for _, s := range servers {
		switch was, ok := h.conf[s.ID]; {
		case !ok:
			h.log.Info("member added", "id", string(s.ID), "raft", string(s.Address), "suffrage", suffrage(s.Suffrage))
		case was.Suffrage != s.Suffrage:
			h.log.Info("member suffrage changed", "id", string(s.ID), "old", suffrage(was.Suffrage), "new", suffrage(s.Suffrage))
		case was.Address != s.Address:
			h.log.Info("member address changed", "id", string(s.ID), "old", string(was.Address), "new", string(s.Address))
		}
	}
	for id, was := range h.conf {
		if _, ok := now[id]; !ok {
			h.log.Info("member removed", "id", string(id), "raft", string(was.Address), "suffrage", suffrage(was.Suffrage))
		}
	}
	h.conf = now
}

func idsOf(servers []raft.Server, s raft.ServerSuffrage) string {
	var ids []string
	for _, srv := range servers {
		if srv.Suffrage == s {
			ids = append(ids, string(srv.ID))
		}
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	default:
		return "staging"
	}
}
