// Package bench is the load engine of `certless bench`: it hands
// pre-built messages to a producer at a paced rate within an in-flight
// window, matches the answers read back to the messages, and measures
// round-trip latency, throughput, loss and conflicting answers. It knows
// nothing of Certless's formats: a Request is bytes with an id, an Answer
// the id it answers, a label and its bytes, so the same engine drives the
// broker and a bare echo through the same cluster.
package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one message of a run.
type Request struct {
	ID    string // what its answer names (the request digest)
	Topic string
	Key   []byte
	Value []byte
	// Headers travel with the message (the echo copies them).
	Headers map[string]string
}

// Answer is one message read back.
type Answer struct {
	ID    string // the request it answers; unknown ids are counted, not matched
	Label string // the decision, for the mix
	Value []byte
}

// Producer sends messages; one call may carry many.
type Producer interface {
	Produce(ctx context.Context, reqs ...Request) error
}

// Source yields answers until ctx ends or it fails.
type Source interface {
	Next(ctx context.Context) (Answer, error)
}

// Options shape a run.
type Options struct {
	// Rate is requests per second; 0 sends as fast as the window allows.
	Rate float64
	// InFlight bounds the requests sent and not yet answered; 0 no bound.
	InFlight int
	// Timeout ends a run without progress (a send or an answer) this long.
	Timeout time.Duration
	// Workers is the number of concurrent Produce calls (default 8), Chunk
	// the most requests in one (default 100).
	Workers, Chunk int
	// Keep says which measured requests' answers are kept (for checks
	// after the run).
	Keep func(i int) bool
	// Progress, when set, is called about every Every (default 1s) while
	// measuring.
	Progress func(Progress)
	Every    time.Duration
}

// Progress is a run's state while it measures.
type Progress struct {
	Elapsed        time.Duration
	Sent, Answered int
	Of             int
}

// Run is the state of one run. Requests are numbered: the measured ones
// first, then the warm-ups.
type Run struct {
	o     Options
	reqs  []Request
	n     int
	index map[string]int

	base     time.Time
	t0       atomic.Int64
	sentAt   []atomic.Int64 // +1; 0 not sent
	sent     atomic.Int64
	answered atomic.Int64
	progress atomic.Int64
	window   chan struct{}

	mu         sync.Mutex
	seenAt     []time.Duration
	sums       [][32]byte
	label      []string
	kept       map[int][]byte
	received   int
	warmLeft   int
	dups       int
	conflicts  int
	foreign    int
	lastSent   time.Duration
	allIn      chan struct{}
	warmIn     chan struct{}
	readFailed chan error
}

// New prepares a run of reqs, with warm-ups answered before the clock
// starts.
func New(reqs, warm []Request, o Options) *Run {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Chunk <= 0 {
		o.Chunk = 100
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	all := append(reqs[:len(reqs):len(reqs)], warm...)
	r := &Run{o: o, reqs: all, n: len(reqs), index: make(map[string]int, len(all)), base: time.Now(),
		sentAt: make([]atomic.Int64, len(all)), seenAt: make([]time.Duration, len(all)),
		sums: make([][32]byte, len(all)), label: make([]string, len(all)), kept: map[int][]byte{},
		warmLeft: len(warm), allIn: make(chan struct{}), warmIn: make(chan struct{}), readFailed: make(chan error, 1)}
	for i, q := range all {
		r.index[q.ID] = i
	}
	if o.InFlight > 0 {
		r.window = make(chan struct{}, o.InFlight)
	}
	if len(warm) == 0 {
		close(r.warmIn)
	}
	if r.n == 0 {
		close(r.allIn)
	}
	return r
}

func (r *Run) since() time.Duration { return time.Since(r.base) }

// Collect reads src until ctx ends; a read error ends the run.
func (r *Run) Collect(ctx context.Context, src Source) {
	for {
		a, err := src.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				select {
				case r.readFailed <- err:
				default:
				}
			}
			return
		}
		r.answer(a)
	}
}

func (r *Run) answer(a Answer) {
	at := r.since()
	i, ok := r.index[a.ID]
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.foreign++
		return
	}
	sum := sha256.Sum256(a.Value)
	if r.label[i] != "" {
		r.dups++
		if sum != r.sums[i] {
			r.conflicts++
		}
		return
	}
	r.label[i], r.sums[i] = a.Label, sum
	if r.label[i] == "" {
		r.label[i] = "(no label)"
	}
	if i >= r.n {
		if r.warmLeft--; r.warmLeft == 0 {
			close(r.warmIn)
		}
		return
	}
	r.seenAt[i] = max(at, 1)
	r.progress.Store(int64(at))
	if r.o.Keep != nil && r.o.Keep(i) {
		r.kept[i] = a.Value
	}
	if r.window != nil {
		select {
		case <-r.window:
		default:
		}
	}
	r.answered.Add(1)
	if r.received++; r.received == r.n {
		close(r.allIn)
	}
}

