package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// killRig is a stream of pre-signed requests through broker child
// processes on the real Kafka and PostgreSQL, the receipt topics watched
// from their start: for the tests that kill brokers.
type killRig struct {
	t        *testing.T
	ctx      context.Context
	cfg      *config.Config
	cfgPath  string
	bin      string
	kcfg     bkafka.Config
	topics   broker.Topics
	agencies []string
	stream   []benchRequest
	logPath  string
	logFile  *os.File
	began    time.Time

	mu       sync.Mutex
	receipts map[string][][]byte // digest → distinct receipts
	outcomes map[string]struct{} // "digest decision" of every receipt seen
	seen     chan struct{}
	prodDone chan error
	resent   atomic.Int64 // chunks sent again after a failed produce

	procs      map[*exec.Cmd]*rigProc
	unexpected chan string // a broker exited that was not killed or stopped
}

// rigProc is a broker child process: done closes when it has exited.
type rigProc struct {
	done     chan struct{}
	err      error
	expected atomic.Bool // killed or stopped by the test
}

// newKillRig prepares total requests and the topics, watches the receipt
// topics, and starts streaming the requests in small paced chunks, so
// kills land while requests still arrive.
func newKillRig(ctx context.Context, t *testing.T, total int) *killRig {
	t.Helper()
	return newKillRigWith(ctx, t, total, nil)
}

// newKillRigWith is newKillRig with configure applied to the brokers'
// configuration before it is written (another Kafka cluster, another
// store); the rig's topics get its kafka.replication_factor.
func newKillRigWith(ctx context.Context, t *testing.T, total int, configure func(*config.Config)) *killRig {
	t.Helper()
	testStart := time.Now()
	cfg := realConfig(ctx, t)
	t.Logf("set up the real services in %.1fs", time.Since(testStart).Seconds())
	dir := t.TempDir()
	r := &killRig{t: t, ctx: ctx, cfg: cfg, cfgPath: filepath.Join(dir, "config.yaml"), receipts: map[string][][]byte{}, outcomes: map[string]struct{}{},
		procs: map[*exec.Cmd]*rigProc{}, unexpected: make(chan string, 4),
		seen: make(chan struct{}, total*4), prodDone: make(chan error, 1)}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	// Shorter than production so a killed member's session expires soon.
	cfg.Kafka.SessionTimeout = config.Duration(6 * time.Second)
	cfg.Kafka.RebalanceTimeout = config.Duration(10 * time.Second)
	if configure != nil {
		configure(cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.Write(r.cfgPath); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r.bin = certlessBinary(ctx, t)
	t.Logf("built the broker binary in %.1fs", time.Since(t0).Seconds())

	r.topics = broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
	r.kcfg = kafkaConfig(cfg.Kafka)
	var specs []bkafka.TopicSpec
	rf := max(cfg.Kafka.ReplicationFactor, 1)
	for _, a := range cfg.Agencies {
		specs = append(specs, bkafka.TopicSpec{Name: r.topics.Requests(a.ID), Partitions: cfg.Kafka.Partitions, ReplicationFactor: rf},
			bkafka.TopicSpec{Name: r.topics.Receipts(a.ID), Partitions: cfg.Kafka.Partitions, ReplicationFactor: rf})
	}
	specs = append(specs, bkafka.TopicSpec{Name: r.topics.DeadLetter(), Partitions: 1, ReplicationFactor: rf})
	if err := bkafka.EnsureTopics(ctx, r.kcfg, specs...); err != nil {
		t.Fatal(err)
	}
	// Sign the whole stream up front, with the bench's mix of answered,
	// not found and denied requests.
	now := time.Now()
	signers := map[string]*keys.Private{}
	for _, a := range cfg.Agencies {
		r.agencies = append(r.agencies, a.ID)
		k, err := keys.SigningKey(cfg.KeysDir, a.ID, now)
		if err != nil {
			t.Fatal(err)
		}
		signers[a.ID] = k
	}
	var err error
	if r.stream, err = benchPlan(cfg.Agencies, signers, r.topics, sampleSubjects(devSeed, devPersons, devPersons), total, now, time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	for _, a := range r.agencies {
		tl, err := client.TailTopic(ctx, r.kcfg, r.topics.Receipts(a))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tl.Close)
		go func() {
			for {
				rec, err := tl.Next(ctx)
				if err != nil {
					return
				}
				r.mu.Lock()
				addDistinct(r.receipts, rec.Headers["certless-request-digest"], rec.Value)
				r.outcomes[rec.Headers["certless-request-digest"]+" "+rec.Headers["certless-decision"]] = struct{}{}
				r.mu.Unlock()
				r.seen <- struct{}{}
			}
		}()
	}
	if r.logFile, err = os.Create(filepath.Join(dir, "broker.log")); err != nil {
		t.Fatal(err)
	}
	r.logPath = r.logFile.Name()
	t.Cleanup(func() { r.logFile.Close() })
	// A test that fails midway leaves no broker running behind it.
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for cmd, p := range r.procs {
			p.expected.Store(true)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	})
	go func() {
		p, err := bkafka.NewProducer(r.kcfg, bkafka.ProducerOptions{})
		if err != nil {
			r.prodDone <- err
			return
		}
		defer p.Close()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(r.stream); i += 20 {
			var msgs []bkafka.Message
			for _, x := range r.stream[i:min(i+20, len(r.stream))] {
				msgs = append(msgs, x.msg)
			}
			// As an agency does, a chunk the producer could not deliver
			// (a Kafka node just died) is sent again, for up to a minute;
			// the broker answers a copy with the same receipt.
			for deadline := time.Now().Add(time.Minute); ; {
				err := p.Produce(ctx, msgs...)
				if err == nil {
					break
				}
				if ctx.Err() != nil || time.Now().After(deadline) {
					r.prodDone <- err
					return
				}
				r.resent.Add(1)
				<-tick.C
			}
			<-tick.C
		}
		r.prodDone <- nil
	}()
	r.began = time.Now()
	return r
}

// start runs a broker child process logging to the rig's log.
func (r *killRig) start() *exec.Cmd {
	r.t.Helper()
	cmd := exec.Command(r.bin, "--config", r.cfgPath, "serve")
	cmd.Stdout, cmd.Stderr = r.logFile, r.logFile
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	p := &rigProc{done: make(chan struct{})}
	r.mu.Lock()
	r.procs[cmd] = p
	r.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		if !p.expected.Load() {
			r.unexpected <- fmt.Sprintf("broker pid %d exited by itself: %v", cmd.Process.Pid, p.err)
		}
	}()
	return cmd
}

