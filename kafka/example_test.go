package kafka_test

import (
	"context"
	"fmt"
	"time"

	"github.com/certless/certless/kafka"
)

// A round trip through the embedded cluster: create a topic, produce
// synchronously, consume in a group and commit after handling.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cluster, err := kafka.StartEmbedded(ctx, kafka.EmbeddedOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()
	cfg := cluster.Config()

	err = kafka.EnsureTopics(ctx, cfg, kafka.TopicSpec{Name: "police.requests", Partitions: 3, ReplicationFactor: 1})
	if err != nil {
		fmt.Println(err)
		return
	}

	producer, err := kafka.NewProducer(cfg, kafka.ProducerOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer producer.Close()
	err = producer.Produce(ctx, kafka.Message{
		Topic: "police.requests",
		Key:   []byte("220581199001011234"),
		Value: []byte(`{"type":"verification_request"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	consumer, err := kafka.NewConsumer(cfg, kafka.ConsumerOptions{
		GroupID:        "certless-broker",
		Topics:         []string{"police.requests"},
		SessionTimeout: 6 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer consumer.Close()
	msg, err := consumer.Fetch(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s %s\n", msg.Topic, msg.Value)
	if err := consumer.Commit(ctx, msg); err != nil {
		fmt.Println(err)
	}
	// Output: police.requests {"type":"verification_request"}
}
