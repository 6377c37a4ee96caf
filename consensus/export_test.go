package consensus

// partition cuts or heals this member's Raft network (fault tests).
func (h *Hub) partition(on bool) { h.sl.partition(on) }
