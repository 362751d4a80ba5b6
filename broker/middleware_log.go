package broker

import (
	"context"

	"go.uber.org/zap"
)

// Log logs each handled message at debug level and each transient failure
// at warn. It logs routing facts and outcomes only — never payload, subject
// ID numbers or names.
func Log(log *zap.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
			res, err := next.Handle(ctx, m)
			if err != nil {
				log.Warn("message not handled", zap.String("topic", m.Topic),
					zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset), zap.Error(err))
				return res, err
			}
			if ce := log.Check(zap.DebugLevel, "message handled"); ce != nil {
				ce.Write(zap.String("topic", m.Topic), zap.Int("partition", m.Partition),
					zap.Int64("offset", m.Offset), zap.String("agency", res.Agency),
					zap.String("query", res.Query), zap.String("outcome", res.Outcome),
					zap.String("reason", res.Reason), zap.Bool("redelivery", res.Redelivery))
			}
			return res, err
		})
	}
}
