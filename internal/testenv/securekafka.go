package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/certless/certless/kafka"
)

// SecureListener is the real Kafka broker's SASL_SSL listener that
// scripts/services.sh starts next to the plaintext one: SCRAM-SHA-512 over
// TLS with a throwaway CA, and the standard KRaft authorizer denying what no
// ACL allows. AdminUser is a super user there, for tests that create users,
// topics and ACLs.
//
// Read from the environment that `scripts/services.sh env` prints:
//
//	CERTLESS_TEST_KAFKA_SECURE          host:port of the SASL_SSL listener
//	CERTLESS_TEST_KAFKA_CA              PEM file of the CA that signed the broker
//	CERTLESS_TEST_KAFKA_ADMIN_USER      SCRAM-SHA-512 super user
//	CERTLESS_TEST_KAFKA_ADMIN_PASSWORD  its password
type SecureListener struct {
	Addr          string
	CAFile        string
	AdminUser     string
	AdminPassword string
}

// SecureKafka returns the secured listener of the real Kafka, or skips t
// (fails it under CI=true) when the environment does not name one.
func SecureKafka(t testing.TB) SecureListener {
	t.Helper()
	s := SecureListener{
		Addr:          strings.TrimSpace(os.Getenv("CERTLESS_TEST_KAFKA_SECURE")),
		CAFile:        strings.TrimSpace(os.Getenv("CERTLESS_TEST_KAFKA_CA")),
		AdminUser:     strings.TrimSpace(os.Getenv("CERTLESS_TEST_KAFKA_ADMIN_USER")),
		AdminPassword: os.Getenv("CERTLESS_TEST_KAFKA_ADMIN_PASSWORD"),
	}
	for _, v := range [][2]string{
		{"CERTLESS_TEST_KAFKA_SECURE", s.Addr},
		{"CERTLESS_TEST_KAFKA_CA", s.CAFile},
		{"CERTLESS_TEST_KAFKA_ADMIN_USER", s.AdminUser},
		{"CERTLESS_TEST_KAFKA_ADMIN_PASSWORD", s.AdminPassword},
	} {
		if v[1] == "" {
			Require(t, "Apache Kafka (SASL_SSL)", v[0]+" is not set")
		}
	}
	if _, err := os.Stat(s.CAFile); err != nil {
		Require(t, "Apache Kafka (SASL_SSL)", "CA file: "+err.Error())
	}
	// Logged so `go test -v` output shows which tests used the secured
	// listener (make test counts these lines).
	t.Logf("real secured Kafka at %s (SASL_SSL, SCRAM-SHA-512, CA %s)", s.Addr, s.CAFile)
	return s
}

// ProduceDirect sends one produce request as cfg's user straight to the
// leader of partition 0 of topic (the test cluster's only broker, id 1),
// without a metadata lookup (which hides topics the user may not
// describe), and returns the broker's answer.
func ProduceDirect(ctx context.Context, cfg kafka.Config, topic string) error {
	d, err := cfg.Dialer()
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.Brokers[0])
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	conn, err := d.DialPartition(ctx, "tcp", cfg.Brokers[0], kafkago.Partition{
		Topic: topic, ID: 0, Leader: kafkago.Broker{Host: host, Port: n, ID: 1},
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.WriteMessages(kafkago.Message{Key: []byte("k"), Value: []byte("probe")})
	return err
}

// WaitProduce waits, for at most 30 s, until cfg's user can (allowed) or
// cannot (refused with TOPIC_AUTHORIZATION_FAILED) produce to topic: ACL
// changes reach the broker through its metadata log.
func WaitProduce(ctx context.Context, t testing.TB, cfg kafka.Config, topic string, allowed bool) {
	t.Helper()
	Eventually(ctx, t, fmt.Sprintf("%s producing to %s, want allowed=%v", cfg.SASL.Username, topic, allowed), 30*time.Second, func() error {
		err := ProduceDirect(ctx, cfg, topic)
		switch {
		case allowed && err == nil, !allowed && errors.Is(err, kafkago.TopicAuthorizationFailed):
			return nil
		case err == nil:
			return errors.New("produce was allowed")
		}
		return err
	})
}

// UntrustedCA writes a fresh self-signed CA certificate, one that signed
// nothing the secured cluster has, and returns its path.
func UntrustedCA(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "not the certless test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitACLs waits until the cluster lists want ACLs of principal. The
// authorizer applies ACL changes from the metadata log after the admin call
// returns, so a count read once right after a change can be stale.
func WaitACLs(ctx context.Context, t testing.TB, admin kafka.Config, principal string, want int) {
	t.Helper()
	Eventually(ctx, t, fmt.Sprintf("%d ACLs of User:%s", want, principal), 30*time.Second, func() error {
		acls, err := kafka.DescribeAgencyACLs(ctx, admin, principal)
		if err != nil {
			return err
		}
		if len(acls) != want {
			return fmt.Errorf("%d ACLs of User:%s, want %d", len(acls), principal, want)
		}
		return nil
	})
}
