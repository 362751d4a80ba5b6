package kafka_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/kafka"
)

// TestAwaitNamesAddressAndCause: Await returns at once when the real Kafka
// answers (plaintext, and SASL_SSL with the right credentials); otherwise,
// after its bound, an error naming the address and the likely cause —
// refused (nothing listens), timed out (a listener that never answers),
// TLS (an untrusted CA), SASL (a wrong password) — after retrying.
func TestAwaitNamesAddressAndCause(t *testing.T) {
	plain := testenv.KafkaBrokers(t)
	sec := testenv.SecureKafka(t)
	ctx := context.Background()

	for _, c := range []struct {
		name string
		cfg  kafka.Config
	}{
		{"plaintext", kafka.Config{Brokers: plain}},
		{"SASL_SSL", secureConfig(sec, sec.AdminUser, sec.AdminPassword)},
	} {
		start := time.Now()
		if err := kafka.Await(ctx, c.cfg, kafka.AwaitOptions{Within: 10 * time.Second}); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		t.Logf("%s: reachable after %v", c.name, time.Since(start).Round(time.Millisecond))
	}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	// A listener that accepts and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	untrusted := secureConfig(sec, sec.AdminUser, sec.AdminPassword)
	untrusted.TLS.CAFile = testenv.UntrustedCA(t)

	const within = 2 * time.Second
	for _, c := range []struct {
		name, cause, hint string
		cfg               kafka.Config
		// retries: whether an attempt fails before the bound (one
		// that never answers may take it all).
		retries bool
	}{
		{"nothing listens", kafka.CauseRefused, "connection refused", kafka.Config{Brokers: []string{closedAddr}}, true},
		{"never answers", kafka.CauseTimedOut, "timed out", kafka.Config{Brokers: []string{silent.Addr().String()}}, false},
		{"untrusted CA", kafka.CauseTLS, "TLS handshake failed", untrusted, true},
		{"wrong password", kafka.CauseSASL, "SASL authentication failed", secureConfig(sec, sec.AdminUser, "not-"+sec.AdminPassword), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			attempts := 0
			start := time.Now()
			err := kafka.Await(ctx, c.cfg, kafka.AwaitOptions{Within: within, Retrying: func(attempt int, _ time.Duration, err error) {
				attempts = attempt
				if kafka.Cause(err) != c.cause {
					t.Errorf("attempt %d: cause %q, want %q: %v", attempt, kafka.Cause(err), c.cause, err)
				}
			}})
			took := time.Since(start)
			if err == nil {
				t.Fatal("Await succeeded")
			}
			msg := err.Error()
			want := "no broker reachable at " + c.cfg.Brokers[0] + " within " + within.String() + " (" + c.hint
			if !strings.Contains(msg, want) || kafka.Cause(err) != c.cause {
				t.Errorf("error %q\nwant it to contain %q and cause %q (got %q)", msg, want, c.cause, kafka.Cause(err))
			}
			if took < within || took > within+3*time.Second {
				t.Errorf("gave up after %v, want %v (plus the attempt in progress)", took, within)
			}
			if c.retries && attempts < 1 {
				t.Errorf("no retry reported within %v", within)
			}
			t.Logf("%s: %d attempts, gave up after %v: %v", c.name, attempts+1, took.Round(time.Millisecond), err)
		})
	}

	// Ending ctx ends the wait at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := kafka.Await(cctx, kafka.Config{Brokers: []string{closedAddr}}, kafka.AwaitOptions{Within: time.Minute}); err == nil ||
		!strings.Contains(err.Error(), "waiting for "+closedAddr) || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("with ctx ended: %v", err)
	}
}
