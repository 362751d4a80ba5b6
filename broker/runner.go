package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/fault"
)

// Consumer is the input side of the transport: a consumer group member.
type Consumer interface {
	// Fetch blocks for the next message.
	Fetch(ctx context.Context) (Message, error)
	// Commit marks msgs, and everything before each in its partition, as
	// consumed by the group.
	Commit(ctx context.Context, msgs ...Message) error
}

// Producer is the output side of the transport.
type Producer interface {
	// Produce returns once every output is acknowledged by the cluster.
	Produce(ctx context.Context, outs ...Output) error
}

// Runner consumes messages, handles them concurrently, publishes their
// outputs and commits offsets — in one place, in offset order per partition,
// and only after a message's outputs are published.
type Runner struct {
	Consumer Consumer
	Producer Producer
	Handler  Handler
	// InFlight bounds the messages handled at once (backpressure): when the
	// handler or the store slows, fetching waits. Default 64.
	InFlight int
	// DrainTimeout bounds how long shutdown waits for in-flight messages;
	// what has not finished by then is left uncommitted and will be
	// redelivered. Default 10s.
	DrainTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between retries of a message
	// whose handling or publishing failed transiently.
	RetryMin, RetryMax time.Duration
	Log                *zap.Logger
	// OnCommit, when set, is told every committed message (tests, metrics).
	OnCommit func(Message)
}

// fetchErrorPause is the pause after a transient fetch error.
const fetchErrorPause = 10 * time.Millisecond

// Run consumes until ctx is cancelled, then stops fetching, drains what is
// in flight, commits it and returns nil. A transient fetch error is
// logged (at most once a second) and fetched again after fetchErrorPause:
// the consumer heals by itself when the cluster answers again. Run returns an error only when the transport
// fails in a way retrying cannot fix (an error classified permanent:
// the consumer closed, access refused).
func (r *Runner) Run(ctx context.Context) error {
	inFlight := r.InFlight
	if inFlight <= 0 {
		inFlight = 64
	}
	drain := r.DrainTimeout
	if drain <= 0 {
		drain = 10 * time.Second
	}
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}

	// Work runs on its own context so that cancelling ctx stops fetching
	// but lets in-flight messages finish; it is cancelled after the drain
	// timeout.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	tr := newTracker()
	done := make(chan Message, inFlight)
	commitErr := make(chan error, 1)
	var committer sync.WaitGroup
	committer.Add(1)
	go func() {
		defer committer.Done()
		commitErr <- r.commitLoop(workCtx, tr, done)
	}()

	sem := make(chan struct{}, inFlight)
	var workers sync.WaitGroup
	var fetchErr error
	fetchFailures, lastFetchWarn := 0, time.Time{}
fetch:
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break fetch
		}
		m, err := r.Consumer.Fetch(ctx)
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				break fetch
			}
			if fault.IsPermanent(err) {
				fetchErr = fmt.Errorf("fetch: %w", err)
				break fetch
			}
			// A Kafka node or the group coordinator is away (a node died,
			// leadership moves): the consumer heals by itself, with its
			// own backoff, and reports each failed attempt of each
			// partition through Fetch, queued among the messages. So
			// fetch again at once (a short pause bounds a busy loop): a
			// longer wait per report would leave the healthy partitions'
			// messages queued behind stale reports. Nothing is lost:
			// in-flight messages go on, and what is not committed is
			// delivered again.
			fetchFailures++
			if now := time.Now(); now.Sub(lastFetchWarn) >= time.Second {
				log.Warn("fetch failed; fetching again", zap.Int("failures", fetchFailures), zap.Error(err))
				lastFetchWarn = now
			}
			if !r.wait(ctx, fetchErrorPause) {
				break fetch
			}
			continue
		}
		if fetchFailures > 0 {
			log.Info("fetching again after failures", zap.Int("failures", fetchFailures))
			fetchFailures = 0
		}
		tr.add(m)
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer func() { <-sem }()
			if r.process(workCtx, log, m) {
				done <- m
			}
		}()
	}

	// Shutdown: stop consuming (done above), drain in-flight work, commit.
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drain):
		log.Warn("drain timeout: abandoning in-flight messages; they will be redelivered")
		cancelWork()
		<-drained
	}
	close(done)
	committer.Wait()
	if err := <-commitErr; err != nil && fetchErr == nil {
		return err
	}
	return fetchErr
}

