package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/bench"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// floorSamples is how many requests the crypto floor is measured on.
const floorSamples = 2000

// cryptoFloor is the µs one request costs in cryptography alone: the JWS
// verify of the request (go-jose, the sender's key) and one JWS sign of a
// payload of its size with the broker's key, on one goroutine.
func cryptoFloor(plan []benchRequest, signers map[string]*keys.Private, brokerKey *keys.Private) (float64, error) {
	n := min(len(plan), floorSamples)
	if n == 0 {
		return 0, errors.New("crypto floor: no requests")
	}
	algs := []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256}
	start := time.Now()
	for _, q := range plan[:n] {
		jws, err := jose.ParseSigned(string(q.signed.Bytes), algs)
		if err != nil {
			return 0, fmt.Errorf("crypto floor: %w", err)
		}
		payload, err := jws.Verify(signers[q.agency].Public.Key)
		if err != nil {
			return 0, fmt.Errorf("crypto floor: %w", err)
		}
		if _, err := envelope.SignBytes(brokerKey, payload); err != nil {
			return 0, fmt.Errorf("crypto floor: %w", err)
		}
	}
	return float64(time.Since(start).Microseconds()) / float64(n), nil
}

// echoCeiling sends plan through a bare echo on the same cluster: the
// requests go to one topic of partitions partitions; a service that only
// consumes, re-produces (headers naming the request) and commits answers
// on another; the engine times the round trips as it does the broker's.
func echoCeiling(ctx context.Context, kcfg bkafka.Config, prefix string, partitions int, plan []benchRequest, o bench.Options, log *zap.Logger) (bench.Result, error) {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	in, out := prefix+"bench-echo."+suffix+".requests", prefix+"bench-echo."+suffix+".answers"
	if err := bkafka.EnsureTopics(ctx, kcfg, bkafka.TopicSpec{Name: in, Partitions: partitions, ReplicationFactor: 1},
		bkafka.TopicSpec{Name: out, Partitions: partitions, ReplicationFactor: 1}); err != nil {
		return bench.Result{}, err
	}
	echoCtx, stopEcho := context.WithCancel(ctx)
	defer stopEcho()
	echoDone := make(chan error, 1)
	go func() { echoDone <- runEcho(echoCtx, kcfg, in, out, "bench-echo-"+suffix, log) }()
	defer func() { stopEcho(); <-echoDone }()

	reqs := benchRequests(plan)
	for i := range reqs {
		reqs[i].Topic = in
		reqs[i].Headers = map[string]string{"certless-request-digest": reqs[i].ID}
	}
	warm := []bench.Request{{ID: "warm-up-" + suffix, Topic: in, Value: []byte("warm-up"), Headers: map[string]string{"certless-request-digest": "warm-up-" + suffix}}}
	r := bench.New(reqs, warm, o)
	producer, err := bkafka.NewProducer(kcfg, bkafka.ProducerOptions{Logger: log.Named("kafka")})
	if err != nil {
		return bench.Result{}, err
	}
	defer producer.Close()
	cons, err := bkafka.NewConsumer(kcfg, bkafka.ConsumerOptions{GroupID: "bench-echo-reader-" + suffix, Topics: []string{out}, MaxWait: 50 * time.Millisecond})
	if err != nil {
		return bench.Result{}, err
	}
	defer cons.Close()
	collectCtx, stopCollect := context.WithCancel(ctx)
	var collected sync.WaitGroup
	collected.Add(1)
	go func() { defer collected.Done(); r.Collect(collectCtx, echoSource{cons}) }()
	defer func() { stopCollect(); collected.Wait() }()
	warmCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = r.WarmUp(warmCtx, benchProducer{producer})
	cancel()
	if err != nil {
		return bench.Result{}, fmt.Errorf("warm-up of the echo: %w", err)
	}
	if why := r.Measure(ctx, benchProducer{producer}); why != "" {
		return r.Result(), errors.New(why)
	}
	return r.Result(), nil
}

// echoWorkers is how many re-produce calls the echo runs at once: like
// the broker's runner, it keeps many messages in flight, and kafka-go
// batches concurrent writes.
const echoWorkers = 4

