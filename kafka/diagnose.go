package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
)

// diagnoseTimeout bounds Diagnose's steps for one broker when Ping calls it.
const diagnoseTimeout = 5 * time.Second

// Diagnose connects to each broker of cfg one step at a time: TCP, the TLS
// handshake (when cfg.TLS is enabled), SASL authentication (when a mechanism
// is set) and a metadata request. It returns nil when every broker passes
// every step, else one error per failing broker that names the broker's
// address and the step that failed, e.g.
//
//	kafka: broker 127.0.0.1:9094: TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority
//	kafka: broker 127.0.0.1:9094: SASL SCRAM-SHA-512 authentication as "agency" failed: [58] SASL Authentication Failed: ...
//
// kafka-go alone often reports such failures without the address, or as a
// bare "unexpected EOF" when the broker hangs up. Ping calls Diagnose for a
// broker it cannot connect to.
func Diagnose(ctx context.Context, cfg Config) error {
	tlsConf, mech, err := cfg.security()
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range cfg.Brokers {
		if err := diagnoseBroker(ctx, cfg, tlsConf, mech, addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// explainDial returns dialErr, the failure to connect to addr, as Diagnose
// explains it, or with the address added when Diagnose finds nothing wrong
// (a transient failure) or ctx has ended.
func explainDial(ctx context.Context, cfg Config, addr string, dialErr error) error {
	if ctx.Err() == nil {
		if tlsConf, mech, err := cfg.security(); err == nil {
			dctx, cancel := context.WithTimeout(ctx, diagnoseTimeout)
			err := diagnoseBroker(dctx, cfg, tlsConf, mech, addr)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("kafka: broker %s: %w", addr, dialErr)
}

func diagnoseBroker(ctx context.Context, cfg Config, tlsConf *tls.Config, mech sasl.Mechanism, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("kafka: broker %s: cannot connect: %w", addr, err)
	}
	conn := raw
	if tlsConf != nil {
		c := tlsConf.Clone()
		if c.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			c.ServerName = host
		}
		tc := tls.Client(raw, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			if isHangUp(err) {
				err = fmt.Errorf("%w (is this listener TLS? a plaintext one hangs up on a TLS client)", err)
			}
			return fmt.Errorf("kafka: broker %s: TLS handshake failed: %w", addr, err)
		}
		conn = tc
	}
	// kafka-go does the Kafka protocol on the connection made above: its
	// SASL exchange (ApiVersions, SaslHandshake, SaslAuthenticate) and a
	// metadata request.
	dialer := &kafka.Dialer{
		ClientID:      cfg.clientID(),
		Timeout:       dialTimeout,
		SASLMechanism: mech,
		DialFunc: func(context.Context, string, string) (net.Conn, error) {
			return conn, nil
		},
	}
	kc, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		conn.Close()
		if mech != nil {
			if isHangUp(err) && tlsConf == nil {
				err = fmt.Errorf("%w (does this listener need TLS?)", err)
			}
			return fmt.Errorf("kafka: broker %s: SASL %s authentication as %q failed: %w",
				addr, mech.Name(), cfg.SASL.Username, err)
		}
		return fmt.Errorf("kafka: broker %s: %w", addr, err)
	}
	defer kc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = kc.SetDeadline(dl)
	}
	if _, err := kc.Brokers(); err != nil {
		if isHangUp(err) {
			switch {
			case mech == nil && tlsConf == nil:
				err = fmt.Errorf("%w (does this listener need TLS or SASL?)", err)
			case mech == nil:
				err = fmt.Errorf("%w (does this listener need SASL?)", err)
			}
		}
		return fmt.Errorf("kafka: broker %s: metadata request failed: %w", addr, err)
	}
	return nil
}

// isHangUp reports whether err is the peer closing the connection.
func isHangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// Explain returns err, a failure talking to the cluster, with what
// Diagnose finds wrong with the connection in front (a wrong password, an
// untrusted certificate, a refused address), or err alone when the
// connection is fine. kafka-go's admin and produce errors often say only
// "unexpected EOF"; Explain says why.
func Explain(ctx context.Context, cfg Config, err error) error {
	if err == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diagnoseTimeout)
	defer cancel()
	if d := Diagnose(dctx, cfg); d != nil {
		return fmt.Errorf("%v: %w", d, err)
	}
	return err
}

