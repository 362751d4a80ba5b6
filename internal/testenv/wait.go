package testenv

import (
	"context"
	"testing"
	"time"
)

// Eventually polls cond every 100 ms until it returns nil, and fails t
// with its last error when within has passed or ctx ends first. It is how a
// test waits on something it observes (a broker picking up an ACL, a
// credential, a metadata change), never a sleep standing in for it.
func Eventually(ctx context.Context, t testing.TB, what string, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (last: %v)", what, ctx.Err(), err)
		case <-deadline.C:
			t.Fatalf("%s: not within %v (last: %v)", what, within, err)
		case <-tick.C:
		}
	}
}