// runEcho is the bare service of the ceiling: fetch, re-produce to out
// with the same headers, commit — many messages in flight, each partition
// committed up to its first unfinished message, as the broker's runner
// does.
func runEcho(ctx context.Context, kcfg bkafka.Config, in, out, group string, log *zap.Logger) error {
	cons, err := bkafka.NewConsumer(kcfg, bkafka.ConsumerOptions{GroupID: group, Topics: []string{in}, MaxWait: 50 * time.Millisecond})
	if err != nil {
		return err
	}
	defer cons.Close()
	prod, err := bkafka.NewProducer(kcfg, bkafka.ProducerOptions{Logger: log.Named("kafka")})
	if err != nil {
		return err
	}
	defer prod.Close()
	fetched := make(chan bkafka.Message, 4096)
	done := make(chan bkafka.Message, 4096)
	var order echoOrder
	go func() {
		defer close(fetched)
		for {
			m, err := cons.Fetch(ctx)
			if err != nil {
				return
			}
			order.fetched(m)
			fetched <- m
		}
	}()
	var workers sync.WaitGroup
	for range echoWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for m := range fetched {
				// Linger up to 2 ms for more: a produce request per
				// partition per message costs the cluster more than the
				// wait.
				batch := []bkafka.Message{m}
				linger := time.NewTimer(2 * time.Millisecond)
			more:
				for len(batch) < 500 {
					select {
					case m, ok := <-fetched:
						if !ok {
							break more
						}
						batch = append(batch, m)
					case <-linger.C:
						break more
					}
				}
				linger.Stop()
				answers := make([]bkafka.Message, len(batch))
				for i, m := range batch {
					answers[i] = bkafka.Message{Topic: out, Key: m.Key, Value: m.Value, Headers: m.Headers}
				}
				if err := prod.Produce(ctx, answers...); err != nil {
					return // ctx ended
				}
				for _, m := range batch {
					done <- m
				}
			}
		}()
	}
	go func() { workers.Wait(); close(done) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case m, ok := <-done:
			if !ok {
				return nil
			}
			order.finished(m)
		case <-tick.C:
			if c := order.committable(); len(c) > 0 {
				if err := cons.Commit(ctx, c...); err != nil {
					return nil
				}
			}
		}
	}
}

// echoOrder tracks, per partition, the fetched offsets in order and which
// are finished, so that only a finished prefix is committed.
type echoOrder struct {
	mu   sync.Mutex
	q    map[int][]bkafka.Message
	done map[int]map[int64]bool
}

func (o *echoOrder) fetched(m bkafka.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.q == nil {
		o.q, o.done = map[int][]bkafka.Message{}, map[int]map[int64]bool{}
	}
	o.q[m.Partition] = append(o.q[m.Partition], m)
	if o.done[m.Partition] == nil {
		o.done[m.Partition] = map[int64]bool{}
	}
}

func (o *echoOrder) finished(m bkafka.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done[m.Partition][m.Offset] = true
}

// committable pops each partition's finished prefix and returns its last
// message (committing it commits the prefix).
func (o *echoOrder) committable() []bkafka.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []bkafka.Message
	for p, q := range o.q {
		n := 0
		for n < len(q) && o.done[p][q[n].Offset] {
			delete(o.done[p], q[n].Offset)
			n++
		}
		if n > 0 {
			out = append(out, q[n-1])
			o.q[p] = q[n:]
		}
	}
	return out
}

// echoSource reads the echo's answers.
type echoSource struct{ c *bkafka.Consumer }

func (e echoSource) Next(ctx context.Context) (bench.Answer, error) {
	m, err := e.c.Fetch(ctx)
	if err != nil {
		return bench.Answer{}, err
	}
	a := bench.Answer{Label: "echo", Value: m.Value}
	for _, h := range m.Headers {
		if h.Key == "certless-request-digest" {
			a.ID = string(h.Value)
		}
	}
	return a, nil
}

// processCPU reads a process's CPU time (user + system) from /proc.
func processCPU(pid int) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("broker CPU: %w", err)
		}
		// The command may hold spaces: fields count from after its ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("broker CPU: short /proc/%d/stat", pid)
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return 0, fmt.Errorf("broker CPU: %w", err)
		}
		return time.Duration(utime+stime) * time.Second / clockTicks, nil
	}
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// processRSS reads a process's peak resident set (VmHWM) from /proc.
func processRSS(pid int) func() (int64, error) { return processStatus(pid, "VmHWM") }

