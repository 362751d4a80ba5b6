package kafka_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/kafka"
)

// TestRealKafkaLag measures consumer lag on the Apache Kafka that
// scripts/services.sh starts (skipped without it, failed under CI=true).
func TestRealKafkaLag(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	testLag(t, kafka.Config{Brokers: brokers, ClientID: "certless-test"})
}

// TestEmbeddedLag measures consumer lag on the in-process kfake cluster.
func TestEmbeddedLag(t *testing.T) {
	testLag(t, startEmbedded(t, kafka.EmbeddedOptions{}).Config())
}

// testLag: N messages produced per topic, K of them consumed and committed
// by the group: the collector reports N-K per topic, summed over
// partitions; before any commit it reports N; a cached result answers
// scrapes until it expires.
func testLag(t *testing.T, cfg kafka.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	run := testenv.Random(4)
	a, b := "lag-"+run+"-a", "lag-"+run+"-b"
	group := "lag-" + run
	produced := map[string]int{a: 30, b: 20}
	if err := kafka.EnsureTopics(ctx, cfg,
		kafka.TopicSpec{Name: a, Partitions: 3, ReplicationFactor: 1},
		kafka.TopicSpec{Name: b, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	p, err := kafka.NewProducer(cfg, kafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for topic, n := range produced {
		msgs := make([]kafka.Message, n)
		for i := range msgs {
			msgs[i] = kafka.Message{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}
		}
		if err := p.Produce(ctx, msgs...); err != nil {
			t.Fatalf("Produce: %v", err)
		}
	}

	fresh := newLag(t, cfg, group, []string{a, b}, kafka.LagOptions{CacheFor: time.Nanosecond})
	cached := newLag(t, cfg, group, []string{a, b}, kafka.LagOptions{CacheFor: time.Hour})
	before := expo(produced[a], produced[b], a, b, 0)
	for name, c := range map[string]prometheus.Collector{"fresh": fresh, "cached": cached} {
		if err := testutil.CollectAndCompare(c, strings.NewReader(before)); err != nil {
			t.Fatalf("%s collector, nothing committed: %v", name, err)
		}
	}

	// Consume and commit K messages, whichever partitions they come from.
	const k = 23
	c, err := kafka.NewConsumer(cfg, kafka.ConsumerOptions{GroupID: group, Topics: []string{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	consumed := map[string]int{}
	var msgs []kafka.Message
	for range k {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		consumed[m.Topic]++
		msgs = append(msgs, m)
	}
	if err := c.Commit(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("consumed and committed %d of %s, %d of %s", consumed[a], a, consumed[b], b)

	after := expo(produced[a]-consumed[a], produced[b]-consumed[b], a, b, 0)
	if err := testutil.CollectAndCompare(fresh, strings.NewReader(after)); err != nil {
		t.Fatalf("after committing %d: %v", k, err)
	}
	if err := testutil.CollectAndCompare(cached, strings.NewReader(before)); err != nil {
		t.Fatalf("cached collector asked the cluster again: %v", err)
	}
	if problems, err := testutil.CollectAndLint(fresh); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// TestEmbeddedLagMissingTopic: a topic the cluster does not know is counted
// as an error and left out; the others are still measured.
func TestEmbeddedLagMissingTopic(t *testing.T) {
	e := startEmbedded(t, kafka.EmbeddedOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	known, missing := "lag-known-"+testenv.Random(4), "lag-missing-"+testenv.Random(4)
	if err := kafka.EnsureTopics(ctx, e.Config(), kafka.TopicSpec{Name: known, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	lc := newLag(t, e.Config(), "g-"+testenv.Random(4), []string{known, missing}, kafka.LagOptions{})
	want := `
# HELP certless_consumer_lag_messages Messages of a topic not yet committed by the broker's consumer group, summed over partitions.
# TYPE certless_consumer_lag_messages gauge
certless_consumer_lag_messages{topic="` + known + `"} 0
` + errorsExpo(1)
	if err := testutil.CollectAndCompare(lc, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestLagSilentClusterKeepsScrapeAlive: a "cluster" that accepts
// connections and never answers costs a scrape at most the timeout; the
// scrape still succeeds with the error counter and no gauge, and the failure
// is cached like a result, so later scrapes do not wait again.
func TestLagSilentClusterKeepsScrapeAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	lc := newLag(t, kafka.Config{Brokers: []string{ln.Addr().String()}}, "g", []string{"x.requests"},
		kafka.LagOptions{Timeout: 300 * time.Millisecond, CacheFor: time.Hour})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(lc)
	start := time.Now()
	for range 3 {
		if err := testutil.GatherAndCompare(reg, strings.NewReader(errorsExpo(1))); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("three scrapes took %v: the timeout or the cache does not hold", d)
	}
}

func TestNewLagCollectorRefusesIncompleteSetup(t *testing.T) {
	cfg := kafka.Config{Brokers: []string{"127.0.0.1:9092"}}
	for name, f := range map[string]func() error{
		"no group": func() error { _, err := kafka.NewLagCollector(cfg, "", []string{"t"}, kafka.LagOptions{}); return err },
		"no brokers": func() error {
			_, err := kafka.NewLagCollector(kafka.Config{}, "g", []string{"t"}, kafka.LagOptions{})
			return err
		},
		"negative timeout": func() error {
			_, err := kafka.NewLagCollector(cfg, "g", []string{"t"}, kafka.LagOptions{Timeout: -time.Second})
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func newLag(t *testing.T, cfg kafka.Config, group string, topics []string, opts kafka.LagOptions) *kafka.LagCollector {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	lc, err := kafka.NewLagCollector(cfg, group, topics, opts)
	if err != nil {
		t.Fatal(err)
	}
	return lc
}

// expo is the exposition of lag la on topic a, lb on topic b and errs errors.
func expo(la, lb int, a, b string, errs int) string {
	return fmt.Sprintf(`
# HELP certless_consumer_lag_messages Messages of a topic not yet committed by the broker's consumer group, summed over partitions.
# TYPE certless_consumer_lag_messages gauge
certless_consumer_lag_messages{topic=%q} %d
certless_consumer_lag_messages{topic=%q} %d
`, a, la, b, lb) + errorsExpo(errs)
}

func errorsExpo(n int) string {
	return fmt.Sprintf(`
# HELP certless_consumer_lag_scrape_errors_total Queries of the cluster for consumer lag that failed, wholly or for some topic.
# TYPE certless_consumer_lag_scrape_errors_total counter
certless_consumer_lag_scrape_errors_total %d
`, n)
}
