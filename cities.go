package hcx

// City is the city-level division that contains d, for showing where a
// person has been ("two codes in one"): the prefecture (xxxx00) when
// GB/T 2260 lists one; for the municipalities, whose districts have no
// listed prefecture, the municipality (xx0000); for a county that no
// prefecture holds (省直辖县级行政区划, such as 429004 仙桃市), the county
// itself. A provincial code is its own city.
func (d DivisionCode) City() DivisionCode {
	s := string(d)
	if len(s) != 6 || !allDigits(s) || s[2:] == "0000" {
		return d
	}
	if p := DivisionCode(s[:4] + "00"); p.Name() != "" {
		return p
	}
	if s[2:4] == "90" {
		return d // a county directly under the province
	}
	if p := DivisionCode(s[:2] + "0000"); p.Name() != "" {
		return p
	}
	return d
}
