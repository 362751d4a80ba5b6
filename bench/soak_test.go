package bench_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/bench"
	"github.com/certless/certless/internal/testenv"
)

// fakeClock is a clock the test sets by hand; its tickers tick only when
// the test fires them, by period.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	period time.Duration
	c      chan time.Time
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }
func (t *fakeTicker) Stop()               {}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTicker(d time.Duration) bench.Ticker {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTicker{period: d, c: make(chan time.Time)}
	f.tickers = append(f.tickers, t)
	return t
}

func (f *fakeClock) set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

func (f *fakeClock) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tickers)
}

// fire ticks the tickers of period once, waiting for each to be read.
func (f *fakeClock) fire(t *testing.T, period time.Duration) {
	t.Helper()
	f.mu.Lock()
	now, tickers := f.now, f.tickers
	f.mu.Unlock()
	for _, tk := range tickers {
		if tk.period != period {
			continue
		}
		select {
		case tk.c <- now:
		case <-time.After(10 * time.Second):
			t.Fatalf("nobody reads the ticker of %s", period)
		}
	}
}

// holdingEcho takes requests and answers them only when released; Next
// counts its calls, so that the test knows how many answers the soak has
// taken in (one fewer than the calls).
type holdingEcho struct {
	mu       sync.Mutex
	produced int
	pending  []bench.Answer
	out      chan bench.Answer
	calls    int
}

func (e *holdingEcho) Produce(ctx context.Context, reqs ...bench.Request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range reqs {
		e.produced++
		e.pending = append(e.pending, bench.Answer{ID: r.ID, Label: "x", Value: r.Value})
	}
	return nil
}

func (e *holdingEcho) release() {
	e.mu.Lock()
	p := e.pending
	e.pending = nil
	e.mu.Unlock()
	for _, a := range p {
		e.out <- a
	}
}

func (e *holdingEcho) Next(ctx context.Context) (bench.Answer, error) {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	select {
	case a := <-e.out:
		return a, nil
	case <-ctx.Done():
		return bench.Answer{}, ctx.Err()
	}
}

func (e *holdingEcho) wait(ctx context.Context, t *testing.T, produced, taken int) {
	t.Helper()
	testenv.Eventually(ctx, t, "the echo", 10*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.produced != produced || e.calls-1 != taken {
			return fmt.Errorf("produced %d of %d, answers taken in %d of %d", e.produced, produced, e.calls-1, taken)
		}
		return nil
	})
}

func soakRequest(i int) (bench.Request, error) {
	return bench.Request{ID: fmt.Sprintf("s-%d", i), Topic: "t", Value: []byte(fmt.Sprint(i))}, nil
}

// TestSoakSamples drives a five-second soak at 100 requests/s on a fake
// clock: a sample at each tick of the interval with the probe's reading,
// the requests sent and answered in that interval, their p99 (interval k's
// requests are answered k ms after they are sent) and throughput; after
// the last sample the rest is sent and awaited; nothing is lost.
func TestSoakSamples(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	sut := &holdingEcho{out: make(chan bench.Answer, 1000)}
	probes := 0
	var mu sync.Mutex
	var seen []bench.SoakSample
	s := bench.NewSoak(soakRequest, bench.SoakOptions{Rate: 100, Duration: 5 * time.Second, Every: time.Second, Clock: clock,
		Probe: func() (bench.Probe, error) {
			probes++
			return bench.Probe{RSS: int64(probes) << 20, Goroutines: 10 + probes}, nil
		},
		OnSample: func(s bench.SoakSample) { mu.Lock(); seen = append(seen, s); mu.Unlock() }})
	cctx, stop := context.WithCancel(ctx)
	collected := make(chan struct{})
	go func() { defer close(collected); s.Collect(cctx, sut) }()
	done := make(chan bench.SoakResult, 1)
	go func() { done <- s.Run(ctx, sut) }()
	testenv.Eventually(ctx, t, "the soak's tickers", 10*time.Second, func() error {
		if clock.count() != 2 {
			return errors.New("not yet")
		}
		return nil
	})
	pace := 10 * time.Millisecond // 1 s ÷ 100
	for k := 1; k <= 5; k++ {
		end := t0.Add(time.Duration(k) * time.Second)
		clock.set(end.Add(-5 * time.Millisecond)) // due: 100k - 1
		clock.fire(t, pace)
		sut.wait(ctx, t, 100*k-1, 100*(k-1)-min(k-1, 1))
		clock.set(end.Add(-5*time.Millisecond + time.Duration(k)*time.Millisecond))
		sut.release()
		sut.wait(ctx, t, 100*k-1, 100*k-1)
		clock.set(end)
		clock.fire(t, time.Second)
		testenv.Eventually(ctx, t, "the sample", 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != k {
				return fmt.Errorf("%d samples", len(seen))
			}
			return nil
		})
	}
	// The last request falls due at 5 s; the pacer sends it and stops.
	clock.fire(t, pace)
	sut.wait(ctx, t, 500, 499)
	sut.release()
	var res bench.SoakResult
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("the soak did not end")
	}
	stop()
	<-collected
	if res.Stopped != "" || res.Sent != 500 || res.Answered != 500 || res.Lost() != 0 || len(res.Latencies) != 500 || res.Labels["x"] != 500 {
		t.Fatalf("%q: sent %d, answered %d", res.Stopped, res.Sent, res.Answered)
	}
	if len(res.Samples) != 5 || len(seen) != 5 {
		t.Fatalf("%d samples, %d seen: %+v", len(res.Samples), len(seen), res.Samples)
	}
	for i, smp := range res.Samples {
		k := i + 1
		n := 100
		if k == 1 {
			n = 99
		}
		want := bench.SoakSample{At: time.Duration(k) * time.Second, Probe: bench.Probe{RSS: int64(k) << 20, Goroutines: 10 + k},
			Sent: n, Answered: n, P99: time.Duration(k) * time.Millisecond, Throughput: float64(n)}
		if smp != want || seen[i] != smp {
			t.Errorf("sample %d: %+v, want %+v", k, smp, want)
		}
	}
	tr, err := bench.Trends(res.Samples)
	if err != nil {
		t.Fatal(err)
	}
	// RSS 1…5 MiB and p99 1…5 ms climb; goroutines 11…15 by less than
	// 10% a second but far more than 10% over the soak.
	if !tr.RSS.Trending(bench.Up) || !tr.P99.Trending(bench.Up) || !tr.Goroutines.Trending(bench.Up) || tr.Throughput.Trending(bench.Down) {
		t.Errorf("trends %+v", tr)
	}
}

