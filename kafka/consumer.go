package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/certless/certless/fault"
)

// MaxFetchBytes bounds ConsumerOptions.MaxBytes.
const MaxFetchBytes = 16 << 20

// ConsumerOptions configures a Consumer. GroupID and Topics are required;
// zero values of the rest take the defaults shown.
type ConsumerOptions struct {
	GroupID string
	Topics  []string
	// SessionTimeout is how long the group coordinator waits for a silent
	// member before giving its partitions to others (10s). The embedded
	// cluster and Kafka's default refuse less than 6s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the member reports alive (1s); it must
	// be well under SessionTimeout.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long a rebalance waits for members to rejoin
	// (30s).
	RebalanceTimeout time.Duration
	// MaxBytes bounds one fetch response (1 MiB, at most MaxFetchBytes).
	MaxBytes int
	// MaxWait is how long the broker may hold a fetch with no data (1s).
	MaxWait time.Duration
	// StartFromLatest makes a group with no committed offset start at the
	// end of each partition; by default it starts at the beginning so
	// nothing produced before the first join is missed.
	StartFromLatest bool
	// Logger receives kafka-go's diagnostics; nil discards them.
	Logger *zap.Logger
}

// Consumer reads a consumer group over several topics. Offsets are committed
// only by Commit: kafka-go's periodic auto-commit is off. Fetch and Commit may
// be called from different goroutines.
type Consumer struct {
	r *kafka.Reader
}

// NewConsumer joins the group in the background; the first Fetch waits for
// the assignment.
func NewConsumer(cfg Config, opts ConsumerOptions) (*Consumer, error) {
	if opts.GroupID == "" {
		return nil, errors.New("kafka: consumer needs a group id")
	}
	if len(opts.Topics) == 0 {
		return nil, errors.New("kafka: consumer needs at least one topic")
	}
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = 10 * time.Second
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = time.Second
	}
	if opts.HeartbeatInterval*3 > opts.SessionTimeout {
		return nil, fmt.Errorf("kafka: heartbeat interval %v must be at most a third of session timeout %v",
			opts.HeartbeatInterval, opts.SessionTimeout)
	}
	if opts.RebalanceTimeout == 0 {
		opts.RebalanceTimeout = 30 * time.Second
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 1 << 20
	}
	if opts.MaxBytes < 0 || opts.MaxBytes > MaxFetchBytes {
		return nil, fmt.Errorf("kafka: consumer max bytes %d outside 1..%d", opts.MaxBytes, MaxFetchBytes)
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = time.Second
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	start := kafka.FirstOffset
	if opts.StartFromLatest {
		start = kafka.LastOffset
	}
	rc := kafka.ReaderConfig{
		Brokers:           cfg.Brokers,
		GroupID:           opts.GroupID,
		GroupTopics:       opts.Topics,
		Dialer:            dialer,
		MinBytes:          1,
		MaxBytes:          opts.MaxBytes,
		MaxWait:           opts.MaxWait,
		SessionTimeout:    opts.SessionTimeout,
		HeartbeatInterval: opts.HeartbeatInterval,
		RebalanceTimeout:  opts.RebalanceTimeout,
		// A coordinator that is still loading (a fresh cluster creates
		// __consumer_offsets on first use) is retried soon, not after 5s.
		JoinGroupBackoff: 500 * time.Millisecond,
		// Explicit commits only: CommitMessages is synchronous.
		CommitInterval: 0,
		StartOffset:    start,
		// The group leader assigns nothing at all when any topic of the
		// group is unknown to its coordinator at that moment (kafka-go
		// ignores UnknownTopicOrPartition there, as the Java client does):
		// a topic created just before a join — a docked agency's — can
		// leave every partition of every topic unconsumed. The watcher
		// rebalances once the topic's partitions are seen.
		WatchPartitionChanges:  true,
		PartitionWatchInterval: partitionWatchInterval,
	}
	if opts.Logger != nil {
		rc.Logger = debugLogger(opts.Logger)
		rc.ErrorLogger = warnLogger(opts.Logger)
	}
	if err := rc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: consumer: %w", err)
	}
	return &Consumer{r: kafka.NewReader(rc)}, nil
}

// Fetch returns the next message of any assigned partition, in offset order
// within a partition. It blocks until a message arrives or ctx ends, and
// returns io.EOF once the Consumer is closed. Fetching does not commit.
//
// Errors are classified where they arise: io.EOF (closed) and the
// cluster refusing access (authorisation, authentication) are permanent;
// anything else — a node that died, a coordinator that moved, a
// rebalance that failed its attempts — is transient: the reader keeps
// healing in the background and a later Fetch succeeds once the cluster
// answers.
func (c *Consumer) Fetch(ctx context.Context) (Message, error) {
	km, err := c.r.FetchMessage(ctx)
	if err != nil {
		return Message{}, classifyFetch(err)
	}
	return fromKafka(km), nil
}

func classifyFetch(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return fault.Permanent(ReasonConsumerClosed, err)
	case errors.Is(err, kafka.TopicAuthorizationFailed), errors.Is(err, kafka.GroupAuthorizationFailed),
		errors.Is(err, kafka.ClusterAuthorizationFailed), errors.Is(err, kafka.SASLAuthenticationFailed):
		return fault.Permanent(ReasonNotAuthorized, fmt.Errorf("kafka: fetch: %w", err))
	}
	return fault.Transient(fmt.Errorf("kafka: fetch: %w", err))
}

// Commit stores, for each partition among msgs, the offset after the
// highest message given, and returns once the coordinator has it. Commit the
// messages of a partition in order: committing a later one implies all
// earlier ones of that partition are done.
func (c *Consumer) Commit(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km[i] = kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	}
	if err := c.r.CommitMessages(ctx, km...); err != nil {
		return fmt.Errorf("kafka: commit: %w", err)
	}
	return nil
}

// Close leaves the group, so its partitions move to other members at once,
// and releases connections. Uncommitted messages are read again by whoever
// gets their partitions.
func (c *Consumer) Close() error {
	return c.r.Close()
}

// partitionWatchInterval is how often the group leader looks at each
// topic's partitions (one metadata request per topic).
const partitionWatchInterval = 2 * time.Second
