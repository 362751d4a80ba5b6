package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// LagOptions tunes a LagCollector. Zero values take the defaults shown.
type LagOptions struct {
	// Timeout bounds one query of the cluster (2s), so a slow or absent
	// cluster delays a scrape by at most this much.
	Timeout time.Duration
	// CacheFor is how long one query's result — or its failure — answers
	// scrapes before the cluster is asked again (5s), so any number of
	// scrapers cost the cluster at most one query per CacheFor.
	CacheFor time.Duration
	// Logger receives a warning per failed query; nil discards them.
	Logger *zap.Logger
}

// LagCollector is a prometheus.Collector that reports how far a consumer
// group is behind on its topics, asked of the cluster at scrape time:
//
//	certless_consumer_lag_messages{topic}      messages not yet committed by the group, summed over the topic's partitions
//	certless_consumer_lag_scrape_errors_total  queries of the cluster that failed, wholly or for some topic
//
// A partition without a committed offset counts from its first offset, as a
// Consumer of the group starts there. The topic label takes only the values
// given to NewLagCollector. When a query fails, the scrape still succeeds:
// the error counter is exported and the gauge of every topic that could not
// be measured is left out, never reported stale.
type LagCollector struct {
	client    *kafka.Client
	transport *kafka.Transport
	group     string
	topics    []string
	timeout   time.Duration
	cacheFor  time.Duration
	log       *zap.Logger
	lagDesc   *prometheus.Desc
	errDesc   *prometheus.Desc

	mu     sync.Mutex // held across a query: concurrent scrapes share one
	at     time.Time  // when the last query ended; zero before the first
	lag    map[string]int64
	errors float64
}

var _ prometheus.Collector = (*LagCollector)(nil)

// NewLagCollector returns a collector of the lag of group on topics (none
// yet is allowed: see SetTopics). It does
// not connect until the first scrape.
func NewLagCollector(cfg Config, group string, topics []string, opts LagOptions) (*LagCollector, error) {
	if group == "" {
		return nil, errors.New("kafka: lag collector needs a group id")
	}
	if opts.Timeout < 0 || opts.CacheFor < 0 {
		return nil, errors.New("kafka: lag collector timeout and cache duration must not be negative")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.CacheFor == 0 {
		opts.CacheFor = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	transport, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	topics = slices.Clone(topics)
	slices.Sort(topics)
	return &LagCollector{
		client:    &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: transport},
		transport: transport,
		group:     group,
		topics:    slices.Compact(topics),
		timeout:   opts.Timeout,
		cacheFor:  opts.CacheFor,
		log:       opts.Logger,
		lagDesc: prometheus.NewDesc("certless_consumer_lag_messages",
			"Messages of a topic not yet committed by the broker's consumer group, summed over partitions.",
			[]string{"topic"}, nil),
		errDesc: prometheus.NewDesc("certless_consumer_lag_scrape_errors_total",
			"Queries of the cluster for consumer lag that failed, wholly or for some topic.",
			nil, nil),
	}, nil
}

// SetTopics replaces the topics measured (the broker follows the docking
// directory); the next scrape asks the cluster afresh.
func (c *LagCollector) SetTopics(topics []string) {
	topics = slices.Clone(topics)
	slices.Sort(topics)
	c.mu.Lock()
	c.topics, c.at = slices.Compact(topics), time.Time{}
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagDesc
	ch <- c.errDesc
}

// Collect implements prometheus.Collector. It queries the cluster when the
// cached result is older than CacheFor, bounded by Timeout.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.at.IsZero() || time.Since(c.at) >= c.cacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		lag, err := c.query(ctx)
		cancel()
		if err != nil {
			c.errors++
			c.log.Warn("consumer lag query failed", zap.String("group", c.group), zap.Error(err))
		}
		c.lag, c.at = lag, time.Now()
	}
	lag, errs, topics := c.lag, c.errors, c.topics
	c.mu.Unlock()

	ch <- prometheus.MustNewConstMetric(c.errDesc, prometheus.CounterValue, errs)
	for _, t := range topics {
		if n, ok := lag[t]; ok {
			ch <- prometheus.MustNewConstMetric(c.lagDesc, prometheus.GaugeValue, float64(n), t)
		}
	}
}

type topicPartition struct {
	topic     string
	partition int
}

