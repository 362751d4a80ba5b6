package testenv

import (
	"os"
	"strings"
	"testing"
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
