package broker

import (
	"context"
	"time"
)

// Message is one consumed Kafka record.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
}

// Output is one record to produce.
type Output struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers map[string]string
}

// Result is what handling one message produced: the records to publish and
// a summary with bounded values for metrics and logs (never personal data).
type Result struct {
	Outputs []Output
	// Agency is the authenticated (or, for dead letters, claimed-by-topic)
	// agency; Query the query type; Outcome the decision or "dead_letter";
	// Reason the stable reason code, "" when answered.
	Agency, Query, Outcome, Reason string
	// Redelivery is true when a stored receipt was re-emitted.
	Redelivery bool

	// logEntry is the transparency-log leaf a dead letter still has to
	// append before it is published (Pipeline.logDeadLetter).
	logEntry *logEntry
}

// logEntry is a leaf to append under a unique key.
type logEntry struct {
	key  string
	leaf []byte
}

// OutcomeDeadLetter marks a message that went to the dead-letter topic.
const OutcomeDeadLetter = "dead_letter"

// Handler handles one message. A returned error means the message could not
// be handled now and must be retried; it is never committed.
type Handler interface {
	Handle(ctx context.Context, m Message) (Result, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m Message) (Result, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m Message) (Result, error) { return f(ctx, m) }

// Middleware wraps a Handler with one concern.
type Middleware func(Handler) Handler

// Chain wraps h so that the first middleware is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
