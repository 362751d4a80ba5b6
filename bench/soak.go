package bench

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// SoakOptions shape a soak: a steady stream at Rate for Duration, sampled
// every Every.
type SoakOptions struct {
	// Rate is requests per second; it must be positive.
	Rate float64
	// InFlight bounds the requests sent and not yet answered; 0 no bound.
	InFlight int
	// Duration is how long requests are sent; Every the sampling interval.
	Duration, Every time.Duration
	// Timeout ends the soak when answers are awaited and none came this
	// long; after Duration it bounds the wait for the last answers.
	Timeout time.Duration
	// Workers is the number of concurrent Produce calls (default 8), Chunk
	// the most requests in one (default 100).
	Workers, Chunk int
	// Clock paces and samples (default the real one).
	Clock Clock
	// Probe reads the system under test at each sample (nil: nothing).
	Probe func() (Probe, error)
	// OnSample, when set, is called with each sample as it is taken.
	OnSample func(SoakSample)
}

// Probe is what the system under test reports of itself.
type Probe struct {
	RSS        int64 // resident set, bytes
	Goroutines int
}

// SoakSample is one interval of a soak: the probe at its end and the
// requests answered within it.
type SoakSample struct {
	At time.Duration // since the soak began: the interval's end
	Probe
	Sent, Answered int
	// P99 is the 99th percentile of the round trips answered in the
	// interval (0 without any); Throughput their number per second.
	P99        time.Duration
	Throughput float64
}

// SoakResult is what a soak measured.
type SoakResult struct {
	Samples                          []SoakSample
	Sent, Answered                   int
	Duplicates, Conflicting, Foreign int
	// Labels counts the answers by label.
	Labels map[string]int
	// Latencies of every answered request, sorted.
	Latencies []time.Duration
	// Span is first send → last answer.
	Span time.Duration
	// Stopped says why the soak ended early, or "".
	Stopped string
}

// Lost is the number of requests sent without an answer.
func (r SoakResult) Lost() int { return r.Sent - r.Answered }

// Percentile is the p-th percentile of all the soak's round trips.
func (r SoakResult) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Soak is the state of one soak. Unlike a Run it holds only the requests
// in flight: next makes each one as it is due, so a soak may run for
// hours.
type Soak struct {
	o    SoakOptions
	next func(i int) (Request, error)

	window     chan struct{}
	readFailed chan error
	quiet      chan struct{} // a token whenever nothing is in flight

	mu       sync.Mutex
	t0       time.Time
	inFlight map[string]time.Time
	// done holds the answered requests' answer digests, for duplicates;
	// doneOld the previous generation (dropped after dupMemory).
	done, doneOld map[string][32]byte
	rotated       time.Time
	interval      []time.Duration // round trips of the current interval
	all           []time.Duration
	sent, ivSent  int
	answered      int
	labels        map[string]int
	dups          int
	conflicts     int
	foreign       int
	// busySince is when the last idle spell ended; with lastAnswer it
	// tells a stall.
	busySince, lastAnswer time.Time
}

// NewSoak prepares a soak whose i-th request (from 0) next makes.
func NewSoak(next func(i int) (Request, error), o SoakOptions) *Soak {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Chunk <= 0 {
		o.Chunk = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	s := &Soak{o: o, next: next, readFailed: make(chan error, 1), quiet: make(chan struct{}, 1),
		inFlight: map[string]time.Time{}, labels: map[string]int{}, done: map[string][32]byte{}, doneOld: map[string][32]byte{}}
	if o.InFlight > 0 {
		s.window = make(chan struct{}, o.InFlight)
	}
	return s
}

// Collect reads src until ctx ends; a read error ends the soak.
func (s *Soak) Collect(ctx context.Context, src Source) {
	for {
		a, err := src.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				select {
				case s.readFailed <- err:
				default:
				}
			}
			return
		}
		s.answer(a)
	}
}

