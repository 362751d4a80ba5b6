package main

import (
	"bytes"
	"context"
	jsonpkg "encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/report"
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
	json := filepath.Join(t.TempDir(), "bench.json")
	rep, err := runBench(ctx, g, benchOptions{requests: n, mode: benchEmbedded, inFlight: 64, timeout: 30 * time.Second, verify: 20,
		ceiling: true, halfLoad: true, persons: 1}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rep.print(&out)
	t.Log("\n" + out.String())
	if err := rep.err(); err != nil {
		t.Fatal(err)
	}
	p := rep.Pipeline
	if rep.Stopped != "" || p.Sent != n || p.Answered != n || p.Lost() != 0 || p.Conflicting != 0 {
		t.Fatalf("sent %d, receipts %d, lost %d, conflicting %d of %d (stopped: %q)", p.Sent, p.Answered, p.Lost(), p.Conflicting, n, rep.Stopped)
	}
	if rep.Verified != 20 || len(p.Latencies) != n {
		t.Fatalf("verified %d of 20 sampled receipts, %d latencies", rep.Verified, len(p.Latencies))
	}
	total := 0
	for _, c := range p.Labels {
		total += c
	}
	if total != n || p.Labels["answered"] == 0 || p.Labels["denied"] == 0 || p.Labels["not_found"] == 0 {
		t.Fatalf("decision mix %v", p.Labels)
	}
	// The ceiling and the half-load run went through the same cluster,
	// every message answered; the floor and the CPU were measured.
	if c, h := rep.Ceiling, rep.Half; c == nil || c.Answered != n || c.Lost() != 0 || h == nil || h.Answered != n || rep.HalfRate <= 0 {
		t.Fatalf("ceiling %+v, half load %+v at %v/s", c, h, rep.HalfRate)
	}
	if rep.FloorMicros <= 0 || rep.CPUMicros <= 0 || rep.RSSBytes <= 0 {
		t.Fatalf("floor %v µs, CPU %v µs, RSS %d", rep.FloorMicros, rep.CPUMicros, rep.RSSBytes)
	}
	if !strings.Contains(out.String(), "lost 0") || !strings.Contains(out.String(), "transport ceiling") || !strings.Contains(out.String(), "crypto floor") {
		t.Fatalf("summary:\n%s", out.String())
	}
	if err := rep.writeJSON(json); err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := jsonpkg.Unmarshal(mustRead(t, json), &j); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"throughput_per_s", "ceiling_per_s", "floor_us", "cpu_us_per_request", "p50_ms_half_load", "p99_ms_half_load", "rss_bytes", "lost", "conflicting"} {
		if _, ok := j[k]; !ok {
			t.Errorf("the JSON lacks %s", k)
		}
	}
	if j["lost"] != float64(0) || j["throughput_per_s"].(float64) <= 0 {
		t.Errorf("JSON %v", j)
	}
}

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--requests", "0"},
		{"bench", "--rate", "-1"},
		{"bench", "--in-flight", "-1"},
		{"bench", "--mode", "running", "--kafka", "127.0.0.1:9092", "--db", "x.db"},
		{"bench", "--mode", "running"},
		{"bench", "--mode", "fast"},
		{"bench", "--persons", "0"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage {
			t.Errorf("certless %s: exit %d, want %d (%s)", strings.Join(args, " "), code, exitUsage, stderr)
		}
	}
}

