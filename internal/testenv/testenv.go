// Package testenv connects tests to the real services that scripts/services.sh
// starts: an Apache Kafka broker (KRaft) and a PostgreSQL cluster.
//
// The services are found through environment variables that the script
// prints and `make test` exports:
//
//	CERTLESS_TEST_KAFKA     comma-separated bootstrap brokers, e.g. 127.0.0.1:19092
//	CERTLESS_TEST_POSTGRES  DSN of a role allowed to create databases and roles
//
// A test that needs a missing service is skipped on a developer's machine and
// fails under CI=true: CI must never pass by skipping the real parts.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips t, or fails it under CI, because the named service is missing.
func Require(t testing.TB, service, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true but is not available: %s (start it with scripts/services.sh up)", service, why)
	}
	t.Skipf("%s not available (%s); run `make test` or scripts/services.sh up", service, why)
}

// KafkaBrokers returns the bootstrap brokers of the real Kafka cluster.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv("CERTLESS_TEST_KAFKA"))
	if v == "" {
		Require(t, "Apache Kafka", "CERTLESS_TEST_KAFKA is not set")
	}
	// Logged so `go test -v` output shows which tests used the real broker.
	t.Logf("real Kafka at %s", v)
	return strings.Split(v, ",")
}

// PostgresAdminDSN returns the DSN of the test cluster's administrative role.
func PostgresAdminDSN(t testing.TB) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv("CERTLESS_TEST_POSTGRES"))
	if v == "" {
		Require(t, "PostgreSQL", "CERTLESS_TEST_POSTGRES is not set")
	}
	// Logged (without the password) so `go test -v` output shows which
	// tests used the real cluster.
	where := "(unparsable DSN)"
	if u, err := url.Parse(v); err == nil {
		where = u.Host + u.Path
	}
	t.Logf("real PostgreSQL at %s", where)
	return v
}

// PostgresDB creates a fresh, empty database for t, drops it when t ends and
// returns a DSN for it with the administrative role.
func PostgresDB(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		Require(t, "PostgreSQL", "connect: "+err.Error())
	}
	defer conn.Close(ctx)
	name := "t_" + Random(8)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return WithDatabase(t, admin, name)
}

// WithDatabase returns dsn with its database replaced by db.
func WithDatabase(t testing.TB, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("CERTLESS_TEST_POSTGRES must be a postgres:// URL: %v", err)
	}
	u.Path = "/" + db
	return u.String()
}

// Random returns n random bytes as lower-case hex, for unique test names.
func Random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Chromium returns the headless browser the browser tests drive (Debian's
// chromium, installed by scripts/services.sh up), or skips t (fails it
// under CI) when scripts/services.sh env did not name one.
func Chromium(t testing.TB) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv("CERTLESS_TEST_CHROMIUM"))
	if v == "" {
		Require(t, "Chromium", "CERTLESS_TEST_CHROMIUM is not set")
	}
	t.Logf("real Chromium at %s", v)
	return v
}
