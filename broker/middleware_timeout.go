package broker

import (
	"context"
	"time"
)

// Timeout bounds how long handling one message may take. A handler that
// runs out of time returns its context error, which the runner retries.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next.Handle(ctx, m)
		})
	}
}
