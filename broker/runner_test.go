package broker

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/fault"
)

// chanConsumer serves a fixed list of messages, then blocks until ctx ends.
type chanConsumer struct {
	msgs chan Message

	mu        sync.Mutex
	committed map[int]int64 // partition → highest committed offset
	order     map[int][]int64
}

func newChanConsumer(msgs []Message) *chanConsumer {
	c := &chanConsumer{msgs: make(chan Message, len(msgs)), committed: map[int]int64{}, order: map[int][]int64{}}
	for _, m := range msgs {
		c.msgs <- m
	}
	return c
}

func (c *chanConsumer) Fetch(ctx context.Context) (Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

func (c *chanConsumer) Commit(ctx context.Context, msgs ...Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		c.committed[m.Partition] = m.Offset
		c.order[m.Partition] = append(c.order[m.Partition], m.Offset)
	}
	return nil
}

type recordingProducer struct {
	mu   sync.Mutex
	outs []Output
	fail int // fail this many calls first
}

func (p *recordingProducer) Produce(ctx context.Context, outs ...Output) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return errors.New("broker unreachable")
	}
	p.outs = append(p.outs, outs...)
	return nil
}

// TestRunnerCommitsOnlyContiguousFinishedPrefix holds back one message of a
// partition and checks that nothing after it is committed until it is done,
// although later messages finished first.
func TestRunnerCommitsOnlyContiguousFinishedPrefix(t *testing.T) {
	var msgs []Message
	for p := 0; p < 2; p++ {
		for o := int64(0); o < 10; o++ {
			msgs = append(msgs, Message{Topic: "t", Partition: p, Offset: o, Value: []byte{byte(o)}})
		}
	}
	release := make(chan struct{})
	laterDone := make(chan struct{}, 32)
	h := HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
		if m.Partition == 0 && m.Offset == 3 {
			<-release
		} else if m.Partition == 0 && m.Offset > 3 {
			laterDone <- struct{}{}
		}
		return Result{Outputs: []Output{{Topic: "out", Value: m.Value}}}, nil
	})
	cons := newChanConsumer(msgs)
	prod := &recordingProducer{}
	committed := make(chan Message, 64)
	r := &Runner{Consumer: cons, Producer: prod, Handler: h, InFlight: 32,
		OnCommit: func(m Message) { committed <- m }}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()

	// Wait until the six later messages of partition 0 are handled.
	for i := 0; i < 6; i++ {
		<-laterDone
	}
	// Partition 1 completes fully; partition 0 must stay at offset 2.
	waitCommitted(t, committed, func() bool {
		cons.mu.Lock()
		defer cons.mu.Unlock()
		return cons.committed[1] == 9
	})
	cons.mu.Lock()
	if got, ok := cons.committed[0]; ok && got > 2 {
		cons.mu.Unlock()
		t.Fatalf("partition 0 committed up to %d while offset 3 is in flight", got)
	}
	cons.mu.Unlock()

	close(release)
	waitCommitted(t, committed, func() bool {
		cons.mu.Lock()
		defer cons.mu.Unlock()
		return cons.committed[0] == 9
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(prod.outs) != len(msgs) {
		t.Fatalf("published %d outputs, want %d", len(prod.outs), len(msgs))
	}
	for p, order := range cons.order {
		for i := 1; i < len(order); i++ {
			if order[i] <= order[i-1] {
				t.Fatalf("partition %d commits not increasing: %v", p, order)
			}
		}
	}
}

func waitCommitted(t *testing.T, ch <-chan Message, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("timed out waiting for commits")
		}
	}
}

// TestRunnerRetriesTransientFailures makes the handler fail twice and the
// producer once; the message is published exactly once and then committed.
func TestRunnerRetriesTransientFailures(t *testing.T) {
	var mu sync.Mutex
	attempts := 0
	h := HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts <= 2 {
			return Result{}, errors.New("store unreachable")
		}
		return Result{Outputs: []Output{{Topic: "out", Value: m.Value}}}, nil
	})
	cons := newChanConsumer([]Message{{Topic: "t", Partition: 0, Offset: 7, Value: []byte("x")}})
	prod := &recordingProducer{fail: 1}
	committed := make(chan Message, 4)
	r := &Runner{Consumer: cons, Producer: prod, Handler: h, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
		OnCommit: func(m Message) { committed <- m }}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	select {
	case m := <-committed:
		if m.Offset != 7 {
			t.Fatalf("committed offset %d", m.Offset)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message never committed")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if attempts != 4 || len(prod.outs) != 1 {
		t.Fatalf("attempts=%d outputs=%d, want 4 handler calls and 1 output", attempts, len(prod.outs))
	}
}

