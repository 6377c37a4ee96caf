package main

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/hcxfed/hcx"
)

// The ports and directories every command defaults to, in one place, so that
// `hcx hub`, `hcx node` and `hcx dev idp` started with no address flags sit
// exactly where `hcx dev` puts the same member: an operator who moves from
// the dev federation to separate processes keeps the URLs they learned.
const (
	defaultHost     = "127.0.0.1"
	defaultPortBase = 8700 // hub-1's API; hub-N at base+N-1
	raftPortOffset  = 100  // hub-N's Raft at base+100+N-1
	idpPortOffset   = -10  // the dev identity provider
	defaultDataDir  = "hcx-data"
)

var (
	defaultHubHTTP = hubHTTPAddr(defaultHost, defaultPortBase, 0)
	defaultHubRaft = hubRaftAddr(defaultHost, defaultPortBase, 0)
	defaultIdPAddr = idpAddr(defaultHost, defaultPortBase)
)

// hubHTTPAddr is the API address of the i-th hub member (from 0).
func hubHTTPAddr(host string, base, i int) string { return fmt.Sprintf("%s:%d", host, base+i) }

// hubRaftAddr is the Raft address of the i-th hub member (from 0).
func hubRaftAddr(host string, base, i int) string {
	return fmt.Sprintf("%s:%d", host, base+raftPortOffset+i)
}

// idpAddr is the dev identity provider's address.
func idpAddr(host string, base int) string { return fmt.Sprintf("%s:%d", host, base+idpPortOffset) }

// nodeAddr is the API address of province p's node: the port base plus the
// first two digits of the province code (8744 for 440000), so that no two
// provinces collide and the port says which province answers.
func nodeAddr(host string, base int, p hcx.ProvinceCode) string {
	prefix, _ := strconv.Atoi(string(p)[:2])
	return fmt.Sprintf("%s:%d", host, base+prefix)
}

// hubDir and nodeDir are where hcx dev keeps a member's and a node's state
// under its directory, and what `hcx hub` and `hcx node` default to.
func hubDir(root, id string) string                  { return filepath.Join(root, "hub", id) }
func nodeDir(root string, p hcx.ProvinceCode) string { return filepath.Join(root, "nodes", string(p)) }

// nodeDefaults fills in `hcx node`'s -listen and -dir when they are left
// out: where hcx dev runs and keeps province p's node.
func nodeDefaults(p hcx.ProvinceCode, listen, dir string) (string, string) {
	if listen == "" {
		listen = nodeAddr(defaultHost, defaultPortBase, p)
	}
	if dir == "" {
		dir = nodeDir(defaultDataDir, p)
	}
	return listen, dir
}