// TestRealKafkaBenchServe runs `certless bench` as it is meant to be run:
// 'certless serve' in its own processes (two, in one consumer group) on the
// real Kafka and PostgreSQL,
// beside the bare echo and the crypto floor. Every request of both runs
// gets exactly one receipt; the table and the JSON carry every figure,
// measured (none is zero); no figure is asserted against a target.
func TestRealKafkaBenchServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	brokers := strings.Join(testenv.KafkaBrokers(t), ",")
	admin := testenv.PostgresAdminDSN(t)
	bin := certlessBinary(ctx, t)
	out := filepath.Join(t.TempDir(), "bench.json")
	data := t.TempDir()
	code, stdout, stderr := runCLI(t, "--data", data, "bench", "--kafka", brokers, "--postgres", admin, "--serve-bin", bin,
		"--requests", "400", "--persons", "3000", "--in-flight", "100", "--instances", "2", "--json", out)
	t.Log("\n" + stdout + stderr)
	if code != exitOK {
		t.Fatalf("bench: exit %d", code)
	}
	var j map[string]any
	if err := jsonpkg.Unmarshal(mustRead(t, out), &j); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"throughput_per_s", "ceiling_per_s", "floor_us", "cpu_us_per_request", "p50_ms_half_load", "p99_ms_half_load", "rss_bytes", "half_load_per_s"} {
		if v, ok := j[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v", k, j[k])
		}
	}
	if j["lost"] != float64(0) || j["conflicting"] != float64(0) || j["mode"] != "serve" || j["cpu_whole_process"] != nil || j["instances"] != float64(2) {
		t.Errorf("JSON %v", j)
	}
	for _, want := range []string{"transport ceiling", "half load @", "brokers' CPU (sum of 2)", "brokers' peak RSS", "pipeline ÷ ceiling", "lost 0", "2 × certless serve in one group"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
	// With --data the run is kept: the report of the day counts exactly
	// the bench's decisions, warm-ups and half-load run included.
	kept := filepath.Join(data, "bench.yaml")
	if !strings.Contains(stdout, "certless --config "+kept+" report") {
		t.Fatalf("no report hint in:\n%s", stdout)
	}
	want := map[string]int{}
	total := 0
	for _, k := range []string{"decisions", "decisions_warm_up", "decisions_half_load"} {
		m, _ := j[k].(map[string]any)
		for outcome, n := range m {
			want[outcome] += int(n.(float64))
			total += int(n.(float64))
		}
	}
	if total != 400+400+5 {
		t.Fatalf("the bench decided %d (%v), want 805", total, want)
	}
	rep := filepath.Join(t.TempDir(), "report.json")
	from, to := time.Now().Add(-time.Hour).Format(time.RFC3339), time.Now().Add(time.Hour).Format(time.RFC3339)
	if code, out, errOut := runCLI(t, "--config", kept, "report", "--from", from, "--to", to, "--format", "json", "--out", rep); code != exitOK || !strings.Contains(out, "reconciled with the log") {
		t.Fatalf("report: %d %s %s", code, out, errOut)
	}
	var r report.Report
	if err := jsonpkg.Unmarshal(mustRead(t, rep), &r); err != nil {
		t.Fatal(err)
	}
	if r.Totals.Requests != total {
		t.Errorf("the report counts %d decisions, the bench %d", r.Totals.Requests, total)
	}
	for outcome, n := range want {
		if r.Totals.ByOutcome[outcome] != n {
			t.Errorf("%s: the report counts %d, the bench %d", outcome, r.Totals.ByOutcome[outcome], n)
		}
	}
}

func TestBenchSoakFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--soak", "-1s"},
		{"bench", "--soak-every", "1s"},                  // no soak to shape
		{"bench", "--soak-rate", "100"},                  // no soak to shape
		{"bench", "--soak", "10s", "--soak-every", "6s"}, // one sample: no trend
		{"bench", "--soak", "10s", "--soak-rate", "-5"},
		{"bench", "--soak", "1m", "--mode", "running", "--kafka", "127.0.0.1:9092"},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage {
			t.Errorf("certless %s: exit %d, want %d (%s)", strings.Join(args, " "), code, exitUsage, stderr)
		}
	}
	for d, want := range map[time.Duration]time.Duration{time.Minute: 10 * time.Second, 10 * time.Minute: 10 * time.Second, time.Hour: time.Minute} {
		if got := soakInterval(d, 0); got != want {
			t.Errorf("soak of %s: a sample every %s, want %s", d, got, want)
		}
	}
}