// proc returns the rig's record of a broker it started.
func (r *killRig) proc(cmd *exec.Cmd) *rigProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[cmd]
}

func (r *killRig) receipted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.receipts)
}

// waitFor waits until n requests have a receipt, and fails at once when
// a broker exits that the test did not kill or stop.
func (r *killRig) waitFor(n int) {
	r.t.Helper()
	for r.receipted() < n {
		select {
		case <-r.seen:
		case why := <-r.unexpected:
			out, _ := os.ReadFile(r.logPath)
			r.t.Fatalf("waiting for %d receipted requests, have %d: %s\nbroker log tail:\n%s", n, r.receipted(), why, tail(out, 3000))
		case <-r.ctx.Done():
			out, _ := os.ReadFile(r.logPath)
			r.t.Fatalf("waiting for %d receipted requests, have %d: %v\nbroker log tail:\n%s", n, r.receipted(), r.ctx.Err(), tail(out, 3000))
		}
	}
}

// kill SIGKILLs a broker and reaps it.
func (r *killRig) kill(cmd *exec.Cmd) {
	r.t.Helper()
	p := r.proc(cmd)
	p.expected.Store(true)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatal(err)
	}
	<-p.done
}

// stop SIGTERMs a broker and fails unless it exits cleanly.
func (r *killRig) stop(cmd *exec.Cmd) {
	r.t.Helper()
	p := r.proc(cmd)
	p.expected.Store(true)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	<-p.done
	if p.err != nil {
		out, _ := os.ReadFile(r.logPath)
		r.t.Fatalf("broker did not stop cleanly on SIGTERM: %v\n%s", p.err, tail(out, 3000))
	}
}

// readBack reads every receipt topic to its end, once no broker runs, so
// late duplicates are counted too, and counts the requests without a
// receipt and those with two different ones.
func (r *killRig) readBack() (all map[string][][]byte, logIndex map[string]string, copies, lost, conflicting int) {
	all, logIndex = map[string][][]byte{}, map[string]string{}
	for _, a := range r.agencies {
		for _, m := range readTopic(r.ctx, r.t, r.kcfg, r.topics.Receipts(a)) {
			var d string
			for _, h := range m.Headers {
				switch h.Key {
				case "certless-request-digest":
					d = string(h.Value)
				case broker.HeaderLogIndex:
					logIndex[string(m.Value)] = string(h.Value)
				}
			}
			copies++
			addDistinct(all, d, m.Value)
		}
	}
	for _, x := range r.stream {
		switch n := len(all[x.signed.Digest]); {
		case n == 0:
			lost++
		case n > 1:
			conflicting++
		}
	}
	return all, logIndex, copies, lost, conflicting
}

