package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nextImage is the "new version" of the rolling upgrade: the image of
// `make image` with one more label, built here from a Dockerfile on stdin
// (no context, nothing pulled). The binary is the same; what is exercised
// is replacing every member's container, one at a time, under load.
const nextImage = "hcx:next"

func buildNext(t *testing.T) {
	cmdline := "printf 'FROM hcx:latest\\nLABEL org.hcxfed.e2e.upgrade=next\\n' | DOCKER_BUILDKIT=0 docker build -q -t " + nextImage + " -"
	if out, err := exec(2*time.Minute, "sh", "-c", cmdline); err != nil {
		t.Fatalf("build %s: %v\n%s", nextImage, err, out)
	}
}

// upgraded writes a compose override giving the services the next image.
func upgraded(t *testing.T, dir string, services []string) string {
	s := map[string]any{}
	for _, name := range services {
		s[name] = map[string]any{"image": nextImage}
	}
	return writeCompose(t, filepath.Join(dir, "docker-compose.next.yml"), map[string]any{"version": "2.4", "services": s})
}

// TestComposeRollingUpgrade replaces the hub members one by one with
// containers of a new image (docker-compose up -d --no-deps, which stops,
// removes and recreates the container on its volume), followers first and
// the leader last, while the load runs: no write may fail beyond its
// retries and nothing acknowledged may be lost.
func TestComposeRollingUpgrade(t *testing.T) {
	c, f, _ := startCompose(t)
	buildNext(t)
	l := newLoad(f)
	order := []string{}
	leader := c.leader()
	for _, h := range hubs {
		if h != leader {
			order = append(order, h)
		}
	}
	order = append(order, leader)
	dir := t.TempDir()
	l.begin()
	time.Sleep(2 * time.Second)
	var done []string
	for _, h := range order {
		ipBefore := strings.TrimSpace(c.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container(h)))
		done = append(done, h)
		up := &compose{t: t, files: append(append([]string(nil), c.files...), upgraded(t, dir, done)), client: c.client}
		begin := time.Now()
		up.compose("up", "-d", "--no-deps", h)
		c.waitReady(2*time.Minute, allServices()...)
		c.waitHubConsistent(time.Minute)
		ipAfter := strings.TrimSpace(c.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container(h)))
		img := strings.TrimSpace(c.docker("inspect", "-f", "{{.Config.Image}}", container(h)))
		if img != nextImage {
			t.Errorf("%s runs %s after its upgrade, want %s", h, img, nextImage)
		}
		t.Logf("%s replaced by a %s container in %v (address %s → %s)", h, img, time.Since(begin).Round(10*time.Millisecond), ipBefore, ipAfter)
		time.Sleep(2 * time.Second)
	}
	time.Sleep(2 * time.Second)
	l.end()
	res := l.check("rolling upgrade", convergeLimit)
	if res.unknown > 0 {
		t.Errorf("rolling upgrade: %d lab results failed beyond %v of retries", res.unknown, writeRetry)
	}
	if l.views == 0 {
		t.Errorf("no node served its view of the hub log (bundle header): %v", l.noView)
	}
	t.Logf("rolling upgrade: %+v; verifications %v; node views checked against the hub: %d, not served: %v", res, l.verified, l.views, l.noView)
}