// Likely causes of a failure to reach the cluster, as [Cause] names them.
const (
	CauseRefused  = "refused"
	CauseTimedOut = "timed out"
	CauseTLS      = "TLS"
	CauseSASL     = "SASL"
)

// Cause names the likely cause of err, a failure to reach the cluster (from
// [Ping] or [Diagnose]): [CauseRefused], [CauseTimedOut], [CauseTLS],
// [CauseSASL], or "" when it is none of these.
func Cause(err error) string {
	var (
		ne        net.Error
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
	)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, kafka.SASLAuthenticationFailed), strings.Contains(msg, "SASL"):
		return CauseSASL
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &record), errors.As(err, &verify), strings.Contains(msg, "TLS handshake failed"):
		return CauseTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return CauseTimedOut
	}
	return ""
}

// causeHints says what to check for each cause.
var causeHints = map[string]string{
	CauseRefused:  "connection refused: is Kafka running at that address, and is kafka.brokers right?",
	CauseTimedOut: "timed out: a wrong host, a firewall dropping the connection, or a cluster still starting",
	CauseTLS:      "TLS handshake failed: check kafka.tls (ca_file, server_name) and that the listener speaks TLS",
	CauseSASL:     "SASL authentication failed: check kafka.sasl (mechanism, username, password)",
}

// AwaitOptions tune [Await].
type AwaitOptions struct {
	// Within bounds the whole wait (15s when 0).
	Within time.Duration
	// Deadline, when set, ends the wait earlier than Within (the caller
	// counts Within from before the call); errors still name Within.
	Deadline time.Time
	// Retrying, when set, is called after each failed attempt, before
	// the pause that precedes the next one.
	Retrying func(attempt int, elapsed time.Duration, err error)
}

// Await calls [Ping] until one broker of cfg answers, ctx ends or
// opts.Within passes, pausing between attempts (250ms, doubling, at most
// 2s). Its error names every address and the likely cause ([Cause]) of the
// last failure, e.g.
//
//	kafka: no broker reachable at 127.0.0.1:9092 within 15s (connection refused: is Kafka running at that address, and is kafka.brokers right?): ...
func Await(ctx context.Context, cfg Config, opts AwaitOptions) error {
	within := opts.Within
	if within <= 0 {
		within = 15 * time.Second
	}
	start := time.Now()
	deadline := start.Add(within)
	if !opts.Deadline.IsZero() && opts.Deadline.Before(deadline) {
		deadline = opts.Deadline
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	pause := 250 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(wctx, diagnoseTimeout)
		perr := Ping(actx, cfg)
		acancel()
		if perr == nil {
			return nil
		}
		// An attempt cut short by the end of the wait says less than the
		// one before it.
		if err == nil || wctx.Err() == nil {
			err = perr
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka: waiting for %s: %w", strings.Join(cfg.Brokers, ", "), ctx.Err())
		}
		if wctx.Err() == nil && opts.Retrying != nil {
			opts.Retrying(attempt, time.Since(start), err)
		}
		select {
		case <-wctx.Done():
		case <-time.After(pause):
			pause = min(2*pause, 2*time.Second)
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka: waiting for %s: %w", strings.Join(cfg.Brokers, ", "), ctx.Err())
		}
		hint := causeHints[Cause(err)]
		if hint == "" {
			hint = "no broker answered"
		}
		return fmt.Errorf("kafka: no broker reachable at %s within %s (%s): %w", strings.Join(cfg.Brokers, ", "), within, hint, err)
	}
}