// processRSSNow reads a process's current resident set (VmRSS).
func processRSSNow(pid int) func() (int64, error) { return processStatus(pid, "VmRSS") }

// processStatus reads a size in kB of /proc/PID/status, in bytes.
func processStatus(pid int, field string) func() (int64, error) {
	return func() (int64, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, fmt.Errorf("broker RSS: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("broker RSS: %w", err)
				}
				return kb << 10, nil
			}
		}
		return 0, fmt.Errorf("broker RSS: no %s in /proc/%d/status", field, pid)
	}
}

// scrapeGoroutines reads go_goroutines (client_golang's Go collector,
// which the broker registers) from a /metrics URL.
func scrapeGoroutines(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("broker goroutines: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("broker goroutines: %s answered %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("broker goroutines: %w", err)
	}
	fam, ok := families["go_goroutines"]
	if !ok || len(fam.GetMetric()) != 1 {
		return 0, fmt.Errorf("broker goroutines: no go_goroutines at %s", url)
	}
	return int(fam.GetMetric()[0].GetGauge().GetValue()), nil
}

// brokerProbe reads the current RSS and goroutines of broker processes,
// summed: pids[i] serves /metrics at urls[i].
func brokerProbe(pids []int, urls []string) func(context.Context) (bench.Probe, error) {
	return func(ctx context.Context) (bench.Probe, error) {
		var p bench.Probe
		for i, pid := range pids {
			rss, err := processRSSNow(pid)()
			if err != nil {
				return p, err
			}
			n, err := scrapeGoroutines(ctx, urls[i])
			if err != nil {
				return p, err
			}
			p.RSS += rss
			p.Goroutines += n
		}
		return p, nil
	}
}

