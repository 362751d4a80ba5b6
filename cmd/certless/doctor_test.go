package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
	bkafka "github.com/certless/certless/kafka"
)

type doctorReport struct {
	OK     bool          `json:"ok"`
	Checks []doctorCheck `json:"checks"`
}

// runDoctorCLI writes cfg to a file and runs `certless --config FILE
// doctor --json` on it.
func runDoctorCLI(t *testing.T, cfg *config.Config) (int, doctorReport, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "--config", path, "doctor", "--json")
	var r doctorReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json: %v\n%s\nstderr: %s", err, out, errOut)
	}
	if r.OK != (code == exitOK) {
		t.Errorf("doctor: ok %v but exit %d", r.OK, code)
	}
	return code, r, errOut
}

func (r doctorReport) check(t *testing.T, name string) doctorCheck {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("doctor: no check %s in %+v", name, r.Checks)
	return doctorCheck{}
}

// TestRealKafkaDoctorAllOK: on the real Kafka and PostgreSQL, once a
// broker has started on the configuration (topics created, store
// migrated), every check of `certless doctor` is ok and it exits 0.
func TestRealKafkaDoctorAllOK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
	// The directory's first entries are leaves: wait for their checkpoint.
	testenv.Eventually(ctx, t, "the log checkpointed", 30*time.Second, func() error {
		h, err := store.Inspect(ctx, cfg.Store.DSN)
		if err == nil && (h.Sequenced == 0 || h.Checkpointed != h.Sequenced) {
			err = fmt.Errorf("%d leaves, checkpoint of %d", h.Sequenced, h.Checkpointed)
		}
		return err
	})

	code, r, errOut := runDoctorCLI(t, cfg)
	if code != exitOK {
		t.Errorf("doctor exit %d, want 0; stderr: %s", code, errOut)
	}
	want := []string{"config", "keys.folder", "keys.permissions", "keys.broker", "keys.log", "keys.agencies",
		"kafka", "kafka.topics", "store", "store.schema", "store.write", "transparency_log"}
	for _, a := range cfg.Adapters {
		want = append(want, "source."+a.Name)
	}
	for _, name := range want {
		c := r.check(t, name)
		if c.Status != checkOK {
			t.Errorf("%s: %s %q (fix: %s), want ok", name, c.Status, c.Detail, c.Hint)
		}
	}
	if kc := r.check(t, "kafka"); !strings.Contains(kc.Detail, cfg.Kafka.Brokers[0]) {
		t.Errorf("kafka check %q does not name the broker %s", kc.Detail, cfg.Kafka.Brokers[0])
	}
	if n := len(r.Checks); n != len(want) {
		t.Errorf("%d checks, want %d: %+v", n, len(want), r.Checks)
	}

	// The text output: one line per check, status first.
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "--config", path, "doctor")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != len(want) {
		t.Fatalf("doctor: exit %d, %d lines, want 0 and %d:\n%s", code, len(lines), len(want), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok ") {
			t.Errorf("line %q does not start with ok", l)
		}
	}
}

// devDoctorConfig is the dev configuration of a fresh data folder, its
// keys and store made, with Kafka left as each test sets it.
func devDoctorConfig(ctx context.Context, t *testing.T) *config.Config {
	t.Helper()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx, cfg.Store.DSN); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDoctorKeyFileMode: an agency's private key file made readable by
// others (chmod 644) fails keys.permissions, naming the file, with the
// chmod that fixes it; with the file at 0600 no check fails.
func TestDoctorKeyFileMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := devDoctorConfig(ctx, t)

	code, r, errOut := runDoctorCLI(t, cfg)
	if code != exitOK {
		t.Fatalf("fresh dev data: doctor exit %d, want 0 (warnings only): %+v\n%s", code, r.Checks, errOut)
	}
	if c := r.check(t, "keys.permissions"); c.Status != checkOK {
		t.Fatalf("keys.permissions before the chmod: %+v", c)
	}

	files, _ := filepath.Glob(filepath.Join(cfg.KeysDir, "*.key.json"))
	i := slices.IndexFunc(files, func(f string) bool { return !strings.HasPrefix(filepath.Base(f), cfg.BrokerID+".") })
	if i < 0 {
		t.Fatalf("no agency private key in %s: %v", cfg.KeysDir, files)
	}
	loose := files[i]
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	code, r, _ = runDoctorCLI(t, cfg)
	if code != exitFailure {
		t.Errorf("doctor exit %d with %s at 0644, want 1", code, loose)
	}
	c := r.check(t, "keys.permissions")
	if c.Status != checkFail || !strings.Contains(c.Detail, loose) || c.Hint != "chmod 600 "+loose {
		t.Fatalf("keys.permissions with %s at 0644: %+v, want fail naming it with hint \"chmod 600 %s\"", loose, c, loose)
	}
	for _, c := range r.Checks {
		if c.Status == checkFail && c.Name != "keys.permissions" {
			t.Errorf("%s fails too: %+v", c.Name, c)
		}
	}
}

