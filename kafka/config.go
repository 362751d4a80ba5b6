package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms accepted in [SASL.Mechanism].
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// dialTimeout bounds connection set-up (TCP, TLS handshake, SASL).
const dialTimeout = 10 * time.Second

// Config says how to reach a Kafka cluster. The field names follow the
// `kafka` block of the service configuration (schemas/json/config.v1.json).
type Config struct {
	// Brokers are the bootstrap brokers as host:port.
	Brokers []string
	// ClientID names this process in broker logs and quotas; "certless"
	// when empty.
	ClientID string
	TLS      TLS
	SASL     SASL
}

// TLS configures TLS to the brokers. Files are PEM encoded.
type TLS struct {
	Enabled bool
	// CAFile verifies the brokers' certificates instead of the system pool.
	CAFile string
	// CertFile and KeyFile, both or neither, are the client certificate.
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string
	// InsecureSkipVerify disables certificate verification (tests only).
	InsecureSkipVerify bool
}

// SASL configures SASL authentication. An empty Mechanism means none.
type SASL struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username  string
	Password  string
}

// Validate reports the first problem that would stop c from connecting.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka: broker %q is not host:port: %w", b, err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("kafka: tls cert_file and key_file must be set together")
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		return errors.New("kafka: tls settings given but tls.enabled is false")
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			return errors.New("kafka: sasl username or password given without a mechanism")
		}
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if c.SASL.Username == "" {
			return fmt.Errorf("kafka: sasl %s needs a username", c.SASL.Mechanism)
		}
	default:
		return fmt.Errorf("kafka: unknown sasl mechanism %q (want %s, %s or %s)",
			c.SASL.Mechanism, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512)
	}
	return nil
}

// Transport builds the kafka-go transport used by writers and clients. The
// caller owns it and should call CloseIdleConnections when done.
func (c Config) Transport() (*kafka.Transport, error) {
	tlsConf, mech, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		ClientID:    c.clientID(),
		DialTimeout: dialTimeout,
		TLS:         tlsConf,
		SASL:        mech,
		// Topics created by another client become visible within seconds.
		MetadataTTL: 2 * time.Second,
	}, nil
}

// Dialer builds the kafka-go dialer used by readers and direct connections.
func (c Config) Dialer() (*kafka.Dialer, error) {
	tlsConf, mech, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      c.clientID(),
		Timeout:       dialTimeout,
		DualStack:     true,
		TLS:           tlsConf,
		SASLMechanism: mech,
	}, nil
}

func (c Config) clientID() string {
	if c.ClientID == "" {
		return "certless"
	}
	return c.ClientID
}

func (c Config) security() (*tls.Config, sasl.Mechanism, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	tlsConf, err := c.TLS.config()
	if err != nil {
		return nil, nil, err
	}
	mech, err := c.SASL.mechanism()
	if err != nil {
		return nil, nil, err
	}
	return tlsConf, mech, nil
}

func (t TLS) config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit opt-in, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: tls ca_file %s holds no PEM certificate", t.CAFile)
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: tls client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

func (s SASL) mechanism() (sasl.Mechanism, error) {
	switch s.Mechanism {
	case "":
		return nil, nil
	case MechanismPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case MechanismSCRAMSHA256:
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case MechanismSCRAMSHA512:
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("kafka: unknown sasl mechanism %q", s.Mechanism)
}
