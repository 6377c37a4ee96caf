package policy

// RiskAt is the highest risk level in force for a stay's division at the
// stay's time among areas: "high", "medium" or "" — what the rules' travel
// variables read, for showing a stay as the rules see it (the cities of a
// resident's code answer).
func RiskAt(areas []RiskArea, t TravelRecord) string { return riskAt(areas, t) }
