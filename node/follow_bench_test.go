package node_test

import (
	"testing"
	"time"

	"github.com/hcxfed/hcx"
)

// BenchmarkFollowerApplyVsHubCommit measures, in the same run, the rate at
// which a one-member hub commits colour batches of 1000 attestations
// submitted one after another (as one province's publisher does) and the
// rate at which a node following that hub over HTTP, with the checkpoint
// check, applies them into its foreign cache. b.N is the number of batches.
// Reported: hub_att/s, follower_att/s and follower/hub (the ratio).
//
//	go test ./node -run '^$' -bench FollowerApplyVsHubCommit -benchtime 20x
func BenchmarkFollowerApplyVsHubCommit(b *testing.B) {
	const per = 1000
	f := newFed(b, 1)
	hub := startHub(b, f, 0, 1)
	batches := make([]string, b.N)
	for i := range batches {
		batches[i] = f.batch(b, uint64(i+1), i*per, per, hcx.Red)
	}
	b.ResetTimer()
	start := time.Now()
	submit(b, f, hub.URLs()[0], batches...)
	hubTime := time.Since(start)

	start = time.Now()
	n, _ := runNode(b, f, b.TempDir(), hub.URLs()...)
	want := uint64(b.N + 1)
	for n.Applied() < want {
		time.Sleep(time.Millisecond)
	}
	followTime := time.Since(start)
	b.StopTimer()

	atts := float64(b.N * per)
	hubRate, followRate := atts/hubTime.Seconds(), atts/followTime.Seconds()
	b.ReportMetric(hubRate, "hub_att/s")
	b.ReportMetric(followRate, "follower_att/s")
	b.ReportMetric(followRate/hubRate, "follower/hub")
	b.ReportMetric(0, "ns/op")
	if err := n.Ready(); err != nil {
		b.Fatalf("follower not ready after the run: %v", err)
	}
}