// TestSoakStall: requests sent and never answered end the soak after the
// timeout, and are counted lost.
func TestSoakStall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	sut := &holdingEcho{out: make(chan bench.Answer, 1000)}
	s := bench.NewSoak(soakRequest, bench.SoakOptions{Rate: 100, Duration: time.Hour, Every: 10 * time.Second, Timeout: 30 * time.Second, Clock: clock})
	done := make(chan bench.SoakResult, 1)
	go func() { done <- s.Run(ctx, sut) }()
	testenv.Eventually(ctx, t, "the soak's tickers", 10*time.Second, func() error {
		if clock.count() != 2 {
			return errors.New("not yet")
		}
		return nil
	})
	clock.set(t0.Add(500 * time.Millisecond))
	clock.fire(t, 10*time.Millisecond)
	sut.wait(ctx, t, 50, -1)
	clock.set(t0.Add(10 * time.Second)) // 9.5 s without an answer: not yet
	clock.fire(t, 10*time.Second)
	clock.set(t0.Add(31 * time.Second)) // 30.5 s
	clock.fire(t, 10*time.Second)
	res := <-done
	if res.Stopped != "no progress for 30.5s (timeout)" || res.Sent != 50 || res.Lost() != 50 || len(res.Samples) != 1 {
		t.Fatalf("%q: sent %d, lost %d, %d samples", res.Stopped, res.Sent, res.Lost(), len(res.Samples))
	}
}

// TestSoakProbeFails: a probe that fails (the broker gone) ends the soak
// and says so.
func TestSoakProbeFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	sut := &holdingEcho{out: make(chan bench.Answer, 1000)}
	s := bench.NewSoak(soakRequest, bench.SoakOptions{Rate: 100, Duration: time.Hour, Every: time.Second, Clock: clock,
		Probe: func() (bench.Probe, error) { return bench.Probe{}, errors.New("broker RSS: no such process") }})
	done := make(chan bench.SoakResult, 1)
	go func() { done <- s.Run(ctx, sut) }()
	testenv.Eventually(ctx, t, "the soak's tickers", 10*time.Second, func() error {
		if clock.count() != 2 {
			return errors.New("not yet")
		}
		return nil
	})
	clock.set(t0.Add(time.Second))
	clock.fire(t, time.Second)
	if res := <-done; res.Stopped != "probe at 1s: broker RSS: no such process" || len(res.Samples) != 0 {
		t.Fatalf("%q, %d samples", res.Stopped, len(res.Samples))
	}
}

// TestSoakNeedsRate: a soak without a rate, duration or interval does not
// start.
func TestSoakNeedsRate(t *testing.T) {
	for _, o := range []bench.SoakOptions{{Duration: time.Second, Every: time.Second}, {Rate: 1, Every: time.Second}, {Rate: 1, Duration: time.Second}} {
		if res := bench.NewSoak(soakRequest, o).Run(context.Background(), &holdingEcho{}); res.Stopped == "" || res.Sent != 0 {
			t.Errorf("%+v: %+v", o, res)
		}
	}
}
