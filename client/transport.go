package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
)

// Client sends an agency's requests and awaits their receipts over Kafka.
type Client struct {
	Kafka bkafka.Config
	// RequestTopic and ReceiptTopic are the agency's topics
	// (<prefix><agency>.requests and .receipts).
	RequestTopic, ReceiptTopic string
	// Broker verifies receipts: only its receipts are accepted. Decrypt
	// opens confidential ones.
	Broker  *Broker
	Decrypt *keys.Private
	// Agency is the sending agency; when set, Await accepts only receipts
	// whose request_agency is Agency.
	Agency string
	// Log receives a warning for each receipt record Await skips; nil
	// means no logging.
	Log *zap.Logger

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
	t, err := TailTopic(ctx, c.Kafka, c.ReceiptTopic)
	if err != nil {
		return nil, err
	}
	return &Watcher{c: c, src: t, stop: t.Close}, nil
}

// Watcher reads receipts produced after it started.
type Watcher struct {
	c    *Client
	src  records
	stop func()
}

// records is what Await reads from; *Tail implements it.
type records interface {
	// Next returns the next record; an error ends Await.
	Next(ctx context.Context) (Record, error)
}

var _ records = (*Tail)(nil)

// Record is one record read by a Tail.
type Record struct {
	// Topic, Partition and Offset say where the record was read.
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string
}

// Tail reads every partition of a topic from the end offsets it saw when it
// started: it sees exactly the records produced afterwards.
type Tail struct {
	readers []*kafkago.Reader
	out     chan Record
	errs    chan error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// TailTopic starts a Tail on topic.
func TailTopic(ctx context.Context, cfg bkafka.Config, topic string) (*Tail, error) {
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	conn, broker, err := dialAny(ctx, dialer, cfg.Brokers)
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("client: topic %s: %w", topic, err)
	}
	t := &Tail{out: make(chan Record, 64), errs: make(chan error, len(parts))}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel = cancel
	for _, p := range parts {
		end, err := lastOffset(ctx, dialer, broker, topic, p.ID)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("client: %s partition %d end offset: %w", topic, p.ID, err)
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers: cfg.Brokers, Topic: topic, Partition: p.ID,
			Dialer: dialer, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: defaultMaxWait,
		})
		if err := r.SetOffset(end); err != nil {
			r.Close()
			t.Close()
			return nil, fmt.Errorf("client: %s partition %d seek: %w", topic, p.ID, err)
		}
		t.readers = append(t.readers, r)
		t.wg.Add(1)
		go t.read(rctx, r)
	}
	return t, nil
}

// read delivers r's records until ctx ends or r is closed. A transient
// read error (a Kafka node died, the partition's leader moves) is not the
// end: the reader reconnects by itself, with its own backoff, to whichever
// node leads the partition now. Only an error retrying cannot fix (access
// refused) ends the Tail.
func (t *Tail) read(ctx context.Context, r *kafkago.Reader) {
	defer t.wg.Done()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			var kerr kafkago.Error
			if errors.As(err, &kerr) && !kerr.Temporary() {
				t.errs <- err
				return
			}
			pause := time.NewTimer(readErrorPause)
			select {
			case <-ctx.Done():
				pause.Stop()
				return
			case <-pause.C:
			}
			continue
		}
		rec := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: map[string]string{}}
		for _, h := range m.Headers {
			rec.Headers[h.Key] = string(h.Value)
		}
		select {
		case t.out <- rec:
		case <-ctx.Done():
			return
		}
	}
}

// readErrorPause is the pause after a transient read error: the reader
// backs off by itself; this only bounds a busy loop.
const readErrorPause = 10 * time.Millisecond