func (r *killRig) since() float64 { return time.Since(r.began).Seconds() }

// verdict reads every receipt back (readBack), prints the fault's summary
// line, `fault <name>: requests N, lost L, conflicting C`, and fails the
// test unless every request has exactly one distinct receipt.
func (r *killRig) verdict(name string) (all map[string][][]byte, logIndex map[string]string) {
	r.t.Helper()
	all, logIndex, copies, lost, conflicting := r.readBack()
	total := len(r.stream)
	r.t.Logf("%s: %d receipt records (%d redelivered copies), decisions %v", name, copies, copies-len(all), r.decisions())
	r.t.Logf("fault %s: requests %d, lost %d, conflicting %d", name, total, lost, conflicting)
	if lost != 0 || conflicting != 0 || len(all) != total {
		r.t.Fatalf("lost %d, conflicting %d, receipted %d of %d", lost, conflicting, len(all), total)
	}
	return all, logIndex
}

// decisions counts the receipts seen by decision (their certless-decision
// header).
func (r *killRig) decisions() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for k := range r.outcomes {
		_, d, _ := strings.Cut(k, " ")
		n[d]++
	}
	return n
}

// TestRealKafkaKillAndRestart streams a few thousand requests through a
// broker child process on the real Kafka and PostgreSQL, SIGKILLs it at
// several points, restarts it each time, and proves that every request has
// exactly one distinct receipt: none lost, none conflicting.
func TestRealKafkaKillAndRestart(t *testing.T) {
	const total = 3000
	killAt := []int{400, 1300, 2200} // receipts seen before each SIGKILL
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	r := newKillRig(ctx, t, total)
	proc := r.start()
	kills := 0
	for _, n := range killAt {
		r.waitFor(n)
		r.kill(proc)
		kills++
		t.Logf("%5.1fs SIGKILL #%d after %d receipted requests; restarting", r.since(), kills, r.receipted())
		proc = r.start()
	}
	if err := <-r.prodDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	r.waitFor(total)
	t.Logf("%5.1fs all %d requests receipted", r.since(), total)
	r.stop(proc)
	t.Logf("%5.1fs broker stopped cleanly on SIGTERM", r.since())

	t.Logf("%d SIGKILLs", kills)
	all, logIndex := r.verdict("broker-kill-restart")
	// Every published receipt is in the log, at the index its record
	// carries, and the log the SIGKILLs left behind audits clean.
	published := map[string][]byte{}
	for d, rs := range all {
		published[d] = rs[0]
		if logIndex[string(rs[0])] == "" {
			t.Fatalf("receipt of %s was published without its %s header", d, broker.HeaderLogIndex)
		}
	}
	auditStore(ctx, t, r.cfg, published, logIndex)
	t.Logf("every one of %d receipts is in the audited transparency log", len(published))
}

// TestRealKafkaInstanceLoss runs two brokers in one consumer group on one
// database and SIGKILLs one mid-stream, for good: the other takes over
// its partitions once the dead member's session expires, and every
// request still has exactly one distinct receipt.
func TestRealKafkaInstanceLoss(t *testing.T) {
	const total = 3000
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	r := newKillRig(ctx, t, total)
	a, b := r.start(), r.start()
	r.waitFor(800)
	r.kill(a)
	killedAt, atKill := time.Now(), r.receipted()
	t.Logf("%5.1fs SIGKILL of one of two instances after %d receipted requests; the other goes on alone", r.since(), atKill)
	if err := <-r.prodDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	r.waitFor(total)
	t.Logf("%5.1fs all %d requests receipted, %.1fs after the kill (session timeout %s)", r.since(), total, time.Since(killedAt).Seconds(), r.cfg.Kafka.SessionTimeout.D())
	r.stop(b)
	r.verdict("broker-instance-loss")
}

// addDistinct records receipt under digest unless the same bytes are there.
func addDistinct(m map[string][][]byte, digest string, receipt []byte) {
	for _, r := range m[digest] {
		if bytes.Equal(r, receipt) {
			return
		}
	}
	m[digest] = append(m[digest], receipt)
}

// readTopic reads every partition of topic from the first to the last
// offset.
func readTopic(ctx context.Context, t *testing.T, cfg bkafka.Config, topic string) []kafkago.Message {
	t.Helper()
	dialer, err := cfg.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dialer.DialContext(ctx, "tcp", cfg.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out []kafkago.Message
	for _, p := range parts {
		lc, err := dialer.DialLeader(ctx, "tcp", cfg.Brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last <= first {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: p.ID, Dialer: dialer, MaxBytes: 4 << 20, MaxWait: 200 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p.ID, err)
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
