package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// MaxBatchBytes is the upper bound for ProducerOptions.BatchBytes: the
// broker refuses record batches over 1 MiB (message.max.bytes) and kafka-go
// does not split them.
const MaxBatchBytes = 1<<20 - 64<<10

// ProducerOptions tunes a Producer. Zero values take the defaults shown.
type ProducerOptions struct {
	// BatchTimeout is how long a partial batch waits for more messages
	// (2ms). kafka-go's own default of 1s would make every Produce slow.
	BatchTimeout time.Duration
	// BatchSize is the most messages per partition batch (100). kafka-go
	// allocates room for BatchSize messages with every batch it starts
	// (152 bytes each), full or not: at 1000, the broker's small
	// per-partition batches made a third of its allocations and most of
	// its garbage collection.
	BatchSize int
	// BatchBytes is the most bytes per partition batch (MaxBatchBytes);
	// larger values are refused.
	BatchBytes int64
	// WriteTimeout bounds one produce request (10s).
	WriteTimeout time.Duration
	// MaxAttempts is how often a batch is tried before Produce fails (10).
	MaxAttempts int
	// Logger receives kafka-go's diagnostics; nil discards them.
	Logger *zap.Logger
}

// Producer writes messages to any topic of one cluster. It is safe for
// concurrent use.
type Producer struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewProducer returns a Producer for the cluster in cfg. It does not connect
// until the first Produce.
func NewProducer(cfg Config, opts ProducerOptions) (*Producer, error) {
	if opts.BatchTimeout == 0 {
		opts.BatchTimeout = 2 * time.Millisecond
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 100
	}
	if opts.BatchBytes == 0 {
		opts.BatchBytes = MaxBatchBytes
	}
	if opts.BatchBytes < 0 || opts.BatchBytes > MaxBatchBytes {
		return nil, fmt.Errorf("kafka: producer batch bytes %d outside 1..%d", opts.BatchBytes, MaxBatchBytes)
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 10
	}
	transport, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:      kafka.TCP(cfg.Brokers...),
		Transport: transport,
		// Same key, same partition, as with the Java client's default
		// partitioner, so order per key holds across client languages.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: opts.BatchTimeout,
		BatchSize:    opts.BatchSize,
		BatchBytes:   opts.BatchBytes,
		WriteTimeout: opts.WriteTimeout,
		MaxAttempts:  opts.MaxAttempts,
		// Topics are created on purpose (EnsureTopics), never by a typo.
		AllowAutoTopicCreation: false,
	}
	if opts.Logger != nil {
		w.Logger = debugLogger(opts.Logger)
		w.ErrorLogger = warnLogger(opts.Logger)
	}
	return &Producer{w: w, transport: transport}, nil
}

// Produce writes msgs and returns nil only after the cluster acknowledged
// every one of them with acks=all. Each message must name its topic; its
// partition is chosen from its key. On error some messages may have been
// written: callers retry the whole call and rely on idempotent consumers.
func (p *Producer) Produce(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("kafka: produce: message %d has no topic", i)
		}
		km[i] = m.toKafka()
		km[i].Partition = 0 // chosen by the balancer
		km[i].Offset = 0
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) {
			return fmt.Errorf("kafka: produce: %d of %d messages failed: %w", werrs.Count(), len(msgs), err)
		}
		return fmt.Errorf("kafka: produce: %w", err)
	}
	return nil
}

// Close flushes nothing (Produce is synchronous) and releases connections.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}

func debugLogger(l *zap.Logger) kafka.Logger {
	s := l.Sugar()
	return kafka.LoggerFunc(func(msg string, args ...any) { s.Debugf(msg, args...) })
}

func warnLogger(l *zap.Logger) kafka.Logger {
	s := l.Sugar()
	return kafka.LoggerFunc(func(msg string, args ...any) { s.Warnf(msg, args...) })
}