// dialAny connects to the first of brokers that answers, so one node down
// does not stop a Tail from starting.
func dialAny(ctx context.Context, dialer *kafkago.Dialer, brokers []string) (*kafkago.Conn, string, error) {
	var errs []error
	for _, b := range brokers {
		conn, err := dialer.DialContext(ctx, "tcp", b)
		if err == nil {
			return conn, b, nil
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

// lastOffset reads a partition's end offset, waiting out the moments after
// topic creation when its leader is not yet known.
func lastOffset(ctx context.Context, dialer *kafkago.Dialer, broker, topic string, partition int) (int64, error) {
	backoff := 50 * time.Millisecond
	for {
		lc, err := dialer.DialLeader(ctx, "tcp", broker, topic, partition)
		if err == nil {
			var end int64
			end, err = lc.ReadLastOffset()
			lc.Close()
			if err == nil {
				return end, nil
			}
		}
		var kerr kafkago.Error
		if !errors.As(err, &kerr) || !kerr.Temporary() {
			return 0, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Next returns the next record.
func (t *Tail) Next(ctx context.Context) (Record, error) {
	select {
	case <-ctx.Done():
		return Record{}, ctx.Err()
	case err := <-t.errs:
		return Record{}, fmt.Errorf("client: read: %w", err)
	case r := <-t.out:
		return r, nil
	}
}

// Close stops reading.
func (t *Tail) Close() {
	if t.cancel != nil {
		t.cancel()
	}
	for _, r := range t.readers {
		r.Close()
	}
	t.wg.Wait()
}

// ErrConflictingReceipts means two different receipts arrived for one
// request: the broker's exactly-one-answer promise was broken.
var ErrConflictingReceipts = errors.New("client: two different receipts for one request")

// headerRequestDigest is the record header the broker sets on a receipt
// to the digest of the request it answers. It is a routing hint only: the
// digest that counts is the one in the verified receipt.
const headerRequestDigest = "certless-request-digest"

// Await waits until a verified receipt has arrived for every request digest
// in want (digest → request id) and returns them by digest.
//
// Each record is verified with VerifyReceipt against Client.Broker,
// expecting the digest its certless-request-digest header names (a record
// without the header is accepted when its verified body names a wanted
// digest) and, when set, Client.Agency as request agency. A record naming a
// digest not in want is passed over unverified: it answers another
// client's request. A record that fails verification is logged once at
// warn on Client.Log (where it was read and why, never its value) and
// skipped, so no bad record can stop Await. Redelivered copies of the same
// receipt are ignored; a different verified receipt for a request already
// answered is ErrConflictingReceipts. A read error or the end of ctx ends
// Await with the receipts got so far.
func (w *Watcher) Await(ctx context.Context, want map[string]string) (map[string]*Receipt, error) {
	if w.c.Broker == nil {
		return nil, errors.New("client: Client.Broker is not set: no key to verify receipts with")
	}
	log := w.c.Log
	if log == nil {
		log = zap.NewNop()
	}
	got := make(map[string]*Receipt, len(want))
	for len(got) < len(want) {
		rec, err := w.src.Next(ctx)
		if err != nil {
			return got, fmt.Errorf("client: waiting for %d of %d receipts: %w", len(want)-len(got), len(want), err)
		}
		d := rec.Headers[headerRequestDigest]
		if d != "" {
			if _, ok := want[d]; !ok {
				continue
			}
		}
		r, err := VerifyReceipt(rec.Value, w.c.Broker, Expect{RequestAgency: w.c.Agency, RequestDigest: d, Decrypt: w.c.Decrypt})
		if err != nil {
			log.Warn("skipping a receipt record that does not verify",
				zap.String("topic", rec.Topic), zap.Int("partition", rec.Partition), zap.Int64("offset", rec.Offset),
				zap.String("key", clip(string(rec.Key), 64)), zap.String("error", clip(err.Error(), 512)))
			continue
		}
		if _, ok := want[r.RequestDigest]; !ok {
			continue
		}
		if prev, ok := got[r.RequestDigest]; ok {
			if !bytes.Equal(prev.Raw, r.Raw) {
				return got, fmt.Errorf("%w: %s", ErrConflictingReceipts, r.RequestDigest)
			}
			continue
		}
		got[r.RequestDigest] = r
	}
	return got, nil
}

// clip bounds what a record can put in a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Close stops reading.
func (w *Watcher) Close() {
	if w.stop != nil {
		w.stop()
	}
}

// ReadTopic reads one partition of topic from its first record to the end
// offset it sees when called, at most max records (a bound against a
// topic larger than the reader meant to hold).
func ReadTopic(ctx context.Context, cfg bkafka.Config, topic string, partition, max int) ([]Record, error) {
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	conn, broker, err := dialAny(ctx, dialer, cfg.Brokers)
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	conn.Close()
	end, err := lastOffset(ctx, dialer, broker, topic, partition)
	if err != nil {
		return nil, fmt.Errorf("client: %s partition %d end offset: %w", topic, partition, err)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: partition,
		Dialer: dialer, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: defaultMaxWait})
	defer r.Close()
	if err := r.SetOffset(kafkago.FirstOffset); err != nil {
		return nil, fmt.Errorf("client: %s seek: %w", topic, err)
	}
	var out []Record
	for end > 0 {
		if len(out) == max {
			return out, fmt.Errorf("client: %s holds more than %d records", topic, max)
		}
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return out, fmt.Errorf("client: read %s: %w", topic, err)
		}
		rec := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: map[string]string{}}
		for _, h := range m.Headers {
			rec.Headers[h.Key] = string(h.Value)
		}
		out = append(out, rec)
		if m.Offset+1 >= end {
			break
		}
	}
	return out, nil
}
