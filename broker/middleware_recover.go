package broker

import (
	"context"
	"fmt"
	"runtime/debug"

	"go.uber.org/zap"
)

// Panicked answers a message whose handling panicked: Pipeline.Fail with
// outcome internal_error, so the authenticated sender gets a signed
// internal_error receipt and anyone else a dead letter.
type Panicked func(ctx context.Context, m Message) (Result, error)

// Recover turns a panic while handling a message into an answer through
// panicked, so one poison message can neither crash nor stall the broker.
// When answering panics too, the message becomes a dead letter
// (internal_error). The stack goes to the log; the message bytes do not.
func Recover(topics Topics, panicked Panicked, log *zap.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (res Result, err error) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				log.Error("panic while handling a message", zap.String("topic", m.Topic), zap.Int("partition", m.Partition),
					zap.Int64("offset", m.Offset), zap.String("panic", fmt.Sprint(v)), zap.ByteString("stack", debug.Stack()))
				res, err = answerPanic(ctx, topics, panicked, log, m)
			}()
			return next.Handle(ctx, m)
		})
	}
}

func answerPanic(ctx context.Context, topics Topics, panicked Panicked, log *zap.Logger, m Message) (res Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			log.Error("panic while answering a panicked message; sent to dead letter", zap.String("topic", m.Topic),
				zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset), zap.String("panic", fmt.Sprint(v)))
			p := Pipeline{Topics: topics, Log: log}
			res, err = p.deadLetter(m, "", ReasonInternal, "panic while handling"), nil
		}
	}()
	if panicked == nil {
		panic("no panic handler")
	}
	return panicked(ctx, m)
}
