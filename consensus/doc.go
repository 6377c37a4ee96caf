// Package consensus is the national hub: a Raft cluster (hashicorp/raft, log
// and stable store in raft-boltdb) whose replicated state machine is a
// tamper-evident, append-only Merkle log kept in badger. Each leaf is the
// exact bytes of one signed envelope; the tree is RFC 6962 shaped over SM3;
// checkpoints are SM2-signed notes committed through Raft so every member
// serves the same bytes. Any member reads up to its applied index and
// forwards writes to the leader. DESIGN.md in this folder gives the reasons.
package consensus