// TestDoctorKafkaClosedPort: a Kafka address nothing listens on fails the
// kafka check, naming the address, and doctor exits 1; the topic checks,
// which need the cluster, are left out.
func TestDoctorKafkaClosedPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := devDoctorConfig(ctx, t)
	addr := closedAddr(t)
	cfg.Kafka.Embedded = false
	cfg.Kafka.Brokers = []string{addr}

	start := time.Now()
	code, r, errOut := runDoctorCLI(t, cfg)
	if code != exitFailure {
		t.Errorf("doctor exit %d, want 1", code)
	}
	c := r.check(t, "kafka")
	if c.Status != checkFail || !strings.Contains(c.Detail, addr) || !strings.Contains(c.Hint, addr) {
		t.Fatalf("kafka check with %s closed: %+v, want fail naming the address", addr, c)
	}
	if !strings.Contains(c.Detail, "refused") {
		t.Errorf("kafka check %q does not say the connection was refused", c.Detail)
	}
	if slices.ContainsFunc(r.Checks, func(c doctorCheck) bool { return c.Name == "kafka.topics" }) {
		t.Errorf("kafka.topics checked without a cluster: %+v", r.Checks)
	}
	if !strings.Contains(errOut, "checks failed") {
		t.Errorf("stderr %q does not say checks failed", errOut)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("doctor took %v on a closed port", d)
	}
}

