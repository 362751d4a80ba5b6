package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/kafka"
)

// TestRealKafkaResumeFromCommittedOffset runs the plumbing suite against the
// Apache Kafka that scripts/services.sh starts (skipped without it, failed
// under CI=true).
func TestRealKafkaResumeFromCommittedOffset(t *testing.T) {
	brokers := testenv.KafkaBrokers(t) // logs "real Kafka at ..."
	testResumeFromCommittedOffset(t, kafka.Config{Brokers: brokers, ClientID: "certless-test"})
}

// TestEmbeddedResumeFromCommittedOffset runs the same suite against the
// in-process kfake cluster.
func TestEmbeddedResumeFromCommittedOffset(t *testing.T) {
	e := startEmbedded(t, kafka.EmbeddedOptions{})
	t.Logf("embedded Kafka at %s", strings.Join(e.Addrs(), ","))
	testResumeFromCommittedOffset(t, e.Config())
}

func startEmbedded(t *testing.T, opts kafka.EmbeddedOptions) *kafka.Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := kafka.StartEmbedded(ctx, opts)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// testResumeFromCommittedOffset is the transport's contract: topics are
// created idempotently, a synchronous Produce makes messages readable, a
// consumer group resumes exactly at the committed offsets after its member is
// replaced, and uncommitted messages are read again — nothing lost, nothing
// committed read twice.
func testResumeFromCommittedOffset(t *testing.T, cfg kafka.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const (
		partitions = 3
		total      = 90 // messages produced
		committed  = 40 // fetched and committed by the first member
		extra      = 15 // fetched by the first member but not committed
	)
	run := testenv.Random(4)
	topics := []string{"resume-" + run + "-a", "resume-" + run + "-b"}
	group := "resume-" + run

	specs := []kafka.TopicSpec{
		{Name: topics[0], Partitions: partitions, ReplicationFactor: 1},
		{Name: topics[1], Partitions: partitions, ReplicationFactor: 1},
	}
	if err := kafka.EnsureTopics(ctx, cfg, specs...); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	if err := kafka.EnsureTopics(ctx, cfg, specs...); err != nil {
		t.Fatalf("EnsureTopics again (must be idempotent): %v", err)
	}

	p, err := kafka.NewProducer(cfg, kafka.ProducerOptions{})
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	defer p.Close()
	all := make(map[string]bool, total) // message ids
	batch := make([]kafka.Message, 0, total)
	for i := range total {
		id := fmt.Sprintf("m-%03d", i)
		all[id] = true
		batch = append(batch, kafka.Message{
			Topic:   topics[i%2],
			Key:     []byte(fmt.Sprintf("subject-%d", i%17)),
			Value:   []byte(id),
			Headers: []kafka.Header{{Key: "id", Value: []byte(id)}},
		})
	}
	for chunk := range slices.Chunk(batch, 30) {
		if err := p.Produce(ctx, chunk...); err != nil {
			t.Fatalf("Produce: %v", err)
		}
	}

	// First member: fetch and commit a prefix, then fetch more without
	// committing, then leave.
	c1 := newConsumer(t, cfg, group, topics)
	done := make(map[string]bool)
	want := make(map[topicPartition]int64) // committed offset per partition
	for len(done) < committed {
		m := fetch(ctx, t, c1)
		id := string(m.Value)
		if !all[id] || done[id] {
			t.Fatalf("first member read %s: unknown or duplicate", id)
		}
		if got := header(m, "id"); got != id {
			t.Fatalf("message %s carries header id=%q", id, got)
		}
		if err := c1.Commit(ctx, m); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		done[id] = true
		want[topicPartition{m.Topic, m.Partition}] = m.Offset + 1
	}
	for range extra {
		m := fetch(ctx, t, c1)
		if id := string(m.Value); !all[id] || done[id] {
			t.Fatalf("first member read %s again or unknown", id)
		}
	}
	assertCommitted(ctx, t, cfg, group, want)
	if err := c1.Close(); err != nil {
		t.Fatalf("close first member: %v", err)
	}

	// Second member of the same group: it must read exactly the messages not
	// committed. Within a partition messages arrive in offset order and every
	// committed one precedes every uncommitted one, so once all uncommitted
	// messages are in, a re-read committed message would already have shown.
	c2 := newConsumer(t, cfg, group, topics)
	defer c2.Close()
	rest := make(map[string]bool)
	for len(rest) < total-committed {
		m := fetch(ctx, t, c2)
		id := string(m.Value)
		switch {
		case done[id]:
			t.Fatalf("second member re-read committed message %s (%s/%d@%d)", id, m.Topic, m.Partition, m.Offset)
		case rest[id]:
			t.Fatalf("second member read %s twice", id)
		case !all[id]:
			t.Fatalf("second member read unknown message %q", id)
		}
		rest[id] = true
		if err := c2.Commit(ctx, m); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	for id := range all {
		if !done[id] && !rest[id] {
			t.Fatalf("message %s lost", id)
		}
	}
	t.Logf("%d produced, %d committed by the first member, %d fetched uncommitted, %d resumed by the second",
		total, committed, extra, len(rest))
}

type topicPartition struct {
	topic     string
	partition int
}

func newConsumer(t *testing.T, cfg kafka.Config, group string, topics []string) *kafka.Consumer {
	t.Helper()
	c, err := kafka.NewConsumer(cfg, kafka.ConsumerOptions{
		GroupID:        group,
		Topics:         topics,
		SessionTimeout: 6 * time.Second, // the embedded cluster's minimum
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

func fetch(ctx context.Context, t *testing.T, c *kafka.Consumer) kafka.Message {
	t.Helper()
	m, err := c.Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return m
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// assertCommitted reads the group's committed offsets from the coordinator
// and compares them with want.
func assertCommitted(ctx context.Context, t *testing.T, cfg kafka.Config, group string, want map[topicPartition]int64) {
	t.Helper()
	transport, err := cfg.Transport()
	if err != nil {
		t.Fatal(err)
	}
	defer transport.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Transport: transport}
	req := &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for tp := range want {
		req.Topics[tp.topic] = append(req.Topics[tp.topic], tp.partition)
	}
	resp, err := client.OffsetFetch(ctx, req)
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	if resp.Error != nil {
		t.Fatalf("OffsetFetch: %v", resp.Error)
	}
	got := make(map[topicPartition]int64)
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				t.Fatalf("OffsetFetch %s/%d: %v", topic, p.Partition, p.Error)
			}
			got[topicPartition{topic, p.Partition}] = p.CommittedOffset
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("committed offsets = %v, want %v", got, want)
	}
}
