package testenv

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// servicesScript returns scripts/services.sh, which the fault tests call to
// start, kill and restart services of their own (CERTLESS_TEST_SERVICES,
// printed by scripts/services.sh env).
func servicesScript(t testing.TB) string {
	t.Helper()
	s := strings.TrimSpace(os.Getenv("CERTLESS_TEST_SERVICES"))
	if s == "" {
		Require(t, "scripts/services.sh", "CERTLESS_TEST_SERVICES is not set")
	}
	return s
}

// runScript runs scripts/services.sh with args (and extra environment),
// failing t with its output when it fails.
func runScript(t testing.TB, script string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(script), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// Cluster is the three-node KRaft cluster of scripts/services.sh
// cluster-up (replication factor 3, min.insync.replicas 2), for the Kafka
// node-loss test. Node n (1-based) serves Brokers[n-1].
type Cluster struct {
	Brokers []string
	dir     string
	script  string
}

// KafkaCluster starts the three-node cluster (quick when it runs) and
// stops it when t ends if t started it: three more JVMs are not left
// running behind the rest of the tests.
func KafkaCluster(t testing.TB) *Cluster {
	t.Helper()
	script := servicesScript(t)
	c := &Cluster{script: script}
	for _, line := range strings.Split(runScript(t, script, nil, "cluster-env"), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		switch k {
		case "CERTLESS_TEST_KAFKA_CLUSTER":
			c.Brokers = strings.Split(v, ",")
		case "CERTLESS_TEST_KAFKA_CLUSTER_DIR":
			c.dir = v
		}
	}
	if len(c.Brokers) != 3 || c.dir == "" {
		t.Fatalf("scripts/services.sh cluster-env printed no three-node cluster")
	}
	wasUp := c.running(1) && c.running(2) && c.running(3)
	t0 := time.Now()
	c.Up(t)
	t.Logf("real three-node Kafka at %s (ready in %.1fs)", strings.Join(c.Brokers, ","), time.Since(t0).Seconds())
	if !wasUp {
		t.Cleanup(func() { runScript(t, script, nil, "cluster-down") })
	}
	return c
}

// Up starts every node that is not running and waits until all three
// serve with each other: after Kill, the restart.
func (c *Cluster) Up(t testing.TB) { t.Helper(); runScript(t, c.script, nil, "cluster-up") }

func (c *Cluster) pid(node int) (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d", node), "kafka.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

func (c *Cluster) running(node int) bool {
	pid, ok := c.pid(node)
	if !ok {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(cmdline, []byte("kafka.Kafka"))
}

// Kill SIGKILLs node (1-based) and waits until it is gone.
func (c *Cluster) Kill(t testing.TB, node int) {
	t.Helper()
	pid, ok := c.pid(node)
	if !ok || !c.running(node) {
		t.Fatalf("Kafka node %d is not running", node)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL Kafka node %d: %v", node, err)
	}
	Eventually(context.Background(), t, fmt.Sprintf("Kafka node %d to die", node), 30*time.Second, func() error {
		if c.running(node) {
			return fmt.Errorf("pid %d still runs", pid)
		}
		return nil
	})
}

// Postgres is a PostgreSQL cluster of its own (scripts/services.sh pg-up
// with its own state directory and port), which a test may kill and
// restart without disturbing the shared one.
type Postgres struct {
	// AdminDSN is the administrative role's DSN (database postgres).
	AdminDSN string
	script   string
	env      []string
}

// StoppablePostgres starts the test's own PostgreSQL cluster (state in
// .services/outage next to the shared one, port CERTLESS_TEST_OUTAGE_PG_PORT
// or 15433) and stops it when t ends.
func StoppablePostgres(t testing.TB) *Postgres {
	t.Helper()
	script := servicesScript(t)
	port := cmp.Or(os.Getenv("CERTLESS_TEST_OUTAGE_PG_PORT"), "15433")
	state := filepath.Join(filepath.Dir(filepath.Dir(script)), ".services", "outage")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{script: script, env: []string{"CERTLESS_SERVICES_DIR=" + state, "CERTLESS_PG_PORT=" + port},
		AdminDSN: "postgres://certless:certless@127.0.0.1:" + port + "/postgres?sslmode=disable"}
	p.Start(t)
	t.Logf("real PostgreSQL at 127.0.0.1:%s/postgres (the test's own cluster, to stop)", port)
	t.Cleanup(func() { runScript(t, script, p.env, "pg-down") })
	return p
}

// Kill stops the cluster at once (pg_ctl -m immediate: what a crash does;
// the next start recovers).
func (p *Postgres) Kill(t testing.TB) { t.Helper(); runScript(t, p.script, p.env, "pg-kill") }

// Start starts the cluster and waits until it takes logins.
func (p *Postgres) Start(t testing.TB) { t.Helper(); runScript(t, p.script, p.env, "pg-up") }

// Database creates a fresh database and returns its DSN.
func (p *Postgres) Database(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminDSN)
	if err != nil {
		t.Fatalf("connect to the test's own PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	name := "t_" + Random(8)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	return WithDatabase(t, p.AdminDSN, name)
}