func (s *Soak) answer(a Answer) {
	now := s.o.Clock.Now()
	sum := sha256.Sum256(a.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	sent, ok := s.inFlight[a.ID]
	if !ok {
		prev, seen := s.done[a.ID]
		if !seen {
			prev, seen = s.doneOld[a.ID]
		}
		switch {
		case !seen:
			s.foreign++
		case prev != sum:
			s.dups++
			s.conflicts++
		default:
			s.dups++
		}
		return
	}
	delete(s.inFlight, a.ID)
	s.done[a.ID] = sum
	lat := now.Sub(sent)
	s.interval = append(s.interval, lat)
	s.all = append(s.all, lat)
	s.answered++
	s.labels[cmp.Or(a.Label, "(no label)")]++
	s.lastAnswer = now
	if s.window != nil {
		select {
		case <-s.window:
		default:
		}
	}
	if len(s.inFlight) == 0 {
		select {
		case s.quiet <- struct{}{}:
		default:
		}
	}
}

// dupMemory is how long an answered request is remembered for
// duplicates at least: a copy later than that counts as foreign.
const dupMemory = 2 * time.Minute

// Run sends the requests at the rate for the duration, sampling every
// interval, then waits for the last answers.
func (s *Soak) Run(ctx context.Context, p Producer) SoakResult {
	if s.o.Rate <= 0 || s.o.Duration <= 0 || s.o.Every <= 0 {
		return SoakResult{Stopped: "a soak needs a positive rate, duration and interval"}
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	// The clock is read before the tickers start, so that the n-th
	// sample is at n intervals or a little later, never earlier.
	s.mu.Lock()
	s.t0 = s.o.Clock.Now()
	s.rotated = s.t0
	s.mu.Unlock()
	sampleTick := s.o.Clock.NewTicker(s.o.Every)
	defer sampleTick.Stop()
	paceTick := s.o.Clock.NewTicker(max(time.Duration(float64(time.Second)/s.o.Rate), time.Millisecond))
	defer paceTick.Stop()

	chunks := make(chan []Request, s.o.Workers)
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
		stopSending()
	}
	var senders sync.WaitGroup
	for range s.o.Workers {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for c := range chunks {
				if err := p.Produce(sendCtx, c...); err != nil {
					if sendCtx.Err() == nil {
						fail(fmt.Errorf("send failed: %w", err))
					}
					return
				}
			}
		}()
	}
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		defer close(chunks)
		if err := s.pace(sendCtx, paceTick, chunks); err != nil {
			fail(err)
		}
	}()
	defer func() {
		stopSending()
		<-paced
		senders.Wait()
	}()

	res := SoakResult{}
	stopped := func(why string) SoakResult {
		stopSending()
		r := s.result()
		r.Samples, r.Stopped = res.Samples, why
		return r
	}
	sampled := s.t0
	for sampling := true; sampling; {
		select {
		case <-ctx.Done():
			return stopped("interrupted")
		case err := <-failed:
			return stopped(err.Error())
		case err := <-s.readFailed:
			return stopped("reading answers failed: " + err.Error())
		case now := <-sampleTick.C():
			if why := s.idle(now); why != "" {
				return stopped(why)
			}
			smp := s.cut(now, now.Sub(sampled))
			sampled = now
			if s.o.Probe != nil {
				pr, err := s.o.Probe()
				if err != nil {
					return stopped(fmt.Sprintf("probe at %s: %v", smp.At.Round(time.Millisecond), err))
				}
				smp.Probe = pr
			}
			res.Samples = append(res.Samples, smp)
			if s.o.OnSample != nil {
				s.o.OnSample(smp)
			}
			sampling = smp.At < s.o.Duration
		}
	}
	// The last answers: the pacer stops by itself at Duration.
	pacing := paced
	for {
		select {
		case <-pacing:
			pacing = nil // closed: stop selecting it
		case <-s.quiet:
		case <-ctx.Done():
			return stopped("interrupted")
		case err := <-failed:
			return stopped(err.Error())
		case err := <-s.readFailed:
			return stopped("reading answers failed: " + err.Error())
		case now := <-sampleTick.C():
			if why := s.idle(now); why != "" {
				return stopped(why)
			}
		}
		if pacing == nil && s.settled() {
			r := s.result()
			r.Samples = res.Samples
			return r
		}
	}
}