// benchServeSetup runs `certless serve` in its own process against a real
// Kafka and PostgreSQL: the dev agencies, keys and agreements in a
// temporary folder, fresh topics and decision database, the record source
// seeded with o.persons (its database kept for the next run).
func benchServeSetup(ctx context.Context, g *globals, o benchOptions, log *zap.Logger) (*benchSetup, func(), error) {
	brokers := cmp.Or(o.kafka, os.Getenv("CERTLESS_TEST_KAFKA"))
	admin := cmp.Or(o.postgres, os.Getenv("CERTLESS_TEST_POSTGRES"))
	if brokers == "" || admin == "" {
		return nil, nil, usagef(`--mode serve needs a Kafka and a PostgreSQL: scripts/services.sh up; eval "$(scripts/services.sh env)" (or --kafka and --postgres); --mode embedded needs neither`)
	}
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	// With --data the run is kept for a report: the folder's keys and
	// agreements, the decision database left in place and named by
	// <data>/bench.yaml. Without it everything is temporary.
	dir, keep := g.dataDir, g.dataDir != ""
	if !keep {
		tmp, err := os.MkdirTemp("", "certless-bench-")
		if err != nil {
			return nil, nil, err
		}
		cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
		dir = tmp
	}
	cfg, err := ensureDevData(ctx, dir, log)
	if err != nil {
		return nil, cleanup, err
	}
	records, err := benchRecordsDB(ctx, g, admin, o.persons)
	if err != nil {
		return nil, cleanup, err
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	decisions := "certless_bench_" + suffix
	if err := createDatabase(ctx, admin, decisions); err != nil {
		return nil, cleanup, err
	}
	if !keep {
		cleanups = append(cleanups, func() { _ = dropDatabase(context.Background(), admin, decisions) })
	}
	cfg.Kafka.Embedded = false
	cfg.Kafka.Brokers = strings.Split(brokers, ",")
	cfg.Kafka.TopicPrefix = "bench" + suffix + "."
	cfg.Kafka.GroupID = "certless-bench-" + suffix
	// The bench's topics go when it ends: a cluster full of partitions
	// is a slower cluster.
	cleanups = append(cleanups, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := bkafka.DeleteTopicsWithPrefix(ctx, kafkaConfig(cfg.Kafka), cfg.Kafka.TopicPrefix); err != nil {
			log.Warn("the bench's topics were not deleted", zap.String("prefix", cfg.Kafka.TopicPrefix), zap.Error(err))
		}
	})
	if cfg.Store.DSN, err = withDatabase(admin, decisions); err != nil {
		return nil, cleanup, err
	}
	cfg.Adapters = cfg.Adapters[:1] // the provincial source, on PostgreSQL
	cfg.Adapters[0].Options = map[string]any{"dsn": records}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, cleanup, err
	}
	cfg.HTTP.Addr = "127.0.0.1:" + strconv.Itoa(port)
	cfg.Log.Level, cfg.Log.Format = "warn", "json"
	if err := cfg.Validate(); err != nil {
		return nil, cleanup, err
	}
	path := filepath.Join(dir, config.FileName)
	if keep {
		path = filepath.Join(dir, "bench.yaml") // the folder's own config.yaml stays dev's
	}
	if err := cfg.Write(path); err != nil {
		return nil, cleanup, err
	}
	bin := o.serveBin
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, cleanup, err
		}
	}
	// One process per instance, all in one consumer group on one
	// database, each with its own HTTP address.
	var cpus []func() (time.Duration, error)
	var rsss []func() (int64, error)
	var pids []string
	var pidNums []int
	var metrics []string
	for i := range max(o.instances, 1) {
		addr := cfg.HTTP.Addr
		if i > 0 {
			p, err := freeLoopbackPort()
			if err != nil {
				return nil, cleanup, err
			}
			addr = "127.0.0.1:" + strconv.Itoa(p)
		}
		logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("serve-%d.log", i)))
		if err != nil {
			return nil, cleanup, err
		}
		cmd := exec.Command(bin, "--config", path, "serve")
		cmd.Env = append(os.Environ(), config.EnvHTTPAddr+"="+addr)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return nil, cleanup, fmt.Errorf("start %s serve: %w", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		cleanups = append(cleanups, func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			logFile.Close()
		})
		fmt.Fprintf(g.stderr, "broker %d: %s serve (pid %d, http://%s), topics %s*, decisions in database %s\n", i+1, bin, cmd.Process.Pid, addr, cfg.Kafka.TopicPrefix, decisions)
		if err := waitReadyz(ctx, "http://"+addr+"/readyz", exited, time.Minute); err != nil {
			tail, _ := os.ReadFile(logFile.Name())
			return nil, cleanup, fmt.Errorf("the broker did not become ready: %w\n%s", err, lastLines(tail, 20))
		}
		cpus, rsss = append(cpus, processCPU(cmd.Process.Pid)), append(rsss, processRSS(cmd.Process.Pid))
		pids = append(pids, strconv.Itoa(cmd.Process.Pid))
		pidNums, metrics = append(pidNums, cmd.Process.Pid), append(metrics, "http://"+addr+"/metrics")
	}
	what := "certless serve, pid " + pids[0]
	if len(pids) > 1 {
		what = fmt.Sprintf("%d × certless serve in one group, pids %s", len(pids), strings.Join(pids, ", "))
	}
	s := &benchSetup{cfg: cfg, kcfg: kafkaConfig(cfg.Kafka), topics: broker.Topics{Prefix: cfg.Kafka.TopicPrefix},
		cpu: sumOf(cpus), rss: sumOf(rsss), probe: brokerProbe(pidNums, metrics),
		instances: len(pids), label: brokers + " (" + what + ")", storeDSN: redactDSN(cfg.Store.DSN)}
	if keep {
		today := time.Now().In(exchange.Beijing)
		s.hint = fmt.Sprintf("kept: database %s, configuration %s; a report of the run: certless --config %s report --from %s --to %s --format json",
			decisions, path, path, today.Format(time.DateOnly), today.AddDate(0, 0, 1).Format(time.DateOnly))
	}
	fmt.Fprintf(g.stderr, "sampling the subjects of %d persons\n", o.persons)
	s.subjects = sampleSubjects(devSeed, o.persons, 20000)
	return s, cleanup, nil
}

