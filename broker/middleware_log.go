package broker

import (
	"context"

	"go.uber.org/zap"
)

// Log logs each handled message at debug level. It logs routing facts and
// outcomes only — never payload, subject ID numbers or names. Failed
// attempts are logged once, by Retry, where they are retried; dead letters
// once, by the pipeline, where they are made.
func Log(log *zap.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
			res, err := next.Handle(ctx, m)
			if err != nil {
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
