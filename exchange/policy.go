package exchange

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/certs"
	"github.com/hcxfed/hcx/policy"
)

// MaxRulesBytes bounds a rule file, in a policy publication and on disk.
const MaxRulesBytes = 256 << 10

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

// policyHash is the policy version's hash: the first 16 bytes of SM3
// (PROTOCOL.md §3, pol), as policy.WithHash expects.
func policyHash(b []byte) []byte {
	sum := certs.SM3(b)
	return sum[:]
}

// ParseRules loads a rule file from its bytes with the federation's policy
// version (hex of the first 16 bytes of SM3 of the canonical rule set): the
// one place nodes and the hub compute it.
func ParseRules(name string, src []byte) (*policy.RuleSet, error) {
	if len(src) > MaxRulesBytes {
		return nil, hcx.Invalidf("rules", "the rule file is %d bytes, at most %d", len(src), MaxRulesBytes)
	}
	return policy.Parse(name, src, policy.WithHash(policyHash))
}

// LoadRules reads and loads a rule file (see ParseRules).
func LoadRules(path string) (*policy.RuleSet, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return ParseRules(path, src)
}

// Validate checks a policy publication's content, naming the first wrong
// field: the rules are standard base64 of a rule file that loads for the
// issuing province, and pol is exactly the version computed from them.
func (p *PolicyPublication) Validate() error {
	if p.Typ != TypPolicy {
		return hcx.Invalidf("typ", "policy typ is %q, want %q", p.Typ, TypPolicy)
	}
	if err := p.Iss.Validate(); err != nil {
		return inField("iss", err)
	}
	if len(p.Pol) != 32 || hex.EncodeToString(mustHex(p.Pol)) != p.Pol {
		return hcx.Invalidf("pol", "policy version must be 32 lowercase hex characters, got %q", p.Pol)
	}
	if base64.StdEncoding.DecodedLen(len(p.Rules)) > MaxRulesBytes {
		return hcx.Invalidf("rules", "the rule file is over %d bytes", MaxRulesBytes)
	}
	src, err := base64.StdEncoding.Strict().DecodeString(p.Rules)
	if err != nil {
		return hcx.Invalidf("rules", "rules must be standard base64 of the rule file: %v", err)
	}
	rs, err := ParseRules("rules of "+string(p.Iss), src)
	if err != nil {
		return hcx.Invalidf("rules", "the rule file does not load: %v", err)
	}
	if rs.Province() != p.Iss {
		return hcx.Invalidf("rules", "the rule file is for province %s, the publication is by %s", rs.Province(), p.Iss)
	}
	if rs.Version() != p.Pol {
		return hcx.Invalidf("pol", "pol is %s but the rules' version is %s", p.Pol, rs.Version())
	}
	return nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// SealPolicy validates and signs a policy publication.
func SealPolicy(s *certs.Signer, p *PolicyPublication) (string, error) {
	p.Typ = TypPolicy
	if err := p.Validate(); err != nil {
		return "", err
	}
	return seal(s, TypPolicy, p)
}

// DecodePolicy reads the policy publication in a verified envelope and checks
// its content.
func DecodePolicy(env *Envelope) (*PolicyPublication, error) {
	return decodeValid[PolicyPublication](env, TypPolicy)
}
