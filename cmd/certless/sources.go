package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/config"
)

// sources are the opened record sources and the router over them.
type sources struct {
	router  *broker.Router
	closers []func() error
}

func (s *sources) close() {
	for _, c := range s.closers {
		_ = c()
	}
}

// sqlOptions is the options block of an adapter of type "sql".
type sqlOptions struct {
	// DSN is postgres://… (a read-only role) or an SQLite file path.
	DSN      string `yaml:"dsn"`
	MaxConns int    `yaml:"max_conns"`
}

// openSources opens every configured adapter and registers it with the
// router under its region code.
func openSources(ctx context.Context, cfg *config.Config, log *zap.Logger) (*sources, error) {
	s := &sources{router: broker.NewRouter()}
	for _, a := range cfg.Adapters {
		src, closeFn, err := openSource(ctx, a, cfg.Limits.AnswerTimeout.D())
		if err != nil {
			s.close()
			return nil, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		s.closers = append(s.closers, closeFn)
		s.router.Add(a.Region, a.Name, src)
		log.Info("record source ready", zap.String("name", a.Name), zap.String("type", a.Type), zap.String("region", a.Region), zap.String("level", a.Level))
	}
	if len(cfg.Adapters) == 0 {
		log.Warn("no record sources configured: every request will be answered not_found/no_jurisdiction")
	}
	return s, nil
}

func openSource(ctx context.Context, a config.Adapter, timeout time.Duration) (adapters.Source, func() error, error) {
	switch a.Type {
	case "sql":
		var o sqlOptions
		if err := a.DecodeOptions(&o); err != nil {
			return nil, nil, err
		}
		if o.DSN == "" {
			return nil, nil, fmt.Errorf("options.dsn is required")
		}
		src, err := sqlsource.Open(ctx, o.DSN, sqlsource.Options{Name: a.Name, MaxConns: o.MaxConns})
		if err != nil {
			return nil, nil, err
		}
		return src, src.Close, nil
	default:
		return nil, nil, fmt.Errorf("unknown adapter type %q (want sql or http)", a.Type)
	}
}