// process handles and publishes one message and reports whether it may be
// committed. The handler answers every message within its own retry bound
// (see Retry), so an error here means the answer could not be recorded or
// published: the decision store or Kafka itself is down, which no message
// can cause. That is retried with capped backoff until it is back or ctx
// ends; the operator sees it on /readyz and in the failure metrics.
func (r *Runner) process(ctx context.Context, log *zap.Logger, m Message) bool {
	backoff, maxBackoff := r.retryMin(), r.retryMax()
	for attempt := 1; ; attempt++ {
		res, err := r.Handler.Handle(ctx, m)
		if err == nil {
			err = r.Producer.Produce(ctx, res.Outputs...)
			if err == nil {
				return true
			}
			err = fmt.Errorf("publish: %w", err)
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("could not record or publish an answer; will retry",
			zap.String("topic", m.Topic), zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset),
			zap.Int("attempt", attempt), zap.Duration("backoff", backoff), zap.Error(err))
		if !r.wait(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (r *Runner) retryMin() time.Duration {
	if r.RetryMin <= 0 {
		return 50 * time.Millisecond
	}
	return r.RetryMin
}

func (r *Runner) retryMax() time.Duration {
	if r.RetryMax <= 0 {
		return 5 * time.Second
	}
	return r.RetryMax
}

// wait waits d and reports whether ctx is still alive.
func (r *Runner) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Runner) commitLoop(ctx context.Context, tr *tracker, done <-chan Message) error {
	// uncommitted holds, per partition, the newest message whose commit
	// failed (a Kafka node died, the coordinator moved): it is committed
	// again with the next batch, and once more at the end. A failed commit
	// loses nothing — the messages are redelivered and their stored
	// receipts re-emitted — so only one still failing at the end is
	// reported.
	uncommitted := map[partKey]Message{}
	var lastErr error
	commit := func(advanced map[partKey]Message) {
		for k, c := range uncommitted {
			if _, newer := advanced[k]; !newer {
				advanced[k] = c
			}
		}
		batch := make([]Message, 0, len(advanced))
		for _, c := range advanced {
			batch = append(batch, c)
		}
		if err := r.Consumer.Commit(ctx, batch...); err != nil {
			maps.Copy(uncommitted, advanced)
			if !errors.Is(err, context.Canceled) {
				lastErr = fmt.Errorf("commit: %w", err)
			}
			return
		}
		clear(uncommitted)
		lastErr = nil
		if r.OnCommit != nil {
			for _, c := range batch {
				r.OnCommit(c)
			}
		}
	}
	for m := range done {
		// Group every completion already waiting into one commit request:
		// the newest contiguous offset of each partition.
		advanced := map[partKey]Message{}
		if c, ok := tr.finish(m); ok {
			advanced[partKey{c.Topic, c.Partition}] = c
		}
	drain:
		for {
			select {
			case m, ok := <-done:
				if !ok {
					break drain
				}
				if c, ok := tr.finish(m); ok {
					advanced[partKey{c.Topic, c.Partition}] = c
				}
			default:
				break drain
			}
		}
		if len(advanced) == 0 && len(uncommitted) == 0 {
			continue
		}
		commit(advanced)
	}
	if len(uncommitted) > 0 {
		commit(map[partKey]Message{})
	}
	if len(uncommitted) > 0 {
		return lastErr
	}
	return nil
}

// tracker knows, per partition, which fetched offsets are still in flight,
// so commits only ever cover a contiguous prefix of finished messages.
type tracker struct {
	mu    sync.Mutex
	parts map[partKey]*partState
}

type partKey struct {
	topic     string
	partition int
}

type partState struct {
	pending []int64 // fetched offsets in order, not yet committed
	done    map[int64]Message
}

func newTracker() *tracker { return &tracker{parts: map[partKey]*partState{}} }

func (t *tracker) add(m Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := partKey{m.Topic, m.Partition}
	ps := t.parts[k]
	if ps == nil {
		ps = &partState{done: map[int64]Message{}}
		t.parts[k] = ps
	}
	ps.pending = append(ps.pending, m.Offset)
}

// finish marks m done and returns the last message of the contiguous done
// prefix of its partition, if the prefix grew.
func (t *tracker) finish(m Message) (Message, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := t.parts[partKey{m.Topic, m.Partition}]
	if ps == nil {
		return Message{}, false
	}
	ps.done[m.Offset] = m
	var last Message
	advanced := false
	for len(ps.pending) > 0 {
		d, ok := ps.done[ps.pending[0]]
		if !ok {
			break
		}
		delete(ps.done, ps.pending[0])
		ps.pending = ps.pending[1:]
		last, advanced = d, true
	}
	return last, advanced
}