// TestRunnerShutdownLeavesUnfinishedUncommitted cancels while a message is
// stuck; after the drain timeout it must not be committed.
func TestRunnerShutdownLeavesUnfinishedUncommitted(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
		close(started)
		<-ctx.Done()
		return Result{}, ctx.Err()
	})
	cons := newChanConsumer([]Message{{Topic: "t", Partition: 0, Offset: 0}})
	r := &Runner{Consumer: cons, Producer: &recordingProducer{}, Handler: h, DrainTimeout: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	<-started
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(cons.order[0]) != 0 {
		t.Fatalf("a message that never finished was committed: %v", cons.order[0])
	}
}

// TestRunnerStopsOnFetchError reports a transport failure retrying cannot
// fix (classified permanent) instead of spinning.
func TestRunnerStopsOnFetchError(t *testing.T) {
	r := &Runner{Consumer: eofConsumer{}, Producer: &recordingProducer{}, Handler: HandlerFunc(func(context.Context, Message) (Result, error) { return Result{}, nil })}
	if err := r.Run(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("Run = %v, want io.EOF", err)
	}
}

type eofConsumer struct{}

func (eofConsumer) Fetch(context.Context) (Message, error) {
	return Message{}, fault.Permanent("closed", io.EOF)
}
func (eofConsumer) Commit(context.Context, ...Message) error { return nil }

// flakyConsumer fails its first fails fetches transiently (a Kafka node
// died), then serves its messages.
type flakyConsumer struct {
	*chanConsumer
	mu    sync.Mutex
	fails int
}

func (c *flakyConsumer) Fetch(ctx context.Context) (Message, error) {
	c.mu.Lock()
	if c.fails > 0 {
		c.fails--
		c.mu.Unlock()
		return Message{}, errors.New("failed to dial: connection refused")
	}
	c.mu.Unlock()
	return c.chanConsumer.Fetch(ctx)
}

// TestRunnerFetchesAgainAfterTransientFetchErrors: a fetch that fails
// transiently (a Kafka node away) does not end Run: it fetches again and
// the messages behind the failures are handled and committed.
func TestRunnerFetchesAgainAfterTransientFetchErrors(t *testing.T) {
	cons := &flakyConsumer{chanConsumer: newChanConsumer([]Message{{Topic: "t", Partition: 0, Offset: 3, Value: []byte("x")}}), fails: 5}
	committed := make(chan Message, 1)
	r := &Runner{Consumer: cons, Producer: &recordingProducer{}, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
		Handler: HandlerFunc(func(_ context.Context, m Message) (Result, error) {
			return Result{Outputs: []Output{{Topic: "out", Value: m.Value}}}, nil
		}),
		OnCommit: func(m Message) { committed <- m }}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	select {
	case m := <-committed:
		if m.Offset != 3 {
			t.Fatalf("committed offset %d", m.Offset)
		}
	case err := <-errc:
		t.Fatalf("Run ended on a transient fetch error: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("message never committed")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if cons.fails != 0 {
		t.Fatalf("%d failures left unfetched", cons.fails)
	}
}

// flakyCommitConsumer fails its first fails commits (the coordinator's
// node died), then commits as chanConsumer does.
type flakyCommitConsumer struct {
	*chanConsumer
	mu    sync.Mutex
	fails int
}

func (c *flakyCommitConsumer) Commit(ctx context.Context, msgs ...Message) error {
	c.mu.Lock()
	if c.fails > 0 {
		c.fails--
		c.mu.Unlock()
		return errors.New("write: use of closed network connection")
	}
	c.mu.Unlock()
	return c.chanConsumer.Commit(ctx, msgs...)
}

// TestRunnerCommitsAgainAfterAFailedCommit: a commit that fails is made
// again (with the next batch or at shutdown), and a shutdown whose last
// commit succeeded is clean.
func TestRunnerCommitsAgainAfterAFailedCommit(t *testing.T) {
	cons := &flakyCommitConsumer{chanConsumer: newChanConsumer([]Message{{Topic: "t", Partition: 0, Offset: 4, Value: []byte("x")}}), fails: 1}
	handled := make(chan struct{}, 1)
	r := &Runner{Consumer: cons, Producer: &recordingProducer{},
		Handler: HandlerFunc(func(_ context.Context, m Message) (Result, error) {
			handled <- struct{}{}
			return Result{Outputs: []Output{{Topic: "out", Value: m.Value}}}, nil
		})}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	<-handled
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v after the commit succeeded the second time", err)
	}
	cons.mu.Lock()
	defer cons.mu.Unlock()
	if cons.fails != 0 || cons.committed[0] != 4 {
		t.Fatalf("fails left %d, committed %v; want the failed commit made again", cons.fails, cons.committed)
	}
}