// sumOf is the sum of what the readers report, for several broker
// processes.
func sumOf[T time.Duration | int64](readers []func() (T, error)) func() (T, error) {
	return func() (T, error) {
		var sum T
		for _, f := range readers {
			v, err := f()
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}
}

// benchRecordsDB returns the DSN of the database holding the synthetic
// records of persons persons, seeding it first unless an earlier run left
// it complete (a row in bench_seeded says so).
func benchRecordsDB(ctx context.Context, g *globals, admin string, persons int) (string, error) {
	name := fmt.Sprintf("certless_bench_records_%d", persons)
	dsn, err := withDatabase(admin, name)
	if err != nil {
		return "", err
	}
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		var n int
		err = conn.QueryRow(ctx, `SELECT persons FROM bench_seeded`).Scan(&n)
		conn.Close(ctx)
		if err == nil && n == persons {
			return dsn, nil
		}
		if err := dropDatabase(ctx, admin, name); err != nil {
			return "", err
		}
	}
	if err := createDatabase(ctx, admin, name); err != nil {
		return "", err
	}
	start := time.Now()
	last := time.Time{}
	err = sqlsource.SeedThrough(ctx, dsn, persons, devSeed, nil, time.Now().In(exchange.Beijing), func(done, total int) {
		if styled(g.stderr) && (time.Since(last) > time.Second || done == total) {
			last = time.Now()
			fmt.Fprintf(g.stderr, "\rseeding %s: %d of %d persons", name, done, total)
		}
	})
	fmt.Fprintln(g.stderr)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE bench_seeded (persons integer NOT NULL); INSERT INTO bench_seeded VALUES (`+strconv.Itoa(persons)+`)`); err != nil {
		return "", err
	}
	fmt.Fprintf(g.stderr, "seeded %d persons in %s (kept for the next run)\n", persons, time.Since(start).Round(time.Second))
	return dsn, nil
}

func withDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("--postgres: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

func createDatabase(ctx context.Context, admin, db string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{db}.Sanitize())
	return err
}

func dropDatabase(ctx context.Context, admin, db string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{db}.Sanitize()+` WITH (FORCE)`)
	return err
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReadyz polls url until it answers 200, the process exits or within
// passes.
func waitReadyz(ctx context.Context, url string, exited <-chan error, within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("it exited: %v", err)
		case <-deadline.C:
			return fmt.Errorf("%s not ready within %s", url, within)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// print writes the table.
func (r *benchReport) print(w io.Writer) {
	window := "no limit"
	if r.InFlight > 0 {
		window = fmt.Sprintf("≤ %d in flight", r.InFlight)
	}
	fmt.Fprintf(w, "certless bench (%s): %d requests as %s; %s\n", r.Mode, r.Requests, strings.Join(r.Agencies, ", "), window)
	fmt.Fprintf(w, "  kafka %s", r.Kafka)
	if r.Store != "" {
		fmt.Fprintf(w, "; decision store %s", r.Store)
	}
	if r.Persons > 0 {
		fmt.Fprintf(w, "; %d persons in the records", r.Persons)
	}
	fmt.Fprintln(w)
	if r.Stopped != "" {
		fmt.Fprintf(w, "STOPPED EARLY: %s\n", r.Stopped)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	p := r.Pipeline
	fmt.Fprintf(w, "\n%-20s %12s %9s %9s %9s %9s\n", "", "msg/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
	if c := r.Ceiling; c != nil {
		fmt.Fprintf(w, "%-20s %12.0f %9s %9s %9s %9s\n", "transport ceiling", c.Throughput(), ms(c.Percentile(.5)), ms(c.Percentile(.95)), ms(c.Percentile(.99)), ms(c.Percentile(1)))
	}
	label := "pipeline"
	if r.Rate > 0 {
		label = fmt.Sprintf("pipeline @%g/s", r.Rate)
	}
	fmt.Fprintf(w, "%-20s %12.0f %9s %9s %9s %9s\n", label, p.Throughput(), ms(p.Percentile(.5)), ms(p.Percentile(.95)), ms(p.Percentile(.99)), ms(p.Percentile(1)))
	if h := r.Half; h != nil {
		fmt.Fprintf(w, "%-20s %12.0f %9s %9s %9s %9s\n", fmt.Sprintf("half load @%.0f/s", r.HalfRate), h.Throughput(), ms(h.Percentile(.5)), ms(h.Percentile(.95)), ms(h.Percentile(.99)), ms(h.Percentile(1)))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "crypto floor        %.0f µs per request (one JWS verify + one JWS sign)\n", r.FloorMicros)
	if r.CPUMicros > 0 {
		whose := "broker CPU"
		if r.Instances > 1 {
			whose = fmt.Sprintf("brokers' CPU (sum of %d)", r.Instances)
		}
		if r.CPUWhole {
			whose = "process CPU (broker, cluster and load generator)"
		}
		fmt.Fprintf(w, "%-19s %.0f µs per request (%.1f × the floor)\n", whose, r.CPUMicros, r.CPUMicros/r.FloorMicros)
	}
	if r.RSSBytes > 0 {
		whose := "broker peak RSS    "
		if r.Instances > 1 {
			whose = fmt.Sprintf("brokers' peak RSS   (sum of %d)", r.Instances)
		}
		if r.CPUWhole {
			whose = "process peak RSS   "
		}
		fmt.Fprintf(w, "%s %.0f MiB\n", whose, float64(r.RSSBytes)/(1<<20))
	}
	if c := r.Ceiling; c != nil && c.Throughput() > 0 {
		fmt.Fprintf(w, "pipeline ÷ ceiling  %.1f%%\n", 100*p.Throughput()/c.Throughput())
	}
	fmt.Fprintf(w, "\nrequests    %d sent of %d, in %s (offered %.0f msg/s)\n", p.Sent, r.Requests, p.SendSpan.Round(time.Millisecond), p.Offered())
	lost, conflicting := p.Lost(), p.Conflicting
	if h := r.Half; h != nil {
		lost, conflicting = lost+h.Lost(), conflicting+h.Conflicting
	}
	if k := r.Soak; k != nil {
		lost, conflicting = lost+k.Result.Lost(), conflicting+k.Result.Conflicting
	}
	fmt.Fprintf(w, "receipts    %d   lost %d   duplicate copies %d   conflicting %d\n", p.Answered, lost, p.Duplicates, conflicting)
	names := slices.Collect(maps.Keys(p.Labels))
	slices.SortFunc(names, func(a, b string) int { return p.Labels[b] - p.Labels[a] })
	var mix []string
	for _, k := range names {
		mix = append(mix, fmt.Sprintf("%s %d (%.1f%%)", k, p.Labels[k], 100*float64(p.Labels[k])/float64(max(p.Answered, 1))))
	}
	fmt.Fprintf(w, "decisions   %s\n", orDash(strings.Join(mix, "   ")))
	if len(p.WarmUp) > 0 {
		var warm []string
		n := 0
		for _, k := range slices.Sorted(maps.Keys(p.WarmUp)) {
			warm = append(warm, fmt.Sprintf("%s %d", k, p.WarmUp[k]))
			n += p.WarmUp[k]
		}
		fmt.Fprintf(w, "warm-up     %d requests before the clock: %s (not in the figures above; a report counts them)\n", n, strings.Join(warm, "   "))
	}
	if h := r.Half; h != nil {
		fmt.Fprintf(w, "half load   %d more requests (a report counts them too)\n", h.Answered)
	}
	if r.Verified+r.VerifyFailed > 0 {
		fmt.Fprintf(w, "verified    %d of %d sampled receipts against the broker JWKS\n", r.Verified, r.Verified+r.VerifyFailed)
	}
	if r.storeKnown && r.StoreTxns > 0 {
		fmt.Fprintf(w, "store       %d decisions in %d transactions (%.1f per transaction)\n", r.StoreRows, r.StoreTxns, float64(r.StoreRows)/float64(r.StoreTxns))
	}
	if p.Foreign > 0 {
		fmt.Fprintf(w, "ignored     %d receipts of other clients' requests\n", p.Foreign)
	}
	if r.Soak != nil {
		r.Soak.print(w, r.Instances)
	}
	if r.Hint != "" {
		fmt.Fprintf(w, "\n%s\n", r.Hint)
	}
}

// print writes the soak's samples and verdicts.
func (k *benchSoak) print(w io.Writer, instances int) {
	res := k.Result
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(w, "\nsoak @%.0f/s for %s, a sample every %s: %d requests, receipts %d, lost %d, conflicting %d; p50 %.1f ms, p99 %.1f ms\n",
		k.Rate, k.Duration, k.Every, res.Sent, res.Answered, res.Lost(), res.Conflicting, ms(res.Percentile(.5)), ms(res.Percentile(.99)))
	if res.Stopped != "" {
		fmt.Fprintf(w, "SOAK STOPPED EARLY: %s\n", res.Stopped)
	}
	if instances > 1 {
		fmt.Fprintf(w, "(rss and goroutines: the sum of %d brokers)\n", instances)
	}
	fmt.Fprintf(w, "%8s %9s %11s %9s %9s\n", "time", "rss MiB", "goroutines", "p99 ms", "msg/s")
	for _, s := range res.Samples {
		fmt.Fprintf(w, "%8s %9.1f %11d %9.1f %9.0f\n", s.At.Round(time.Second), float64(s.RSS)/(1<<20), s.Goroutines, ms(s.P99), s.Throughput)
	}
	if len(res.Samples) == 0 {
		return
	}
	fmt.Fprintln(w, "trend: least squares after the first tenth of the samples; a trend when the line moves the bad way by the threshold × the mean over the soak")
	for _, t := range k.trends() {
		slope := strings.TrimSpace(fmt.Sprintf("%+.3g %s", t.trend.SlopePerMinute*t.scale, t.unit)) + "/min"
		fmt.Fprintf(w, "  %-11s %-18s %+6.1f%% over the soak (threshold %2.0f%%)  %s\n", t.name, slope,
			100*t.trend.Relative, 100*t.trend.Threshold, t.trend.Verdict(t.bad))
	}
}

// soakSeries is one series of a soak and how it is judged.
type soakSeries struct {
	name, key, unit string
	scale           float64 // to the unit printed
	trend           bench.Trend
	bad             bench.Direction
}

func (k *benchSoak) trends() []soakSeries {
	t := k.Trends
	return []soakSeries{
		{"rss", "rss_bytes", "MiB", 1.0 / (1 << 20), t.RSS, bench.Up},
		{"goroutines", "goroutines", "", 1, t.Goroutines, bench.Up},
		{"p99", "p99_ms", "ms", 1, t.P99, bench.Up},
		{"msg/s", "throughput_per_s", "msg/s", 1, t.Throughput, bench.Down}, // per minute
	}
}

// soakJSON is the soak in the --json file.
type soakJSON struct {
	Rate        float64              `json:"rate_per_s"`
	Duration    float64              `json:"duration_s"`
	Every       float64              `json:"every_s"`
	Sent        int                  `json:"sent"`
	Answered    int                  `json:"answered"`
	Lost        int                  `json:"lost"`
	Conflicting int                  `json:"conflicting"`
	Duplicates  int                  `json:"duplicates"`
	P50         float64              `json:"p50_ms"`
	P99         float64              `json:"p99_ms"`
	Decisions   map[string]int       `json:"decisions"`
	Stopped     string               `json:"stopped,omitempty"`
	Samples     []soakSampleJSON     `json:"samples"`
	Trends      map[string]trendJSON `json:"trends"`
}

type soakSampleJSON struct {
	T          float64 `json:"t_s"`
	RSS        int64   `json:"rss_bytes"`
	Goroutines int     `json:"goroutines"`
	P99        float64 `json:"p99_ms"`
	Throughput float64 `json:"throughput_per_s"`
	Sent       int     `json:"sent"`
	Answered   int     `json:"answered"`
}

type trendJSON struct {
	Samples        int     `json:"samples"`
	Mean           float64 `json:"mean"`
	SlopePerMinute float64 `json:"slope_per_min"`
	Rise           float64 `json:"rise"`
	Relative       float64 `json:"relative"`
	Threshold      float64 `json:"threshold"`
	Trending       bool    `json:"trending"`
	Verdict        string  `json:"verdict"`
}

func (k *benchSoak) json() *soakJSON {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res := k.Result
	j := &soakJSON{Rate: k.Rate, Duration: k.Duration.Seconds(), Every: k.Every.Seconds(), Sent: res.Sent, Answered: res.Answered,
		Lost: res.Lost(), Conflicting: res.Conflicting, Duplicates: res.Duplicates, P50: ms(res.Percentile(.5)), P99: ms(res.Percentile(.99)),
		Decisions: res.Labels, Stopped: res.Stopped, Samples: []soakSampleJSON{}, Trends: map[string]trendJSON{}}
	for _, s := range res.Samples {
		j.Samples = append(j.Samples, soakSampleJSON{T: s.At.Seconds(), RSS: s.RSS, Goroutines: s.Goroutines, P99: ms(s.P99),
			Throughput: s.Throughput, Sent: s.Sent, Answered: s.Answered})
	}
	if len(res.Samples) > 0 {
		for _, t := range k.trends() {
			j.Trends[t.key] = trendJSON{Samples: t.trend.Samples, Mean: t.trend.Mean, SlopePerMinute: t.trend.SlopePerMinute, Rise: t.trend.Rise,
				Relative: t.trend.Relative, Threshold: t.trend.Threshold, Trending: t.trend.Trending(t.bad), Verdict: t.trend.Verdict(t.bad)}
		}
	}
	return j
}

// benchJSON is the --json file.
type benchJSON struct {
	Mode              string         `json:"mode"`
	Instances         int            `json:"instances,omitempty"`
	Requests          int            `json:"requests"`
	Persons           int            `json:"persons,omitempty"`
	InFlight          int            `json:"in_flight"`
	Throughput        float64        `json:"throughput_per_s"`
	P50               float64        `json:"p50_ms"`
	P99               float64        `json:"p99_ms"`
	Ceiling           float64        `json:"ceiling_per_s"`
	CeilingP50        float64        `json:"ceiling_p50_ms"`
	CeilingP99        float64        `json:"ceiling_p99_ms"`
	Floor             float64        `json:"floor_us"`
	CPU               float64        `json:"cpu_us_per_request"`
	CPUWholeProcess   bool           `json:"cpu_whole_process,omitempty"`
	HalfRate          float64        `json:"half_load_per_s"`
	HalfP50           float64        `json:"p50_ms_half_load"`
	HalfP95           float64        `json:"p95_ms_half_load"`
	HalfP99           float64        `json:"p99_ms_half_load"`
	RSS               int64          `json:"rss_bytes"`
	Lost              int            `json:"lost"`
	Conflicting       int            `json:"conflicting"`
	PipelineToCeiling float64        `json:"pipeline_to_ceiling"`
	CPUToFloor        float64        `json:"cpu_to_floor"`
	Decisions         map[string]int `json:"decisions"`
	// The warm-ups' and the half-load run's decisions: a report of the
	// period counts them too.
	DecisionsWarmUp   map[string]int `json:"decisions_warm_up,omitempty"`
	DecisionsHalfLoad map[string]int `json:"decisions_half_load,omitempty"`
	Stopped           string         `json:"stopped,omitempty"`
	// Soak is the --soak run: its samples and a verdict per series. Its
	// lost and conflicting requests are in the totals above too.
	Soak *soakJSON `json:"soak,omitempty"`
}

func (r *benchReport) writeJSON(path string) error {
	b, err := r.jsonDoc()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// jsonDoc is the --json file's (and --output json's) document.
func (r *benchReport) jsonDoc() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p := r.Pipeline
	j := benchJSON{Mode: r.Mode, Instances: r.Instances, Requests: r.Requests, Persons: r.Persons, InFlight: r.InFlight, Throughput: p.Throughput(),
		P50: ms(p.Percentile(.5)), P99: ms(p.Percentile(.99)), Floor: r.FloorMicros, CPU: r.CPUMicros, CPUWholeProcess: r.CPUWhole,
		RSS: r.RSSBytes, Lost: p.Lost(), Conflicting: p.Conflicting, Decisions: p.Labels, DecisionsWarmUp: p.WarmUp, Stopped: r.Stopped}
	if c := r.Ceiling; c != nil {
		j.Ceiling, j.CeilingP50, j.CeilingP99 = c.Throughput(), ms(c.Percentile(.5)), ms(c.Percentile(.99))
		if j.Ceiling > 0 {
			j.PipelineToCeiling = j.Throughput / j.Ceiling
		}
	}
	if h := r.Half; h != nil {
		j.HalfRate, j.HalfP50, j.HalfP95, j.HalfP99 = r.HalfRate, ms(h.Percentile(.5)), ms(h.Percentile(.95)), ms(h.Percentile(.99))
		j.DecisionsHalfLoad = h.Labels
		j.Lost += h.Lost()
		j.Conflicting += h.Conflicting
	}
	if r.FloorMicros > 0 && r.CPUMicros > 0 {
		j.CPUToFloor = r.CPUMicros / r.FloorMicros
	}
	if r.Soak != nil {
		j.Soak = r.Soak.json()
		j.Lost += j.Soak.Lost
		j.Conflicting += j.Soak.Conflicting
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