// TestRealKafkaBenchSoak runs a short soak after the saturation run on
// 'certless serve' in its own process on the real Kafka and PostgreSQL:
// a sample every second with the broker's RSS and goroutines (its
// /metrics) and the interval's p99 and throughput, the verdict of each
// series in the table and the JSON, nothing lost.
func TestRealKafkaBenchSoak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	brokers := strings.Join(testenv.KafkaBrokers(t), ",")
	admin := testenv.PostgresAdminDSN(t)
	bin := certlessBinary(ctx, t)
	out := filepath.Join(t.TempDir(), "bench.json")
	code, stdout, stderr := runCLI(t, "bench", "--kafka", brokers, "--postgres", admin, "--serve-bin", bin,
		"--requests", "300", "--persons", "3000", "--in-flight", "100", "--ceiling=false", "--half-load=false",
		"--soak", "6s", "--soak-every", "1s", "--json", out)
	t.Log("\n" + stdout + stderr)
	if code != exitOK {
		t.Fatalf("bench: exit %d", code)
	}
	var j struct {
		Lost int `json:"lost"`
		Soak *struct {
			Rate     float64 `json:"rate_per_s"`
			Sent     int     `json:"sent"`
			Answered int     `json:"answered"`
			Lost     int     `json:"lost"`
			Samples  []struct {
				T          float64 `json:"t_s"`
				RSS        int64   `json:"rss_bytes"`
				Goroutines int     `json:"goroutines"`
				P99        float64 `json:"p99_ms"`
				Throughput float64 `json:"throughput_per_s"`
				Answered   int     `json:"answered"`
			} `json:"samples"`
			Trends map[string]struct {
				Samples int    `json:"samples"`
				Verdict string `json:"verdict"`
			} `json:"trends"`
		} `json:"soak"`
	}
	if err := jsonpkg.Unmarshal(mustRead(t, out), &j); err != nil {
		t.Fatal(err)
	}
	k := j.Soak
	if k == nil {
		t.Fatal("the JSON has no soak")
	}
	if k.Rate <= 0 || k.Sent == 0 || k.Answered != k.Sent || k.Lost != 0 || j.Lost != 0 {
		t.Fatalf("soak at %v/s: sent %d, answered %d, lost %d", k.Rate, k.Sent, k.Answered, k.Lost)
	}
	// Six ticks of a second; a slow probe may make the ticker drop one.
	if len(k.Samples) < 5 || len(k.Samples) > 6 {
		t.Fatalf("%d samples", len(k.Samples))
	}
	answered, last := 0, 0.0
	for i, s := range k.Samples {
		if s.RSS <= 0 || s.Goroutines <= 0 || s.T <= last {
			t.Errorf("sample %d: %+v", i, s)
		}
		if s.Answered > 0 && (s.P99 <= 0 || s.Throughput <= 0) {
			t.Errorf("sample %d answered %d: p99 %v ms, %v msg/s", i, s.Answered, s.P99, s.Throughput)
		}
		last, answered = s.T, answered+s.Answered
	}
	if answered == 0 || answered > k.Answered {
		t.Errorf("the samples count %d answers of %d", answered, k.Answered)
	}
	verdicts := map[string]bool{"no upward trend": true, "upward trend": true, "no downward trend": true, "downward trend": true}
	for _, key := range []string{"rss_bytes", "goroutines", "p99_ms", "throughput_per_s"} {
		tr, ok := k.Trends[key]
		if !ok || tr.Samples < 3 || !verdicts[tr.Verdict] {
			t.Errorf("trend %s: %+v (present %v)", key, tr, ok)
		}
		if !strings.Contains(stdout, tr.Verdict) {
			t.Errorf("the table lacks the %s verdict %q", key, tr.Verdict)
		}
	}
	for _, want := range []string{"soak @", "goroutines", "rss MiB", "over the soak (threshold 10%)", "lost 0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}
