package exchange

import (
	"encoding/json"
	"fmt"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
)

// PolicyPublication announces the rule set a province decides colours with
// (PROTOCOL.md §3): its version and the rule file itself, so that anyone can
// check which rules decided an attestation.
type PolicyPublication struct {
	Typ   string           `json:"typ"`
	Iss   hcx.ProvinceCode `json:"iss"`
	At    int64            `json:"at"`
	Pol   string           `json:"pol"`
	Rules string           `json:"rules"` // standard base64 of the rule file
}

// SealPolicy signs a policy publication.
func SealPolicy(s *certs.Signer, p *PolicyPublication) (string, error) {
	p.Typ = TypPolicy
	if err := p.Iss.Validate(); err != nil {
		return "", err
	}
	if len(p.Pol) != 32 {
		return "", hcx.Invalidf("pol", "policy version must be 32 hex characters, got %d", len(p.Pol))
	}
	return seal(s, TypPolicy, p)
}

// DecodePolicy reads the policy publication in a verified envelope.
func DecodePolicy(env *Envelope) (*PolicyPublication, error) {
	if env.Typ != TypPolicy {
		return nil, fmt.Errorf("envelope is %s, not a policy publication", env.Typ)
	}
	var p PolicyPublication
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return nil, fmt.Errorf("%w: policy publication: %v", certs.ErrMalformed, err)
	}
	return &p, nil
}
