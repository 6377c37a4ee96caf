package exchange

import "slices"

// FilterWitnesses keeps the witnesses of ws whose kid is in kids, all of
// them when kids is empty: a verifier that requires k of n may name its n
// (`hcx node --witnesses`, `hcx verify sync --witnesses`).
func FilterWitnesses(ws []Witness, kids []string) []Witness {
	if len(kids) == 0 {
		return ws
	}
	return slices.DeleteFunc(ws, func(w Witness) bool { return !slices.Contains(kids, w.KID) })
}
