package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ping asks the brokers in cfg for cluster metadata and returns nil once one
// of them answers with at least one live broker. It does not retry.
func Ping(ctx context.Context, cfg Config) error {
	dialer, err := cfg.Dialer()
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range cfg.Brokers {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, explainDial(ctx, cfg, addr, err))
			continue
		}
		if d, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(d)
		}
		brokers, err := conn.Brokers()
		conn.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata from %s: %w", addr, err))
			continue
		}
		if len(brokers) == 0 {
			errs = append(errs, fmt.Errorf("metadata from %s lists no brokers", addr))
			continue
		}
		return nil
	}
	return fmt.Errorf("kafka: no broker answered: %w", errors.Join(errs...))
}

// WaitReady calls Ping until it succeeds or ctx ends, and returns the last
// Ping error with the context's.
func WaitReady(ctx context.Context, cfg Config) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := Ping(attempt, cfg)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
