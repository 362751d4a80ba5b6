package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic for EnsureTopics.
type TopicSpec struct {
	Name string
	// Partitions is the partition count; the broker default when 0.
	Partitions int
	// ReplicationFactor is the number of replicas; the broker default when 0.
	ReplicationFactor int
}

// EnsureTopics creates the topics that do not exist yet and waits until every
// partition of every named topic has a leader, so producing and consuming can
// start at once. A topic that already exists is left as it is, whatever its
// partition count. ctx bounds the whole call.
func EnsureTopics(ctx context.Context, cfg Config, specs ...TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	transport, err := cfg.Transport()
	if err != nil {
		return err
	}
	defer transport.CloseIdleConnections()
	transport.MetadataTTL = 200 * time.Millisecond
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transport}

	req := &kafka.CreateTopicsRequest{}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.Name == "" {
			return errors.New("kafka: topic spec without a name")
		}
		p, rf := s.Partitions, s.ReplicationFactor
		if p == 0 {
			p = -1
		}
		if rf == 0 {
			rf = -1
		}
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: s.Name, NumPartitions: p, ReplicationFactor: rf})
		names = append(names, s.Name)
	}
	resp, err := createTopics(ctx, cfg, client, req)
	if err != nil {
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", name, terr)
		}
	}
	return waitLeaders(ctx, cfg, names)
}

// startupWait bounds how long CreateTopics is retried while a cluster that
// was just started has no controller yet.
const startupWait = 30 * time.Second

// createTopics sends req, retrying while the cluster answers that no broker
// or controller is available yet (a cluster that is still starting) — but
// not when the connection itself is refused (a wrong password, an untrusted
// certificate, which no wait mends; Explain names it).
func createTopics(ctx context.Context, cfg Config, client *kafka.Client, req *kafka.CreateTopicsRequest) (*kafka.CreateTopicsResponse, error) {
	deadline := time.Now().Add(startupWait)
	for {
		resp, err := client.CreateTopics(ctx, req)
		starting := errors.Is(err, kafka.BrokerNotAvailable) || errors.Is(err, kafka.NotController) || errors.Is(err, kafka.LeaderNotAvailable)
		if !starting || time.Now().After(deadline) {
			return resp, err
		}
		if Diagnose(ctx, cfg) != nil {
			return resp, err // the connection is refused: Explain says why
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitLeaders polls fresh metadata until every partition of topics has a
// leader. A new connection per round avoids any client-side metadata cache.
func waitLeaders(ctx context.Context, cfg Config, topics []string) error {
	dialer, err := cfg.Dialer()
	if err != nil {
		return err
	}
	var last error
	for {
		last = leadersReady(ctx, dialer, cfg.Brokers, topics)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: topics not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func leadersReady(ctx context.Context, dialer *kafka.Dialer, brokers, topics []string) error {
	var last error
	for _, addr := range brokers {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			last = err
			continue
		}
		parts, err := conn.ReadPartitions(topics...)
		conn.Close()
		if err != nil {
			return err
		}
		seen := make(map[string]bool, len(topics))
		for _, p := range parts {
			if p.Error != nil {
				return fmt.Errorf("topic %s partition %d: %w", p.Topic, p.ID, p.Error)
			}
			if p.Leader.Host == "" {
				return fmt.Errorf("topic %s partition %d has no leader", p.Topic, p.ID)
			}
			seen[p.Topic] = true
		}
		for _, t := range topics {
			if !seen[t] {
				return fmt.Errorf("topic %s not in metadata yet", t)
			}
		}
		return nil
	}
	return last
}

// DeleteTopics deletes topics (those that do not exist are skipped), for
// tools that create throwaway topics, such as the bench.
func DeleteTopics(ctx context.Context, cfg Config, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	transport, err := cfg.Transport()
	if err != nil {
		return err
	}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transport, Timeout: 30 * time.Second}
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("kafka: delete topics: %w", err)
	}
	for t, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("kafka: delete topic %s: %w", t, err)
		}
	}
	return nil
}

// DeleteTopicsWithPrefix deletes every topic whose name starts with prefix
// (not empty) and returns how many it deleted.
func DeleteTopicsWithPrefix(ctx context.Context, cfg Config, prefix string) (int, error) {
	if prefix == "" {
		return 0, errors.New("kafka: delete topics: an empty prefix would delete everything")
	}
	transport, err := cfg.Transport()
	if err != nil {
		return 0, err
	}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transport, Timeout: 30 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return 0, fmt.Errorf("kafka: metadata: %w", err)
	}
	var names []string
	for _, t := range md.Topics {
		if strings.HasPrefix(t.Name, prefix) {
			names = append(names, t.Name)
		}
	}
	return len(names), DeleteTopics(ctx, cfg, names...)
}