// TestRealPostgresDoctorStore: a store DSN whose server refuses, one whose
// database does not exist, and a reachable database that was never
// migrated each fail a store check with its fix; the migrated one passes
// the write probe without keeping a row.
func TestRealPostgresDoctorStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := devDoctorConfig(ctx, t)
	fresh := testenv.PostgresDB(t)

	u, err := url.Parse(fresh)
	if err != nil {
		t.Fatal(err)
	}
	refused := *u
	refused.Host = closedAddr(t)
	missing := *u
	missing.Path = "/no_such_db_" + testenv.Random(4)

	for _, tc := range []struct {
		name, dsn, check, detail, hint string
	}{
		{"refused", refused.String(), "store", refused.Host, "store.dsn"},
		{"no database", missing.String(), "store", strings.TrimPrefix(missing.Path, "/"), "store.dsn"},
		{"not migrated", fresh, "store.schema", "schema version 0", "certless db migrate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			c.Store.DSN = tc.dsn
			code, r, _ := runDoctorCLI(t, &c)
			if code != exitFailure {
				t.Errorf("doctor exit %d, want 1", code)
			}
			got := r.check(t, tc.check)
			if got.Status != checkFail || !strings.Contains(got.Detail, tc.detail) || !strings.Contains(got.Hint, tc.hint) {
				t.Fatalf("%s: %+v, want fail with %q and a hint with %q", tc.check, got, tc.detail, tc.hint)
			}
			if _, pw := u.User.Password(); pw {
				for _, c := range r.Checks {
					if strings.Contains(c.Detail, u.User.String()+"@") {
						t.Errorf("%s shows the password: %q", c.Name, c.Detail)
					}
				}
			}
		})
	}

	// Migrated: reachable, current, writable; the probe row is gone.
	if err := store.Migrate(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	c := *cfg
	c.Store.DSN = fresh
	_, r, _ := runDoctorCLI(t, &c)
	for _, name := range []string{"store", "store.schema", "store.write", "transparency_log"} {
		if got := r.check(t, name); got.Status != checkOK {
			t.Errorf("%s on a migrated store: %+v", name, got)
		}
	}
	st, err := store.Open(ctx, fresh, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n, err := st.Count(ctx); err != nil || n != 0 {
		t.Fatalf("decisions after doctor's probe: %d, %v; want 0 (rolled back)", n, err)
	}
}

// TestDoctorLogFreshness: the log check against the configured tolerance,
// on a fixed clock: a quiet log (every leaf checkpointed) is ok however old
// its newest checkpoint; leaves waiting within the tolerance are ok; a leaf
// waiting past it fails the check.
func TestDoctorLogFreshness(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	cfg := config.Default(t.TempDir())
	cfg.Transparency.Tolerance = config.Duration(30 * time.Second)
	day := now.Add(-24 * time.Hour)
	for _, tc := range []struct {
		name string
		h    store.Health
		want string
	}{
		{"empty", store.Health{}, checkOK},
		{"quiet for a day", store.Health{Sequenced: 5, Checkpointed: 5, CheckpointAt: day}, checkOK},
		{"waiting within tolerance", store.Health{Sequenced: 7, Checkpointed: 5, CheckpointAt: day, OldestPending: now.Add(-20 * time.Second)}, checkOK},
		{"first leaves, no checkpoint yet", store.Health{Sequenced: 2, OldestPending: now.Add(-time.Second)}, checkOK},
		{"waiting past tolerance", store.Health{Sequenced: 7, Checkpointed: 5, CheckpointAt: day, OldestPending: now.Add(-31 * time.Second)}, checkFail},
		{"never checkpointed", store.Health{Sequenced: 2, OldestPending: now.Add(-31 * time.Second)}, checkFail},
	} {
		d := &doctor{cfg: &cfg, now: func() time.Time { return now }}
		d.checkLog(tc.h)
		if got := d.checks[0]; got.Status != tc.want {
			t.Errorf("%s: %+v, want %s", tc.name, got, tc.want)
		} else if tc.want == checkFail && (!strings.Contains(got.Detail, "31s") || !strings.Contains(got.Detail, "30s") || got.Hint == "") {
			t.Errorf("%s: %+v: want the wait, the tolerance and a hint", tc.name, got)
		}
	}
}

// TestRealKafkaDoctorACLs: on the real Kafka's SASL_SSL listener (as its
// administrator, who may see ACLs), agencies without their ACLs fail
// kafka.acls, naming them; once `agency dock` would have granted them
// (bkafka.EnsureAgencyAccess with the same bindings) the check is ok.
func TestRealKafkaDoctorACLs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sec := testenv.SecureKafka(t)
	cfg := realConfig(ctx, t)
	cfg.Kafka.Brokers = []string{sec.Addr}
	cfg.Kafka.TLS = &config.TLS{Enabled: true, CAFile: sec.CAFile}
	// Agency ids are cluster-wide principals: unique ones, so that no other
	// test's grants count here.
	suffix := testenv.Random(3)
	cfg.Agencies = cfg.Agencies[:2]
	for i := range cfg.Agencies {
		cfg.Agencies[i].ID += "-" + suffix
	}
	t.Setenv("CERTLESS_TEST_DOCTOR_SASL", sec.AdminPassword)
	cfg.Kafka.SASL = &config.SASL{Mechanism: "SCRAM-SHA-512", Username: sec.AdminUser, PasswordEnv: "CERTLESS_TEST_DOCTOR_SASL"}

	_, r, _ := runDoctorCLI(t, cfg)
	if c := r.check(t, "kafka"); c.Status != checkOK {
		t.Fatalf("kafka on the SASL_SSL listener: %+v", c)
	}
	c := r.check(t, "kafka.acls")
	if c.Status != checkFail || !strings.Contains(c.Detail, cfg.Agencies[0].ID) || !strings.Contains(c.Detail, cfg.Agencies[1].ID) {
		t.Fatalf("kafka.acls before any grant: %+v, want fail naming both agencies", c)
	}

	loaded := *cfg
	loaded.Kafka.SASL = &config.SASL{Mechanism: "SCRAM-SHA-512", Username: sec.AdminUser, Password: sec.AdminPassword}
	ac := &agencyCtx{g: &globals{stdout: io.Discard, stderr: io.Discard}, cfg: &loaded}
	for _, a := range cfg.Agencies {
		kc, acc, ok := ac.kafkaAccess(a.ID)
		if !ok {
			t.Fatalf("no Kafka access for %s", a.ID)
		}
		if err := bkafka.EnsureAgencyAccess(ctx, kc, acc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bkafka.RevokeAgencyAccess(context.Background(), kc, acc) })
	}
	// ACLs reach every broker through the metadata log within seconds.
	testenv.Eventually(ctx, t, "kafka.acls ok", 30*time.Second, func() error {
		_, r, _ := runDoctorCLI(t, cfg)
		if c := r.check(t, "kafka.acls"); c.Status != checkOK {
			return fmt.Errorf("%+v", c)
		}
		return nil
	})
}

// TestDoctorLogNotCheckpointed: a broker that started (its docking
// directory's first entries are leaves of the log) but never ran its
// checkpointer leaves them waiting; once they wait longer than
// transparency.tolerance (1s here), doctor fails the log check, through the
// CLI on the real SQLite store.
func TestDoctorLogNotCheckpointed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := devDoctorConfig(ctx, t)
	svc, err := startService(ctx, cfg, zap.NewNop(), serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	svc.close() // without run: no checkpoint round
	h, err := store.Inspect(ctx, cfg.Store.DSN)
	if err != nil || h.Sequenced == 0 || h.Checkpointed != 0 {
		t.Fatalf("after a start without checkpoints: %+v, %v; want leaves and no checkpoint", h, err)
	}
	cfg.Transparency.Tolerance = config.Duration(time.Second)
	testenv.Eventually(ctx, t, "transparency_log fails", 20*time.Second, func() error {
		code, r, _ := runDoctorCLI(t, cfg)
		if c := r.check(t, "transparency_log"); c.Status != checkFail || code != exitFailure || !strings.Contains(c.Detail, "tolerance 1s") {
			return fmt.Errorf("exit %d, %+v", code, c)
		}
		return nil
	})
}
