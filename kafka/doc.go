// Package kafka is Certless's Kafka transport: the one place that knows how
// to reach a Kafka cluster with segmentio/kafka-go, and an in-process
// Kafka-protocol cluster for `certless dev` and fast tests.
//
// What it promises:
//
//   - [Config] turns the broker list, TLS and SASL (PLAIN, SCRAM-SHA-256,
//     SCRAM-SHA-512) settings into a [kafka.Transport] and a [kafka.Dialer];
//     every other type here is built from a Config.
//   - [EnsureTopics] creates topics idempotently and returns once every
//     partition has a leader.
//   - [Producer.Produce] is synchronous: it returns nil only after the
//     cluster acknowledged every message with acks=all. Messages carry their
//     own topic, so one Producer serves every topic.
//   - [Consumer] reads a consumer group over several topics and never commits
//     on its own: an offset moves only when [Consumer.Commit] is called, so
//     the caller commits after its output is durable (at-least-once).
//   - [StartEmbedded] runs a franz-go kfake cluster on 127.0.0.1 that the
//     same Producer, Consumer and EnsureTopics work against.
//
// kafka-go has no Kafka transactions; exactly-once effect is the job of the
// broker's idempotent decision store, not of this package.
package kafka
