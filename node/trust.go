package node

import "github.com/hcxfed/hcx/certs"

// Trust is the node's trust store: the national root and what the trust
// lists in the hub log added and revoked. It changes in place as lists
// arrive. The node's hub client checks the hub's TLS server certificate
// against its revocations (certs.ClientTLSFrom).
func (n *Node) Trust() *certs.TrustStore { return n.trust }
