package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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

// TestRealKafkaKillAndRestart streams a few thousand requests through a
// broker child process on the real Kafka and PostgreSQL, SIGKILLs it at
// several points, restarts it each time, and proves that every request has
// exactly one distinct receipt: none lost, none conflicting.
func TestRealKafkaKillAndRestart(t *testing.T) {
	const total = 3000
	killAt := []int{400, 1300, 2200} // receipts seen before each SIGKILL

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	testStart := time.Now()
	cfg := realConfig(ctx, t)
	t.Logf("set up the real services in %.1fs", time.Since(testStart).Seconds())
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	// Shorter than production so each restart does not wait long for the
	// killed member's session to expire.
	cfg.Kafka.SessionTimeout = config.Duration(6 * time.Second)
	cfg.Kafka.RebalanceTimeout = config.Duration(10 * time.Second)
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	bin := certlessBinary(ctx, t)
	t.Logf("built the broker binary in %.1fs", time.Since(t0).Seconds())

	topics := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
	kcfg := kafkaConfig(cfg.Kafka)
	var specs []bkafka.TopicSpec
	for _, a := range cfg.Agencies {
		specs = append(specs, bkafka.TopicSpec{Name: topics.Requests(a.ID), Partitions: cfg.Kafka.Partitions, ReplicationFactor: 1},
			bkafka.TopicSpec{Name: topics.Receipts(a.ID), Partitions: cfg.Kafka.Partitions, ReplicationFactor: 1})
	}
	specs = append(specs, bkafka.TopicSpec{Name: topics.DeadLetter(), Partitions: 1, ReplicationFactor: 1})
	if err := bkafka.EnsureTopics(ctx, kcfg, specs...); err != nil {
		t.Fatal(err)
	}

	// Sign the whole stream up front, with the bench's mix of answered,
	// not found and denied requests from the three agencies.
	now := time.Now()
	signers := map[string]*keys.Private{}
	var agencies []string
	for _, a := range cfg.Agencies {
		agencies = append(agencies, a.ID)
		k, err := keys.SigningKey(cfg.KeysDir, a.ID, now)
		if err != nil {
			t.Fatal(err)
		}
		signers[a.ID] = k
	}
	stream, err := benchPlan(cfg.Agencies, signers, topics, sampleSubjects(devSeed, devPersons, devPersons), total, now, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}

	// Watch every receipt topic from its (empty) start.
	var mu sync.Mutex
	receipts := map[string][][]byte{} // digest → distinct receipts
	seen := make(chan struct{}, total*4)
	var tails []*client.Tail
	for _, a := range agencies {
		tl, err := client.TailTopic(ctx, kcfg, topics.Receipts(a))
		if err != nil {
			t.Fatal(err)
		}
		tails = append(tails, tl)
		go func() {
			for {
				rec, err := tl.Next(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				addDistinct(receipts, rec.Headers["certless-request-digest"], rec.Value)
				mu.Unlock()
				seen <- struct{}{}
			}
		}()
	}
	defer func() {
		for _, tl := range tails {
			tl.Close()
		}
	}()
	countReceipted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(receipts)
	}

	// The producer streams the requests in small paced chunks, so kills
	// land while requests are still arriving.
	prodDone := make(chan error, 1)
	go func() {
		p, err := bkafka.NewProducer(kcfg, bkafka.ProducerOptions{})
		if err != nil {
			prodDone <- err
			return
		}
		defer p.Close()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(stream); i += 20 {
			var msgs []bkafka.Message
			for _, x := range stream[i:min(i+20, len(stream))] {
				msgs = append(msgs, x.msg)
			}
			if err := p.Produce(ctx, msgs...); err != nil {
				prodDone <- err
				return
			}
			<-tick.C
		}
		prodDone <- nil
	}()

	logPath := filepath.Join(dir, "broker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--config", cfgPath, "serve")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	waitFor := func(n int) {
		t.Helper()
		for countReceipted() < n {
			select {
			case <-seen:
			case <-ctx.Done():
				out, _ := os.ReadFile(logPath)
				t.Fatalf("waiting for %d receipted requests, have %d: %v\nbroker log tail:\n%s", n, countReceipted(), ctx.Err(), tail(out, 3000))
			}
		}
	}

	began := time.Now()
	proc := start()
	kills := 0
	for _, n := range killAt {
		waitFor(n)
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.Wait()
		kills++
		t.Logf("%5.1fs SIGKILL #%d after %d receipted requests; restarting", time.Since(began).Seconds(), kills, countReceipted())
		proc = start()
	}
	if err := <-prodDone; err != nil {
		t.Fatalf("produce: %v", err)
	}
	waitFor(total)
	t.Logf("%5.1fs all %d requests receipted", time.Since(began).Seconds(), total)

	// Stop the last broker politely and check it exits cleanly.
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc.Wait(); err != nil {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("broker did not stop cleanly on SIGTERM: %v\n%s", err, tail(out, 3000))
	}

	t.Logf("%5.1fs broker stopped cleanly on SIGTERM", time.Since(began).Seconds())

	// Read every receipt topic to its end now that no broker runs, so late
	// duplicates are counted too.
	all := map[string][][]byte{}
	logIndex := map[string]string{}
	totalCopies := 0
	for _, a := range agencies {
		for _, m := range readTopic(ctx, t, kcfg, topics.Receipts(a)) {
			var d string
			for _, h := range m.Headers {
				switch h.Key {
				case "certless-request-digest":
					d = string(h.Value)
				case broker.HeaderLogIndex:
					logIndex[string(m.Value)] = string(h.Value)
				}
			}
			totalCopies++
			addDistinct(all, d, m.Value)
		}
	}
	lost, conflicting := 0, 0
	for _, x := range stream {
		switch n := len(all[x.signed.Digest]); {
		case n == 0:
			lost++
		case n > 1:
			conflicting++
		}
	}
	t.Logf("read back every receipt topic after %.1fs", time.Since(began).Seconds())
	t.Logf("kill test: %d requests, %d SIGKILLs, %d receipt records (%d redelivered copies), %d requests receipted, lost %d, conflicting %d",
		total, kills, totalCopies, totalCopies-len(all), len(all), lost, conflicting)
	if lost != 0 || conflicting != 0 || len(all) != total {
		t.Fatalf("lost %d, conflicting %d, receipted %d of %d", lost, conflicting, len(all), total)
	}
	// Every published receipt is in the log, at the index its record
	// carries, and the log the SIGKILLs left behind audits clean.
	published := map[string][]byte{}
	for d, rs := range all {
		published[d] = rs[0]
		if logIndex[string(rs[0])] == "" {
			t.Fatalf("receipt of %s was published without its %s header", d, broker.HeaderLogIndex)
		}
	}
	auditStore(ctx, t, cfg, published, logIndex)
	t.Logf("every one of %d receipts is in the audited transparency log", len(published))
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
