package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/client"
	"github.com/certless/certless/exchange"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
)

// startTestService starts the broker of cfg and stops it, checking a clean
// shutdown, when the test ends.
func startTestService(ctx context.Context, t *testing.T, cfg *config.Config, opts serviceOptions) *service {
	t.Helper()
	return startLoggedService(ctx, t, cfg, opts, zap.NewNop())
}

// watchReceipts starts watching agency's receipt topic on svc's cluster,
// through the agency's client as `certless request` builds it; both close
// when t ends.
func watchReceipts(ctx context.Context, t *testing.T, cfg *config.Config, svc *service, agency string) *client.Watcher {
	t.Helper()
	c, err := newAgencyClient(ctx, cfg, agency, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Kafka = svc.kafka
	t.Cleanup(func() { c.Close() })
	w, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// startLoggedService is startTestService logging to log.
func startLoggedService(ctx context.Context, t *testing.T, cfg *config.Config, opts serviceOptions, log *zap.Logger) *service {
	t.Helper()
	svc, err := startService(ctx, cfg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	})
	return svc
}

func runScenarioTest(ctx context.Context, t *testing.T, cfg *config.Config, opts serviceOptions) {
	t.Helper()
	svc := startTestService(ctx, t, cfg, opts)
	rep, err := runScenarios(ctx, cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.print(&out)
	t.Log("\n" + out.String())
	if rep.failed() > 0 {
		t.Fatalf("%d scenarios failed", rep.failed())
	}
	if rep.dead != 3 || rep.receipts < 15 {
		t.Fatalf("receipts %d, dead letters %d", rep.receipts, rep.dead)
	}
	checkLog(ctx, t, cfg, svc, rep)
}

// realConfig points the dev configuration at the real Kafka and PostgreSQL:
// unique topics and group, a fresh decision-store database, and police
// records in PostgreSQL read through a SELECT-only role.
func realConfig(ctx context.Context, t *testing.T) *config.Config {
	t.Helper()
	cfg, _ := realConfigAndRecords(ctx, t)
	return cfg
}

// realConfigAndRecords is realConfig that also returns the administrative
// DSN of the police records database, for tests that add records.
func realConfigAndRecords(ctx context.Context, t *testing.T) (*config.Config, string) {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	decisions := testenv.PostgresDB(t)
	recordsAdmin := testenv.PostgresDB(t)
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlsource.SeedThrough(ctx, recordsAdmin, devPersons, devSeed, nil, time.Now().In(exchange.Beijing), nil); err != nil {
		t.Fatalf("seed PostgreSQL records: %v", err)
	}
	role, password := "reader_"+testenv.Random(4), testenv.Random(8)
	if err := sqlsource.CreateReaderRole(ctx, recordsAdmin, role, password); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(recordsAdmin)
	u.User = url.UserPassword(role, password)
	suffix := testenv.Random(4)
	cfg.Kafka.Embedded = false
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.TopicPrefix = "t" + suffix + "."
	cfg.Kafka.GroupID = "certless-" + suffix
	cfg.Store.DSN = decisions
	// The provincial source on the real PostgreSQL holds every resident;
	// the prefecture sources of dev (SQLite files) are left out here, and
	// TestRealKafkaThreeLevelRouting seeds them in PostgreSQL.
	cfg.Adapters = cfg.Adapters[:1]
	cfg.Adapters[0].Options = map[string]any{"dsn": u.String()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Logf("real Kafka at %v, real PostgreSQL at %s (decisions) and %s (records, role %s)", brokers, redactDSN(decisions), redactDSN(recordsAdmin), role)
	return cfg, recordsAdmin
}

// TestRealKafkaScenarios runs every scenario of the demo — every query
// type answered, not found, denied, every rejection and dead-letter reason,
// redelivery and replay — on the real Apache Kafka and PostgreSQL.
func TestRealKafkaScenarios(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	runScenarioTest(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
}

// TestRealKafkaScenariosSecure runs the demo's scenarios with the broker on
// the real Kafka's SASL_SSL listener (SCRAM-SHA-512, the throwaway CA of
// scripts/services.sh, the standard KRaft authorizer), configured as an
// operator would: TLS CA file, SCRAM user, the password from an
// environment variable.
func TestRealKafkaScenariosSecure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sec := testenv.SecureKafka(t)
	cfg := realConfig(ctx, t)
	cfg.Kafka.Brokers = []string{sec.Addr}
	cfg.Kafka.TLS = &config.TLS{Enabled: true, CAFile: sec.CAFile}
	cfg.Kafka.SASL = &config.SASL{Mechanism: "SCRAM-SHA-512", Username: sec.AdminUser, PasswordEnv: "CERTLESS_TEST_SASL_PASSWORD"}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path, func(k string) string {
		if k == "CERTLESS_TEST_SASL_PASSWORD" {
			return sec.AdminPassword
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Kafka.SASL.Password != sec.AdminPassword {
		t.Fatal("the SASL password was not read from its environment variable")
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), sec.AdminPassword) {
		t.Fatal("the SASL password was written into the config file")
	}
	runScenarioTest(ctx, t, loaded, serviceOptions{httpAddr: "127.0.0.1:0"})
}

// TestRealKafkaServeBadCredentialsSaysWhy: a broker started on the SASL_SSL
// listener with a wrong password, or a CA that did not sign the cluster's
// certificate, stops at once with an error naming the cause and the address.
func TestRealKafkaServeBadCredentialsSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sec := testenv.SecureKafka(t)
	otherCA := testenv.UntrustedCA(t)
	for name, c := range map[string]struct {
		tls  config.TLS
		pass string
		want string
	}{
		"wrong password": {config.TLS{Enabled: true, CAFile: sec.CAFile}, sec.AdminPassword + "-wrong", `SASL SCRAM-SHA-512 authentication as "` + sec.AdminUser + `" failed`},
		"untrusted CA":   {config.TLS{Enabled: true, CAFile: otherCA}, sec.AdminPassword, "certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := realConfig(ctx, t)
			cfg.Kafka.Brokers = []string{sec.Addr}
			cfg.Kafka.TLS = &c.tls
			cfg.Kafka.SASL = &config.SASL{Mechanism: "SCRAM-SHA-512", Username: sec.AdminUser, Password: c.pass}
			svc, err := startService(ctx, cfg, zap.NewNop(), serviceOptions{httpAddr: "127.0.0.1:0"})
			if err == nil {
				svc.close()
				t.Fatal("the broker started")
			}
			for _, want := range []string{sec.Addr, c.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("start error does not name %q:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), c.pass) {
				t.Error("the error carries the password")
			}
			t.Logf("%s: %v", name, err)
		})
	}
}
