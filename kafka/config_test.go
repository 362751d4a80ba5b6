package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" for none
	}{
		{"plain", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "no brokers"},
		{"broker without port", func(c *Config) { c.Brokers = []string{"kafka"} }, "not host:port"},
		{"tls settings while disabled", func(c *Config) { c.TLS.CAFile = "ca.pem" }, "tls.enabled is false"},
		{"cert without key", func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: "c.pem"} }, "together"},
		{"sasl plain", func(c *Config) { c.SASL = SASL{Mechanism: MechanismPlain, Username: "u", Password: "p"} }, ""},
		{"sasl scram-512", func(c *Config) { c.SASL = SASL{Mechanism: MechanismSCRAMSHA512, Username: "u"} }, ""},
		{"sasl without user", func(c *Config) { c.SASL = SASL{Mechanism: MechanismSCRAMSHA256} }, "needs a username"},
		{"sasl unknown", func(c *Config) { c.SASL = SASL{Mechanism: "GSSAPI", Username: "u"} }, "unknown sasl mechanism"},
		{"sasl lower case", func(c *Config) { c.SASL = SASL{Mechanism: "plain", Username: "u"} }, "unknown sasl mechanism"},
		{"sasl user without mechanism", func(c *Config) { c.SASL = SASL{Username: "u"} }, "without a mechanism"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
			if err == nil {
				if _, err := c.Transport(); err != nil {
					t.Fatalf("Transport() = %v", err)
				}
				if _, err := c.Dialer(); err != nil {
					t.Fatalf("Dialer() = %v", err)
				}
			}
		})
	}
}

func TestConfigTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	ca := filepath.Join(dir, "ca.pem")
	cert := filepath.Join(dir, "client.pem")
	key := filepath.Join(dir, "client.key")
	for name, b := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := Config{
		Brokers:  []string{"kafka.example:9093"},
		ClientID: "agency-x",
		TLS:      TLS{Enabled: true, CAFile: ca, CertFile: cert, KeyFile: key, ServerName: "kafka.internal"},
		SASL:     SASL{Mechanism: MechanismSCRAMSHA256, Username: "u", Password: "p"},
	}
	tr, err := c.Transport()
	if err != nil {
		t.Fatalf("Transport: %v", err)
	}
	if tr.TLS == nil || tr.TLS.RootCAs == nil || len(tr.TLS.Certificates) != 1 || tr.TLS.ServerName != "kafka.internal" {
		t.Fatalf("transport TLS = %+v, want CA pool, one client certificate and the server name", tr.TLS)
	}
	if tr.SASL == nil || tr.SASL.Name() != MechanismSCRAMSHA256 || tr.ClientID != "agency-x" {
		t.Fatalf("transport SASL %v, client id %q", tr.SASL, tr.ClientID)
	}
	d, err := c.Dialer()
	if err != nil {
		t.Fatalf("Dialer: %v", err)
	}
	if d.TLS == nil || d.SASLMechanism == nil || d.SASLMechanism.Name() != MechanismSCRAMSHA256 {
		t.Fatalf("dialer TLS %v, SASL %v", d.TLS, d.SASLMechanism)
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.TLS.CAFile = bad
	if _, err := c.Transport(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("Transport with a bad CA file = %v", err)
	}
	c.TLS.CAFile = filepath.Join(dir, "missing.pem")
	if _, err := c.Dialer(); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("Dialer with a missing CA file = %v", err)
	}
}

func TestOptionBounds(t *testing.T) {
	c := Config{Brokers: []string{"127.0.0.1:9092"}}
	if _, err := NewProducer(c, ProducerOptions{BatchBytes: 1 << 20}); err == nil {
		t.Fatal("NewProducer accepted a 1 MiB batch, which the broker would refuse")
	}
	p, err := NewProducer(c, ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.w.BatchBytes != MaxBatchBytes || p.w.BatchTimeout != 2*time.Millisecond || p.w.Topic != "" {
		t.Fatalf("producer defaults: batch bytes %d, timeout %v, topic %q", p.w.BatchBytes, p.w.BatchTimeout, p.w.Topic)
	}
	p.Close()
	for name, o := range map[string]ConsumerOptions{
		"no group":           {Topics: []string{"t"}},
		"no topics":          {GroupID: "g"},
		"heartbeat too slow": {GroupID: "g", Topics: []string{"t"}, SessionTimeout: 6 * time.Second, HeartbeatInterval: 3 * time.Second},
		"fetch too large":    {GroupID: "g", Topics: []string{"t"}, MaxBytes: MaxFetchBytes + 1},
	} {
		if _, err := NewConsumer(c, o); err == nil {
			t.Errorf("NewConsumer(%s) accepted %+v", name, o)
		}
	}
	cons, err := NewConsumer(c, ConsumerOptions{GroupID: "g", Topics: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.r.Config()
	if cfg.CommitInterval != 0 || cfg.MaxBytes != 1<<20 || len(cfg.GroupTopics) != 2 || cfg.SessionTimeout < 6*time.Second {
		t.Fatalf("consumer config: commit interval %v, max bytes %d, topics %v, session %v",
			cfg.CommitInterval, cfg.MaxBytes, cfg.GroupTopics, cfg.SessionTimeout)
	}
	cons.Close()
}

// selfSigned returns a throwaway certificate and its key, PEM encoded.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "certless test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
