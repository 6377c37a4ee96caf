package e2e

import (
	"strings"
)

// moveTo stops the container, takes it off the network and puts it back at
// ip under its service name, then starts it: a member whose container
// comes back with another address (a recreated container, a rescheduled
// one), the known risk of members that record each other's addresses.
func moveTo(ip string) func(c *compose, ctr string) {
	return func(c *compose, ctr string) {
		service := strings.TrimSuffix(strings.TrimPrefix(ctr, project+"_"), "_1")
		before := address(c, ctr)
		c.docker("stop", "-t", "10", ctr)
		c.docker("network", "disconnect", project+"_hcx", ctr)
		c.docker("network", "connect", "--ip", ip, "--alias", service, project+"_hcx", ctr)
		c.docker("start", ctr)
		if after := address(c, ctr); after != ip {
			c.t.Fatalf("%s is at %s after the move from %s, want %s", service, after, before, ip)
		}
	}
}

func address(c *compose, ctr string) string {
	return strings.TrimSpace(c.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", ctr))
}
