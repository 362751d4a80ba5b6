package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	kafkago "github.com/segmentio/kafka-go"

	bkafka "github.com/certless/certless/broker/kafka"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
)

// Client sends an agency's requests and awaits their receipts over Kafka.
type Client struct {
	Kafka bkafka.Config
	// RequestTopic and ReceiptTopic are the agency's topics
	// (<prefix><agency>.requests and .receipts).
	RequestTopic, ReceiptTopic string
	// BrokerKeys verifies receipts; Decrypt opens confidential ones.
	BrokerKeys envelope.KeyResolver
	Decrypt    *keys.Private

	once     sync.Once
	producer *bkafka.Producer
	err      error
}

// Close releases the client's connections.
func (c *Client) Close() error {
	if c.producer != nil {
		return c.producer.Close()
	}
	return nil
}

// Send produces signed requests to the request topic and returns once the
// cluster acknowledged them.
func (c *Client) Send(ctx context.Context, reqs ...Signed) error {
	c.once.Do(func() { c.producer, c.err = bkafka.NewProducer(c.Kafka, bkafka.ProducerOptions{}) })
	if c.err != nil {
		return fmt.Errorf("client: %w", c.err)
	}
	msgs := make([]bkafka.Message, len(reqs))
	for i, r := range reqs {
		msgs[i] = bkafka.Message{Topic: c.RequestTopic, Key: []byte(r.ID), Value: r.Bytes}
	}
	if err := c.producer.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	return nil
}

// Request sends one signed request and waits for its verified receipt.
func (c *Client) Request(ctx context.Context, s Signed) (*Receipt, error) {
	w, err := c.Watch(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := c.Send(ctx, s); err != nil {
		return nil, err
	}
	got, err := w.Await(ctx, map[string]string{s.Digest: s.ID})
	if err != nil {
		return nil, err
	}
	return got[s.Digest], nil
}

// Watch starts reading the receipt topic from its current end, so that a
// receipt for a request sent after Watch returns cannot be missed.
func (c *Client) Watch(ctx context.Context) (*Watcher, error) {
	dialer, err := c.Kafka.Dialer()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	conn, err := dialer.DialContext(ctx, "tcp", c.Kafka.Brokers[0])
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	parts, err := conn.ReadPartitions(c.ReceiptTopic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("client: receipt topic %s: %w", c.ReceiptTopic, err)
	}
	w := &Watcher{c: c, out: make(chan rawReceipt, 64), errs: make(chan error, len(parts))}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	for _, p := range parts {
		lc, err := dialer.DialLeader(ctx, "tcp", c.Kafka.Brokers[0], c.ReceiptTopic, p.ID)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("client: partition %d leader: %w", p.ID, err)
		}
		end, err := lc.ReadLastOffset()
		lc.Close()
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("client: partition %d end offset: %w", p.ID, err)
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers: c.Kafka.Brokers, Topic: c.ReceiptTopic, Partition: p.ID,
			Dialer: dialer, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: defaultMaxWait,
		})
		if err := r.SetOffset(end); err != nil {
			r.Close()
			w.Close()
			return nil, fmt.Errorf("client: partition %d seek: %w", p.ID, err)
		}
		w.readers = append(w.readers, r)
		w.wg.Add(1)
		go w.read(rctx, r)
	}
	return w, nil
}

// Watcher reads receipts produced after it started.
type Watcher struct {
	c       *Client
	readers []*kafkago.Reader
	out     chan rawReceipt
	errs    chan error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type rawReceipt struct {
	key, value []byte
	digest     string
}

func (w *Watcher) read(ctx context.Context, r *kafkago.Reader) {
	defer w.wg.Done()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.errs <- err
			}
			return
		}
		rr := rawReceipt{key: m.Key, value: m.Value}
		for _, h := range m.Headers {
			if h.Key == "certless-request-digest" {
				rr.digest = string(h.Value)
			}
		}
		select {
		case w.out <- rr:
		case <-ctx.Done():
			return
		}
	}
}

// ErrConflictingReceipts means two different receipts arrived for one
// request: the broker's exactly-one-answer promise was broken.
var ErrConflictingReceipts = errors.New("client: two different receipts for one request")

// Await waits until a verified receipt has arrived for every request digest
// in want (digest → request id) and returns them by digest. Redelivered
// copies of the same receipt are ignored.
func (w *Watcher) Await(ctx context.Context, want map[string]string) (map[string]*Receipt, error) {
	got := make(map[string]*Receipt, len(want))
	for len(got) < len(want) {
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("client: waiting for %d of %d receipts: %w", len(want)-len(got), len(want), ctx.Err())
		case err := <-w.errs:
			return got, fmt.Errorf("client: read receipts: %w", err)
		case rr := <-w.out:
			if _, ok := want[rr.digest]; !ok && rr.digest != "" {
				continue
			}
			rec, err := VerifyReceipt(rr.value, w.c.BrokerKeys, w.c.Decrypt)
			if err != nil {
				return got, err
			}
			if _, ok := want[rec.RequestDigest]; !ok {
				continue
			}
			if prev, ok := got[rec.RequestDigest]; ok {
				if string(prev.Raw) != string(rec.Raw) {
					return got, ErrConflictingReceipts
				}
				continue
			}
			got[rec.RequestDigest] = rec
		}
	}
	return got, nil
}

// Close stops reading.
func (w *Watcher) Close() {
	if w.cancel != nil {
		w.cancel()
	}
	for _, r := range w.readers {
		r.Close()
	}
	w.wg.Wait()
}
