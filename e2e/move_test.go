package e2e

import (
	"strings"
	"testing"
	"time"
)

// moveTo stops the container, takes it off the network and puts it back at
// ip under its service name, then starts it: a member whose container
// comes back with another address (a recreated container, a rescheduled
// one), the known risk of members that record each other's addresses.
func moveTo(service, ip string) func(c *compose, ctr string) {
	return func(c *compose, ctr string) {
		c.docker("stop", "-t", "10", ctr)
		c.docker("network", "disconnect", project+"_hcx", ctr)
		c.docker("network", "connect", "--ip", ip, "--alias", service, project+"_hcx", ctr)
		c.docker("start", ctr)
	}
}

func address(c *compose, ctr string) string {
	return strings.TrimSpace(c.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", ctr))
}

// TestComposeMemberMovesAddress restarts a hub follower at another address
// under load: it must rejoin (one leader, equal sizes on all three) and
// lose nothing.
func TestComposeMemberMovesAddress(t *testing.T) {
	c, f, _ := startCompose(t)
	l := newLoad(f)
	service := "hub-1"
	if service == c.leader() {
		service = "hub-3"
	}
	ctr := container(service)
	before := address(c, ctr)
	l.begin()
	time.Sleep(2 * time.Second)
	l.redden()
	healed := time.Now()
	moveTo(service, movedIP)(c, ctr)
	if after := address(c, ctr); after != movedIP {
		t.Fatalf("%s is at %s after the move, want %s", service, after, movedIP)
	}
	c.waitReady(2*time.Minute, allServices()...)
	c.waitHubConsistent(time.Minute)
	t.Logf("%s moved %s → %s: recovered in %v", service, before, movedIP, time.Since(healed).Round(10*time.Millisecond))
	time.Sleep(time.Second)
	l.end()
	t.Logf("%+v", l.check("restart a hub follower at another address", convergeLimit))
}
