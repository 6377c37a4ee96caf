package hcx

import "testing"

func TestDivisionCity(t *testing.T) {
	for _, c := range []struct{ div, city, name string }{
		{"440106", "440100", "广州市"},
		{"510104", "510100", "成都市"},
		{"510100", "510100", "成都市"},
		{"110105", "110000", "北京市"},
		{"500101", "500000", "重庆市"},
		{"429004", "429004", "仙桃市"},
		{"440000", "440000", "广东省"},
	} {
		got := DivisionCode(c.div).City()
		if string(got) != c.city || got.Name() != c.name {
			t.Errorf("%s: city %s %q, want %s %q", c.div, got, got.Name(), c.city, c.name)
		}
	}
}
