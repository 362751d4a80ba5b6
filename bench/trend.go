package bench

import "time"

// Trend is a series' drift over a soak: the least-squares line through
// its samples after the warm-up, which is the first tenth of them
// (rounded down).
type Trend struct {
	// Samples is how many samples the line was fitted to.
	Samples int
	// Mean is the fitted samples' mean.
	Mean float64
	// SlopePerMinute is the line's slope, in the series' units a minute.
	SlopePerMinute float64
	// Rise is the line's change over the whole soak (the slope times the
	// last sample's time); Relative is Rise ÷ Mean (0 when Mean is 0).
	Rise, Relative float64
	// Threshold is the relative change that counts as a trend.
	Threshold float64
}

// Direction is the way a series must not drift.
type Direction int

// The directions: memory, goroutines and latency must not go up,
// throughput not down.
const (
	Up Direction = iota
	Down
)

// minTrendSamples is the fewest fitted samples a verdict is given on.
const minTrendSamples = 3

// TrendOf fits the line through ys, sampled at at (the time since the soak
// began), leaving out the warm-up. It is a trend when its rise over the
// soak reaches threshold × the mean, up or down.
func TrendOf(at []time.Duration, ys []float64, threshold float64) Trend {
	n := min(len(at), len(ys))
	t := Trend{Threshold: threshold}
	if n == 0 {
		return t
	}
	skip := n / 10
	xs, vs := at[skip:n], ys[skip:n]
	t.Samples = len(xs)
	var mx, my float64
	for i := range xs {
		mx += xs[i].Minutes()
		my += vs[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(xs))
	var sxy, sxx float64
	for i := range xs {
		dx := xs[i].Minutes() - mx
		sxy += dx * (vs[i] - my)
		sxx += dx * dx
	}
	t.Mean = my
	if sxx > 0 {
		t.SlopePerMinute = sxy / sxx
	}
	t.Rise = t.SlopePerMinute * at[n-1].Minutes()
	if t.Mean != 0 {
		t.Relative = t.Rise / t.Mean
	}
	return t
}

// Trending says whether the series drifts the bad way by the threshold
// or more (false with fewer than three fitted samples).
func (t Trend) Trending(bad Direction) bool {
	if t.Samples < minTrendSamples {
		return false
	}
	if t.Mean == 0 { // no scale: any drift the bad way is one
		return (bad == Up && t.Rise > 0) || (bad == Down && t.Rise < 0)
	}
	if bad == Up {
		return t.Relative >= t.Threshold
	}
	return -t.Relative >= t.Threshold
}

// Verdict is the trend in words: "no upward trend", "upward trend" (or
// downward), or "too few samples".
func (t Trend) Verdict(bad Direction) string {
	way := "upward"
	if bad == Down {
		way = "downward"
	}
	switch {
	case t.Samples < minTrendSamples:
		return "too few samples"
	case t.Trending(bad):
		return way + " trend"
	}
	return "no " + way + " trend"
}