// WarmUp sends the warm-ups and waits for their answers.
func (r *Run) WarmUp(ctx context.Context, p Producer) error {
	if err := p.Produce(ctx, r.reqs[r.n:]...); err != nil {
		return err
	}
	select {
	case <-r.warmIn:
		return nil
	case err := <-r.readFailed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Measure sends the measured requests and waits for their answers. It
// returns why it stopped early, or "".
func (r *Run) Measure(ctx context.Context, p Producer) string {
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	chunks := make(chan []int, r.o.Workers)
	sendFailed := make(chan error, 1)
	var senders sync.WaitGroup
	t0 := r.since()
	r.t0.Store(int64(t0))
	r.progress.Store(int64(t0))
	for range r.o.Workers {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for c := range chunks {
				msgs := make([]Request, len(c))
				at := r.since()
				for j, i := range c {
					msgs[j] = r.reqs[i]
					r.sentAt[i].Store(int64(at) + 1)
				}
				r.progress.Store(int64(at))
				if err := p.Produce(sendCtx, msgs...); err != nil {
					if sendCtx.Err() == nil {
						select {
						case sendFailed <- err:
						default:
						}
					}
					stopSending()
					return
				}
				r.sent.Add(int64(len(c)))
				r.mu.Lock()
				r.lastSent = max(r.lastSent, r.since())
				r.mu.Unlock()
			}
		}()
	}
	senders.Add(1)
	go func() {
		defer senders.Done()
		defer close(chunks)
		r.pace(sendCtx, chunks)
	}()
	// Stop the senders before waiting for them: a sender blocked on the
	// window would otherwise hold the run past its timeout.
	defer func() {
		stopSending()
		senders.Wait()
	}()

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastReport := t0
	for {
		select {
		case <-r.allIn:
			r.report()
			return ""
		case err := <-sendFailed:
			return "send failed: " + err.Error()
		case err := <-r.readFailed:
			return "reading answers failed: " + err.Error()
		case <-ctx.Done():
			return "interrupted"
		case <-tick.C:
			now := r.since()
			if idle := now - time.Duration(r.progress.Load()); idle > r.o.Timeout {
				return fmt.Sprintf("no progress for %s (timeout)", idle.Round(time.Millisecond))
			}
			if now-lastReport >= r.o.Every {
				lastReport = now
				r.report()
			}
		}
	}
}

func (r *Run) report() {
	if r.o.Progress != nil {
		r.o.Progress(Progress{Elapsed: r.since() - time.Duration(r.t0.Load()), Sent: int(r.sent.Load()), Answered: int(r.answered.Load()), Of: r.n})
	}
}

// pace hands out chunks of request numbers at the rate, each request
// first taking an in-flight token.
func (r *Run) pace(ctx context.Context, chunks chan<- []int) {
	var tick <-chan time.Time
	if r.o.Rate > 0 {
		t := time.NewTicker(max(time.Duration(float64(time.Second)/r.o.Rate), time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	next := 0
	for next < r.n {
		due := r.n
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return
			}
			due = min(r.n, int(r.o.Rate*(r.since()-time.Duration(r.t0.Load())).Seconds()))
		}
		for next < due {
			c := make([]int, 0, min(due-next, r.o.Chunk))
			for len(c) < cap(c) {
				if r.window == nil {
					c = append(c, next)
					next++
					continue
				}
				if len(c) > 0 { // send what has a token rather than wait
					select {
					case r.window <- struct{}{}:
						c = append(c, next)
						next++
						continue
					default:
					}
					break
				}
				select {
				case r.window <- struct{}{}:
					c = append(c, next)
					next++
				case <-ctx.Done():
					return
				}
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Result is what a run measured.
type Result struct {
	Requests, Sent, Answered         int
	Duplicates, Conflicting, Foreign int
	// Latencies of the answered measured requests, sorted.
	Latencies []time.Duration
	// Labels counts the answers by label; WarmUp those of the warm-ups.
	Labels, WarmUp map[string]int
	// SendSpan is first send → last send; Span first send → last answer.
	SendSpan, Span time.Duration
	// Kept are the answers Options.Keep asked for, by request number.
	Kept map[int][]byte
	// Label of each measured request ("" unanswered).
	Label []string
}

// Result returns the measurements so far.
func (r *Run) Result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{Requests: r.n, Sent: int(r.sent.Load()), Answered: r.received, Duplicates: r.dups, Conflicting: r.conflicts,
		Foreign: r.foreign, Labels: map[string]int{}, WarmUp: map[string]int{}, Kept: map[int][]byte{}, Label: slices.Clone(r.label[:r.n])}
	var last time.Duration
	for i := range r.n {
		if r.seenAt[i] == 0 {
			continue
		}
		sent := time.Duration(r.sentAt[i].Load() - 1)
		res.Latencies = append(res.Latencies, r.seenAt[i]-sent)
		res.Labels[r.label[i]]++
		last = max(last, r.seenAt[i])
	}
	for i := r.n; i < len(r.reqs); i++ {
		if r.label[i] != "" {
			res.WarmUp[r.label[i]]++
		}
	}
	for i, b := range r.kept {
		res.Kept[i] = b
	}
	slices.Sort(res.Latencies)
	t0 := time.Duration(r.t0.Load())
	if res.Sent > 0 {
		res.SendSpan = max(r.lastSent-t0, 0)
	}
	if res.Answered > 0 {
		res.Span = max(last-t0, 0)
	}
	return res
}

// Lost is the number of requests sent without an answer.
func (r Result) Lost() int { return r.Sent - r.Answered }

// Percentile is the p-th percentile (0 < p ≤ 1, nearest rank) of the
// latencies; 0 without any.
func (r Result) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile is the p-th percentile (0 < p ≤ 1, nearest rank) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Throughput is answers per second from the first send to the last
// answer.
func (r Result) Throughput() float64 {
	if r.Span <= 0 {
		return 0
	}
	return float64(r.Answered) / r.Span.Seconds()
}

// Offered is requests sent per second, first send to last.
func (r Result) Offered() float64 {
	if r.SendSpan <= 0 {
		return 0
	}
	return float64(r.Sent) / r.SendSpan.Seconds()
}
