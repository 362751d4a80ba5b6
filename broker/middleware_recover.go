package broker

import (
	"context"
	"fmt"
	"runtime/debug"

	"go.uber.org/zap"
)

// Recover turns a panic while handling a message into a dead-letter entry
// (reason internal_error), so one poison message cannot crash or stall the
// broker. The stack goes to the log; the message bytes do not.
func Recover(topics Topics, log *zap.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (res Result, err error) {
			defer func() {
				if v := recover(); v != nil {
					log.Error("panic while handling a message; sent to dead letter",
						zap.String("topic", m.Topic), zap.Int("partition", m.Partition),
						zap.Int64("offset", m.Offset), zap.String("panic", fmt.Sprint(v)),
						zap.ByteString("stack", debug.Stack()))
					p := Pipeline{Topics: topics}
					res, err = p.deadLetter(m, "", ReasonInternal, "panic while handling"), nil
				}
			}()
			return next.Handle(ctx, m)
		})
	}
}
