package kafka

import (
	"time"

	"github.com/segmentio/kafka-go"
)

// Message is one Kafka record as the broker pipeline sees it. Produce uses
// Topic, Key, Value and Headers; Consumer fills every field, and Commit needs
// back the Topic, Partition and Offset it filled.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	// Time is the record timestamp: set by the producer when zero.
	Time time.Time
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

func (m Message) toKafka() kafka.Message {
	km := kafka.Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Time:      m.Time,
	}
	if len(m.Headers) > 0 {
		km.Headers = make([]kafka.Header, len(m.Headers))
		for i, h := range m.Headers {
			km.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return km
}

func fromKafka(km kafka.Message) Message {
	m := Message{
		Topic:     km.Topic,
		Partition: km.Partition,
		Offset:    km.Offset,
		Key:       km.Key,
		Value:     km.Value,
		Time:      km.Time,
	}
	if len(km.Headers) > 0 {
		m.Headers = make([]Header, len(km.Headers))
		for i, h := range km.Headers {
			m.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return m
}
