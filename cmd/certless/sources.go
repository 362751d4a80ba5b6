package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/httpsource"
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
	// DSN is postgres://… (a SELECT-only role) or an SQLite file path.
	DSN      string `yaml:"dsn"`
	MaxConns int    `yaml:"max_conns"`
}

// httpOptions is the options block of an adapter of type "http".
type httpOptions struct {
	// URL is the upstream's base URL; it answers POST <url>/v1/answer.
	URL string `yaml:"url"`
	// Timeout bounds one attempt; Attempts bounds the attempts per answer.
	Timeout  config.Duration `yaml:"timeout"`
	Attempts int             `yaml:"attempts"`
	// TripAfter consecutive failures open the circuit for OpenFor.
	TripAfter uint32          `yaml:"trip_after"`
	OpenFor   config.Duration `yaml:"open_for"`
	// AuthorizationEnv names an environment variable whose value is sent as
	// the Authorization header, so no secret is written in the config.
	AuthorizationEnv string `yaml:"authorization_env"`
}

// openSources opens every configured adapter, wraps it with metrics and
// registers it with the router under its region code.
func openSources(ctx context.Context, cfg *config.Config, log *zap.Logger, m *broker.SourceMetrics) (*sources, error) {
	s := &sources{router: broker.NewRouter()}
	for _, a := range cfg.Adapters {
		src, closeFn, err := openSource(ctx, a, m)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		s.closers = append(s.closers, closeFn)
		s.router.Add(a.Region, a.Name, m.Wrap(a.Name, src))
		log.Info("record source ready", zap.String("name", a.Name), zap.String("type", a.Type), zap.String("region", a.Region), zap.String("level", a.Level))
	}
	if len(cfg.Adapters) == 0 {
		log.Warn("no record sources configured: every request will be answered not_found/no_jurisdiction")
	}
	return s, nil
}

func openSource(ctx context.Context, a config.Adapter, m *broker.SourceMetrics) (adapters.Source, func() error, error) {
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
	case "http":
		var o httpOptions
		if err := a.DecodeOptions(&o); err != nil {
			return nil, nil, err
		}
		if o.URL == "" {
			return nil, nil, fmt.Errorf("options.url is required")
		}
		opts := httpsource.Options{
			Name: a.Name, AttemptTimeout: o.Timeout.D(), MaxAttempts: o.Attempts,
			TripAfter: o.TripAfter, OpenFor: o.OpenFor.D(),
			OnStateChange: func(from, to string) { m.CircuitChanged(a.Name, to) },
		}
		if o.AuthorizationEnv != "" {
			v := os.Getenv(o.AuthorizationEnv)
			if v == "" {
				return nil, nil, fmt.Errorf("options.authorization_env: %s is empty", o.AuthorizationEnv)
			}
			opts.Header = http.Header{"Authorization": []string{v}}
		}
		src, err := httpsource.New(o.URL, opts)
		if err != nil {
			return nil, nil, err
		}
		return src, func() error { return nil }, nil
	default:
		return nil, nil, fmt.Errorf("unknown adapter type %q (want sql or http)", a.Type)
	}
}
