package bench_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/certless/certless/bench"
)

// minutes are n sample times, one every 10 s from 10 s.
func minutes(n int) []time.Duration {
	at := make([]time.Duration, n)
	for i := range at {
		at[i] = time.Duration(i+1) * 10 * time.Second
	}
	return at
}

// TestTrendUpward: memory that grows 1.5 MiB a minute from 100 MiB over
// ten minutes, with noise, rises by about 15 MiB (14% of its mean): an
// upward trend, at the slope it was made with.
func TestTrendUpward(t *testing.T) {
	at := minutes(60)
	rng := rand.New(rand.NewPCG(1, 2))
	ys := make([]float64, len(at))
	for i, x := range at {
		ys[i] = 100 + 1.5*x.Minutes() + rng.NormFloat64()*0.5
	}
	tr := bench.TrendOf(at, ys, 0.10)
	if math.Abs(tr.SlopePerMinute-1.5) > 0.1 || tr.Samples != 54 {
		t.Fatalf("slope %.3f/min over %d samples, want 1.5 over 54", tr.SlopePerMinute, tr.Samples)
	}
	if !tr.Trending(bench.Up) || tr.Verdict(bench.Up) != "upward trend" || tr.Relative < 0.10 {
		t.Fatalf("%+v: %s", tr, tr.Verdict(bench.Up))
	}
	if tr.Trending(bench.Down) || tr.Verdict(bench.Down) != "no downward trend" {
		t.Fatalf("a rise is not a fall: %s", tr.Verdict(bench.Down))
	}
}

// TestTrendFlatNoisy: a flat series with ±10% noise has no trend either
// way.
func TestTrendFlatNoisy(t *testing.T) {
	at := minutes(60)
	rng := rand.New(rand.NewPCG(3, 4))
	ys := make([]float64, len(at))
	for i := range at {
		ys[i] = 200 * (1 + 0.2*(rng.Float64()-0.5))
	}
	tr := bench.TrendOf(at, ys, 0.10)
	if tr.Trending(bench.Up) || tr.Trending(bench.Down) || tr.Verdict(bench.Up) != "no upward trend" {
		t.Fatalf("%+v: %s", tr, tr.Verdict(bench.Up))
	}
	if math.Abs(tr.Mean-200) > 10 || math.Abs(tr.Relative) > 0.05 {
		t.Fatalf("mean %.1f, relative %.3f", tr.Mean, tr.Relative)
	}
}

// TestTrendSawtooth: a heap that climbs from 80 to 120 MiB and drops back
// at each GC, every 70 s, is steady; the same sawtooth on a rising floor
// is not.
func TestTrendSawtooth(t *testing.T) {
	at := minutes(60)
	saw := make([]float64, len(at))
	leak := make([]float64, len(at))
	for i, x := range at {
		phase := math.Mod(x.Seconds(), 70) / 70
		saw[i] = 80 + 40*phase
		leak[i] = saw[i] + 3*x.Minutes()
	}
	if tr := bench.TrendOf(at, saw, 0.10); tr.Trending(bench.Up) || math.Abs(tr.Relative) >= 0.10 {
		t.Fatalf("sawtooth: %+v", tr)
	}
	if tr := bench.TrendOf(at, leak, 0.10); !tr.Trending(bench.Up) {
		t.Fatalf("sawtooth on a rising floor: %+v", tr)
	}
}

// TestTrendWarmUpLeftOut: a climb confined to the first tenth of the
// samples (caches filling) is no trend; the same climb later is.
func TestTrendWarmUpLeftOut(t *testing.T) {
	at := minutes(60)
	early, late := make([]float64, len(at)), make([]float64, len(at))
	for i := range at {
		early[i], late[i] = 100, 50
		if i < 6 {
			early[i] = 50 + float64(i)*10
		}
		if i >= 54 {
			late[i] = 100
		}
	}
	if tr := bench.TrendOf(at, early, 0.10); tr.Trending(bench.Up) || tr.SlopePerMinute != 0 {
		t.Fatalf("warm-up climb: %+v", tr)
	}
	if tr := bench.TrendOf(at, late, 0.10); !tr.Trending(bench.Up) {
		t.Fatalf("late climb: %+v", tr)
	}
}

// TestTrendFalling: throughput that halves is a downward trend.
func TestTrendFalling(t *testing.T) {
	at := minutes(30)
	ys := make([]float64, len(at))
	for i := range ys {
		ys[i] = 1000 - float64(i)*15
	}
	tr := bench.TrendOf(at, ys, 0.10)
	if !tr.Trending(bench.Down) || tr.Verdict(bench.Down) != "downward trend" || tr.Trending(bench.Up) || tr.Rise >= 0 {
		t.Fatalf("%+v", tr)
	}
}

// TestTrendTooFew: no verdict on fewer than three fitted samples, and no
// division by a zero mean.
func TestTrendTooFew(t *testing.T) {
	if tr := bench.TrendOf(minutes(2), []float64{1, 100}, 0.1); tr.Verdict(bench.Up) != "too few samples" || tr.Trending(bench.Up) {
		t.Fatalf("%+v", tr)
	}
	if tr := bench.TrendOf(nil, nil, 0.1); tr.Samples != 0 || tr.Verdict(bench.Up) != "too few samples" {
		t.Fatalf("%+v", tr)
	}
	tr := bench.TrendOf(minutes(5), []float64{0, 0, 0, 0, 1}, 0.1)
	if tr.Mean == 0 || math.IsInf(tr.Relative, 0) || math.IsNaN(tr.Relative) {
		t.Fatalf("%+v", tr)
	}
	if tr := bench.TrendOf(minutes(5), []float64{0, 0, 0, 0, 0}, 0.1); tr.Relative != 0 || tr.Trending(bench.Up) || tr.Verdict(bench.Up) != "no upward trend" {
		t.Fatalf("all zero: %+v", tr)
	}
}
