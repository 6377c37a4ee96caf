package main

import (
	"flag"
	"fmt"
	"strings"
)

// witnessFlags are the k-of-n flags of `hcx node` and `hcx verify sync`:
// how many witnesses must have cosigned a checkpoint before it is trusted,
// and which witnesses count.
type witnessFlags struct {
	k    *int
	kids *string
}

func addWitnessFlags(fs *flag.FlagSet, who string) witnessFlags {
	return witnessFlags{
		k: fs.Int("cosignatures", 0, "require this many witness cosignatures (k) on the hub checkpoint "+who+" trusts; 0: none"),
		kids: fs.String("witnesses", "", "comma-separated trust-list kids of the witnesses that count towards --cosignatures "+
			"(default: every province and auditor certificate of the trust list)"),
	}
}

// parse checks the flags: k from 0 to 63 (a note carries at most 64
// signature lines, one of them the hub's), kids distinct, at least k.
func (w witnessFlags) parse() (int, []string, error) {
	k := *w.k
	if k < 0 || k > 63 {
		return 0, nil, fmt.Errorf("--cosignatures %d: want 0 to 63", k)
	}
	var kids []string
	if *w.kids != "" {
		for _, kid := range strings.Split(*w.kids, ",") {
			kid = strings.TrimSpace(kid)
			if kid == "" {
				return 0, nil, fmt.Errorf("--witnesses %q: an empty kid", *w.kids)
			}
			for _, seen := range kids {
				if seen == kid {
					return 0, nil, fmt.Errorf("--witnesses: %s is named twice", kid)
				}
			}
			kids = append(kids, kid)
		}
		if k > len(kids) {
			return 0, nil, fmt.Errorf("--cosignatures %d can never be met by the %d --witnesses named", k, len(kids))
		}
	}
	return k, kids, nil
}
