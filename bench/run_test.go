package bench_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/bench"
)

// echo is an in-memory system under test: every produced request is
// answered through a channel, as decide says.
type echo struct {
	out    chan bench.Answer
	decide func(r bench.Request) []bench.Answer
	mu     sync.Mutex
	sent   int
	fail   error
}

func newEcho(decide func(bench.Request) []bench.Answer) *echo {
	return &echo{out: make(chan bench.Answer, 100000), decide: decide}
}

func (e *echo) Produce(ctx context.Context, reqs ...bench.Request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return e.fail
	}
	for _, r := range reqs {
		e.sent++
		for _, a := range e.decide(r) {
			e.out <- a
		}
	}
	return nil
}

func (e *echo) Next(ctx context.Context) (bench.Answer, error) {
	select {
	case a := <-e.out:
		return a, nil
	case <-ctx.Done():
		return bench.Answer{}, ctx.Err()
	}
}

func requests(n int, prefix string) []bench.Request {
	out := make([]bench.Request, n)
	for i := range out {
		out[i] = bench.Request{ID: fmt.Sprintf("%s-%d", prefix, i), Topic: "t", Value: []byte(fmt.Sprint(i))}
	}
	return out
}

func run(t *testing.T, reqs, warm []bench.Request, o bench.Options, sut *echo) (bench.Result, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := bench.New(reqs, warm, o)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Collect(cctx, sut) }()
	if len(warm) > 0 {
		if err := r.WarmUp(ctx, sut); err != nil {
			t.Fatal(err)
		}
	}
	why := r.Measure(ctx, sut)
	stop()
	<-done
	return r.Result(), why
}

// TestEveryRequestAnswered: labels counted, one latency per answer, the
// warm-ups apart, nothing lost; the kept answers are the asked ones.
func TestEveryRequestAnswered(t *testing.T) {
	sut := newEcho(func(r bench.Request) []bench.Answer {
		label := "answered"
		if r.Value[len(r.Value)-1] == '3' {
			label = "denied"
		}
		return []bench.Answer{{ID: r.ID, Label: label, Value: r.Value}}
	})
	res, why := run(t, requests(1000, "m"), requests(3, "w"), bench.Options{InFlight: 50, Keep: func(i int) bool { return i%100 == 0 }}, sut)
	if why != "" || res.Answered != 1000 || res.Sent != 1000 || res.Lost() != 0 || len(res.Latencies) != 1000 {
		t.Fatalf("%s: %+v", why, res)
	}
	if res.Labels["denied"] != 100 || res.Labels["answered"] != 900 || res.WarmUp["answered"] != 3 {
		t.Fatalf("labels %v warm-up %v", res.Labels, res.WarmUp)
	}
	if len(res.Kept) != 10 || string(res.Kept[500]) != "500" {
		t.Fatalf("kept %d answers", len(res.Kept))
	}
	if res.Throughput() <= 0 || res.Percentile(1) < res.Percentile(0.5) {
		t.Fatalf("throughput %v, p50 %v, max %v", res.Throughput(), res.Percentile(0.5), res.Percentile(1))
	}
}

// TestDuplicatesConflictsForeign: a second identical answer is a
// duplicate, a different one a conflict; answers to unknown ids foreign.
func TestDuplicatesConflictsForeign(t *testing.T) {
	sut := newEcho(func(r bench.Request) []bench.Answer {
		a := bench.Answer{ID: r.ID, Label: "answered", Value: r.Value}
		switch r.ID {
		case "m-1":
			return []bench.Answer{a, a}
		case "m-2":
			return []bench.Answer{a, {ID: r.ID, Label: "answered", Value: []byte("other")}}
		case "m-3":
			return []bench.Answer{{ID: "someone-else", Label: "answered"}, a}
		}
		return []bench.Answer{a}
	})
	res, why := run(t, requests(10, "m"), nil, bench.Options{}, sut)
	if why != "" || res.Answered != 10 || res.Duplicates != 2 || res.Conflicting != 1 || res.Foreign != 1 {
		t.Fatalf("%s: %+v", why, res)
	}
}

// TestWindowBoundsInFlight: with no answers the run sends exactly the
// window, then stops for lack of progress, and says so; the unanswered
// are lost.
func TestWindowBoundsInFlight(t *testing.T) {
	sut := newEcho(func(bench.Request) []bench.Answer { return nil })
	res, why := run(t, requests(100, "m"), nil, bench.Options{InFlight: 7, Timeout: 300 * time.Millisecond}, sut)
	if res.Sent != 7 || res.Answered != 0 || res.Lost() != 7 || why == "" {
		t.Fatalf("%q: %+v", why, res)
	}
}

// TestSendFailureEndsRun: a producer error stops the run and is named.
func TestSendFailureEndsRun(t *testing.T) {
	sut := newEcho(func(r bench.Request) []bench.Answer { return []bench.Answer{{ID: r.ID, Label: "x", Value: r.Value}} })
	sut.fail = errors.New("broker gone")
	_, why := run(t, requests(10, "m"), nil, bench.Options{}, sut)
	if why != "send failed: broker gone" {
		t.Fatalf("stopped %q", why)
	}
}

// TestPacedRun: at a rate, every request is still sent and answered, and
// progress is reported.
func TestPacedRun(t *testing.T) {
	sut := newEcho(func(r bench.Request) []bench.Answer { return []bench.Answer{{ID: r.ID, Label: "x", Value: r.Value}} })
	var mu sync.Mutex
	var reports []bench.Progress
	res, why := run(t, requests(40, "m"), nil, bench.Options{Rate: 400, Every: 20 * time.Millisecond,
		Progress: func(p bench.Progress) { mu.Lock(); reports = append(reports, p); mu.Unlock() }}, sut)
	mu.Lock()
	defer mu.Unlock()
	if why != "" || res.Answered != 40 || len(reports) == 0 || reports[len(reports)-1].Answered != 40 || reports[0].Of != 40 {
		t.Fatalf("%q %+v, %d reports", why, res, len(reports))
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond, 0.001: time.Millisecond} {
		if got := bench.Percentile(lat, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if bench.Percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}