// pace makes and hands out the requests as they fall due, each first
// taking an in-flight token, until Duration has passed.
func (s *Soak) pace(ctx context.Context, tick Ticker, chunks chan<- []Request) error {
	next := 0
	for {
		var now time.Time
		select {
		case now = <-tick.C():
		case <-ctx.Done():
			return nil
		}
		elapsed := min(now.Sub(s.t0), s.o.Duration)
		due := int(s.o.Rate * elapsed.Seconds())
		for next < due {
			c := make([]Request, 0, min(due-next, s.o.Chunk))
			for len(c) < cap(c) {
				if s.window != nil {
					select {
					case s.window <- struct{}{}:
					case <-ctx.Done():
						return nil
					}
				}
				q, err := s.next(next)
				if err != nil {
					return fmt.Errorf("request %d: %w", next, err)
				}
				s.sending(q)
				c = append(c, q)
				next++
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				return nil
			}
		}
		if elapsed >= s.o.Duration {
			return nil
		}
	}
}

// sending records a request as in flight from now.
func (s *Soak) sending(q Request) {
	now := s.o.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inFlight) == 0 {
		s.busySince = now
	}
	s.inFlight[q.ID] = now
	s.sent++
	s.ivSent++
}

// idle says why the soak should stop for lack of progress, or "": no
// answer for Timeout while requests were in flight.
func (s *Soak) idle(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inFlight) == 0 {
		return ""
	}
	if d := now.Sub(later(s.busySince, s.lastAnswer)); d > s.o.Timeout {
		return fmt.Sprintf("no progress for %s (timeout)", d.Round(time.Millisecond))
	}
	return ""
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// settled says whether every request sent is answered.
func (s *Soak) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inFlight) == 0
}

// cut ends the current interval, length long, at now.
func (s *Soak) cut(now time.Time, length time.Duration) SoakSample {
	s.mu.Lock()
	iv, sent := s.interval, s.ivSent
	s.interval, s.ivSent = nil, 0
	at := now.Sub(s.t0)
	if now.Sub(s.rotated) >= max(dupMemory, 2*s.o.Timeout) {
		s.doneOld, s.done, s.rotated = s.done, map[string][32]byte{}, now
	}
	s.mu.Unlock()
	return intervalSample(at, length, sent, iv)
}

// intervalSample is the figures of the round trips lat answered in an
// interval of length ending at.
func intervalSample(at, length time.Duration, sent int, lat []time.Duration) SoakSample {
	smp := SoakSample{At: at, Sent: sent, Answered: len(lat)}
	slices.Sort(lat)
	smp.P99 = Percentile(lat, .99)
	if length > 0 {
		smp.Throughput = float64(len(lat)) / length.Seconds()
	}
	return smp
}

func (s *Soak) result() SoakResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := SoakResult{Sent: s.sent, Answered: s.answered, Duplicates: s.dups, Conflicting: s.conflicts,
		Foreign: s.foreign, Labels: maps.Clone(s.labels), Latencies: slices.Clone(s.all)}
	slices.Sort(r.Latencies)
	if s.answered > 0 {
		r.Span = s.lastAnswer.Sub(s.t0)
	}
	return r
}

// ErrNoSamples is returned by SoakTrends for a soak without samples.
var ErrNoSamples = errors.New("bench: the soak took no samples")

// SoakTrends are the trends of a soak's series.
type SoakTrends struct {
	RSS, Goroutines, P99, Throughput Trend
}

// The thresholds of SoakTrends: a trend is a fitted rise over the soak of
// 10% of the mean for RSS and goroutines, 25% for p99 (a noisier series),
// a fall of 10% for throughput.
const (
	ThresholdRSS        = 0.10
	ThresholdGoroutines = 0.10
	ThresholdP99        = 0.25
	ThresholdThroughput = 0.10
)

// Trends fits each series of the samples; intervals without an answer
// leave p99 out.
func Trends(samples []SoakSample) (SoakTrends, error) {
	if len(samples) == 0 {
		return SoakTrends{}, ErrNoSamples
	}
	var at, p99At []time.Duration
	var rss, gor, p99, thr []float64
	for _, s := range samples {
		at = append(at, s.At)
		rss = append(rss, float64(s.RSS))
		gor = append(gor, float64(s.Goroutines))
		thr = append(thr, s.Throughput)
		if s.Answered > 0 {
			p99At = append(p99At, s.At)
			p99 = append(p99, float64(s.P99)/float64(time.Millisecond))
		}
	}
	return SoakTrends{RSS: TrendOf(at, rss, ThresholdRSS), Goroutines: TrendOf(at, gor, ThresholdGoroutines),
		P99: TrendOf(p99At, p99, ThresholdP99), Throughput: TrendOf(at, thr, ThresholdThroughput)}, nil
}