// query returns the lag of every topic it could measure, and an error
// naming what failed. Connections are closed afterwards: between scrapes the
// collector holds none.
func (c *LagCollector) query(ctx context.Context) (map[string]int64, error) {
	if len(c.topics) == 0 {
		return map[string]int64{}, nil // no topic: the request would ask for all
	}
	defer c.transport.CloseIdleConnections()

	md, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: c.topics})
	if err != nil {
		return nil, fmt.Errorf("kafka: lag: metadata: %w", err)
	}
	var errs []error
	partitions := make(map[string][]int, len(c.topics))
	seen := make(map[string]bool, len(c.topics))
	for _, t := range md.Topics {
		if !slices.Contains(c.topics, t.Name) {
			continue
		}
		seen[t.Name] = true
		if t.Error != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", t.Name, t.Error))
			continue
		}
		for _, p := range t.Partitions {
			partitions[t.Name] = append(partitions[t.Name], p.ID)
		}
	}
	for _, t := range c.topics {
		if !seen[t] {
			errs = append(errs, fmt.Errorf("topic %s: not in metadata", t))
		}
	}
	if len(partitions) == 0 {
		return nil, fmt.Errorf("kafka: lag: %w", errors.Join(errs...))
	}

	// Kafka refuses a partition twice in one ListOffsets request: the ends
	// and the starts are two requests.
	end, err := c.listOffsets(ctx, partitions, kafka.LastOffset, &errs)
	if err != nil {
		return nil, err
	}
	start, err := c.listOffsets(ctx, partitions, kafka.FirstOffset, &errs)
	if err != nil {
		return nil, err
	}
	fetched, err := c.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.group, Topics: partitions})
	if err != nil {
		return nil, fmt.Errorf("kafka: lag: committed offsets of group %s: %w", c.group, err)
	}
	committed := map[topicPartition]int64{}
	switch {
	case errors.Is(fetched.Error, kafka.GroupIdNotFound):
		// A group that never joined has committed nothing (Apache Kafka
		// answers -1 per partition, other implementations this error).
		fetched.Topics = nil
		for topic, ps := range partitions {
			for _, p := range ps {
				committed[topicPartition{topic, p}] = -1
			}
		}
	case fetched.Error != nil:
		return nil, fmt.Errorf("kafka: lag: committed offsets of group %s: %w", c.group, fetched.Error)
	}
	failed := map[topicPartition]bool{}
	for topic, ps := range fetched.Topics {
		for _, p := range ps {
			tp := topicPartition{topic, p.Partition}
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("topic %s partition %d: committed offset: %w", topic, p.Partition, p.Error))
				failed[tp] = true
				continue
			}
			committed[tp] = p.CommittedOffset
		}
	}
	for topic, ps := range partitions {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if _, ok := committed[tp]; !ok && !failed[tp] {
				errs = append(errs, fmt.Errorf("topic %s partition %d: no committed offset in the answer", topic, p))
			}
		}
	}

	lag := make(map[string]int64, len(partitions))
topics:
	for topic, ps := range partitions {
		var sum int64
		for _, p := range ps {
			tp := topicPartition{topic, p}
			last, ok1 := end[tp]
			first, ok2 := start[tp]
			from, ok3 := committed[tp]
			if !ok1 || !ok2 || !ok3 {
				continue topics // its error is in errs
			}
			// No commit yet (-1), or records removed by retention: the
			// group reads from the first offset there is.
			from = max(from, first)
			sum += max(last-from, 0)
		}
		lag[topic] = sum
	}
	if len(errs) > 0 {
		return lag, fmt.Errorf("kafka: lag: %w", errors.Join(errs...))
	}
	return lag, nil
}

// listOffsets returns the first or last offset (at) of every partition. A
// partition the cluster answered for with an error, or not at all, is left
// out and its error added to partial; err means the request failed.
func (c *LagCollector) listOffsets(ctx context.Context, partitions map[string][]int, at int64, partial *[]error) (map[topicPartition]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: make(map[string][]kafka.OffsetRequest, len(partitions))}
	for topic, ps := range partitions {
		for _, p := range ps {
			req.Topics[topic] = append(req.Topics[topic], kafka.OffsetRequest{Partition: p, Timestamp: at})
		}
	}
	resp, err := c.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("kafka: lag: list offsets: %w", err)
	}
	out := map[topicPartition]int64{}
	for topic, ps := range resp.Topics {
		for _, p := range ps {
			off := p.LastOffset
			if at == kafka.FirstOffset {
				off = p.FirstOffset
			}
			if p.Error == nil && off >= 0 {
				out[topicPartition{topic, p.Partition}] = off
			}
		}
	}
	for topic, ps := range partitions {
		for _, p := range ps {
			if _, ok := out[topicPartition{topic, p}]; !ok {
				*partial = append(*partial, fmt.Errorf("topic %s partition %d: list offsets: %w", topic, p, offsetError(resp.Topics[topic], p)))
			}
		}
	}
	return out, nil
}

func offsetError(ps []kafka.PartitionOffsets, partition int) error {
	for _, p := range ps {
		if p.Partition == partition && p.Error != nil {
			return p.Error
		}
	}
	return errors.New("no offset in the answer")
}
