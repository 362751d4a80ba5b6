package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
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
