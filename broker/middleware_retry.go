package broker

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/fault"
)

// Exhausted answers a message whose handling failed transiently until the
// retry bound ran out (err is the last failure): Pipeline.Fail with outcome
// unavailable. An error means even that answer could not be recorded.
type Exhausted func(ctx context.Context, m Message, attempts int, err error) (Result, error)

// RetryPolicy bounds the attempts at one message. The zero value takes the
// defaults shown.
type RetryPolicy struct {
	// MaxAttempts is the most attempts per message; default 4.
	MaxAttempts int
	// Window bounds the time from the first attempt: no attempt starts
	// after it; default 30s. With the per-attempt timeout it bounds how
	// long one message can hold its partition and an in-flight slot.
	Window time.Duration
	// BackoffMin and BackoffMax shape the wait between attempts (doubling);
	// defaults 100ms and 5s.
	BackoffMin, BackoffMax time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.Window <= 0 {
		p.Window = 30 * time.Second
	}
	if p.BackoffMin <= 0 {
		p.BackoffMin = 100 * time.Millisecond
	}
	if p.BackoffMax < p.BackoffMin {
		p.BackoffMax = max(5*time.Second, p.BackoffMin)
	}
	return p
}

// Retry retries a handler's transient failures within policy and hands
// what outlives the bound to exhausted, so no message is retried forever.
// A permanent error (which handlers normally turn into a rejection
// themselves) goes to exhausted at once. Each failed attempt is logged
// once, here, at warn; onFailure (may be nil) is told of each, for metrics.
func Retry(policy RetryPolicy, exhausted Exhausted, log *zap.Logger, onFailure func(Message, error)) Middleware {
	policy = policy.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
			start := time.Now()
			backoff := policy.BackoffMin
			for attempt := 1; ; attempt++ {
				res, err := next.Handle(ctx, m)
				if err == nil {
					return res, nil
				}
				if ctx.Err() != nil {
					// Shutting down: leave the message uncommitted; it is
					// redelivered to whoever takes the partition.
					return Result{}, err
				}
				if onFailure != nil {
					onFailure(m, err)
				}
				permanent := fault.IsPermanent(err)
				last := permanent || attempt >= policy.MaxAttempts || time.Since(start)+backoff > policy.Window
				log.Warn("message handling failed", zap.String("topic", m.Topic), zap.Int("partition", m.Partition),
					zap.Int64("offset", m.Offset), zap.Int("attempt", attempt), zap.Bool("permanent", permanent),
					zap.Bool("last", last), zap.Error(err))
				if last {
					return exhausted(ctx, m, attempt, fmt.Errorf("after %d attempts in %s: %w", attempt, time.Since(start).Round(time.Millisecond), err))
				}
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
					t.Stop()
					return Result{}, ctx.Err()
				case <-t.C:
				}
				backoff = min(2*backoff, policy.BackoffMax)
			}
		})
	}
}
