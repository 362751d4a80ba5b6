package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestBenchEmbedded runs `certless bench` with a small load on the embedded
// cluster: every request must get exactly one receipt, and the sampled
// receipts must verify. No timing is asserted.
func TestBenchEmbedded(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	g := &globals{dataDir: t.TempDir(), stdout: &out, stderr: &out}
	rep, err := runBench(ctx, g, benchOptions{requests: n, kafka: benchEmbedded, inFlight: 64, timeout: 30 * time.Second, verify: 20}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rep.print(&out)
	t.Log("\n" + out.String())
	if err := rep.err(); err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != "" || rep.Sent != n || rep.Receipts != n || rep.Lost() != 0 || rep.Conflicting != 0 {
		t.Fatalf("sent %d, receipts %d, lost %d, conflicting %d of %d (stopped: %q)", rep.Sent, rep.Receipts, rep.Lost(), rep.Conflicting, n, rep.Stopped)
	}
	if rep.Verified != 20 || len(rep.Latencies) != n {
		t.Fatalf("verified %d of 20 sampled receipts, %d latencies", rep.Verified, len(rep.Latencies))
	}
	total := 0
	for _, c := range rep.Decisions {
		total += c
	}
	if total != n || rep.Decisions["answered"] == 0 || rep.Decisions["denied"] == 0 || rep.Decisions["not_found"] == 0 {
		t.Fatalf("decision mix %v", rep.Decisions)
	}
	if !strings.Contains(out.String(), "lost 0") {
		t.Fatalf("summary does not say lost 0:\n%s", out.String())
	}
}

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--requests", "0"},
		{"bench", "--rate", "-1"},
		{"bench", "--in-flight", "-1"},
		{"bench", "--kafka", "127.0.0.1:9092", "--db", "x.db"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage {
			t.Errorf("certless %s: exit %d, want %d (%s)", strings.Join(args, " "), code, exitUsage, stderr)
		}
	}
}
