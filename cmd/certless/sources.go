package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
)

// sources are the opened record sources and the router over them. The
// configuration's adapters say how to reach each source; the docking
// directory says where it sits (level, region) and whether it is in
// service: route rebuilds the router from both whenever the directory
// changes, and Answer always uses one whole router.
type sources struct {
	opened  []openedSource
	router  atomic.Pointer[broker.Router]
	closers []func() error
}

type openedSource struct {
	cfg config.Adapter
	src broker.RecordSource
	// raw is the source itself, unwrapped by metrics: a change feed when it
	// keeps one.
	raw adapters.Source
}

func (s *sources) close() {
	for _, c := range s.closers {
		_ = c()
	}
}

// Answer implements broker.RecordSource with the router in force.
func (s *sources) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	return s.router.Load().Answer(ctx, q)
}

// route builds the router for a directory snapshot: a source docked in the
// directory is routed at its directory region unless suspended there; an
// adapter of the configuration the directory does not hold is routed at
// its configured region, with a warning (dock it to place it).
func (s *sources) route(snap *directory.Snapshot, log *zap.Logger) {
	r := broker.NewRouter()
	for _, o := range s.opened {
		region, level := o.cfg.Region, o.cfg.Level
		if d, ok := snap.Sources[o.cfg.Name]; ok {
			if d.Status == directory.Suspended {
				log.Warn("record source suspended in the docking directory: not routed", zap.String("name", o.cfg.Name))
				continue
			}
			region, level = d.Region, d.Level
		} else if snap.Version > 0 {
			log.Warn("record source of the configuration is not in the docking directory: routed at its configured region", zap.String("name", o.cfg.Name), zap.String("region", region))
		}
		r.Add(region, o.cfg.Name, o.src)
		log.Debug("record source routed", zap.String("name", o.cfg.Name), zap.String("region", region), zap.String("docking_level", level))
	}
	if len(r.Regions()) == 0 {
		log.Warn("no record source is routed: every request will be answered not_found/no_jurisdiction")
	}
	s.router.Store(r)
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

// openSources opens every configured adapter and wraps it with metrics;
// route places them.
func openSources(ctx context.Context, cfg *config.Config, log *zap.Logger, m *broker.SourceMetrics) (*sources, error) {
	s := &sources{}
	s.router.Store(broker.NewRouter())
	for _, a := range cfg.Adapters {
		src, closeFn, err := openSource(ctx, a, m)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		s.closers = append(s.closers, closeFn)
		s.opened = append(s.opened, openedSource{cfg: a, src: m.Wrap(a.Name, src), raw: src})
		log.Info("record source ready", zap.String("name", a.Name), zap.String("type", a.Type), zap.String("region", a.Region), zap.String("docking_level", a.Level))
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

// feedFor is the most specific opened source covering region (county,
// prefecture, province) that keeps a change feed, and its name.
func (s *sources) feedFor(region string) (adapters.ChangeFeed, string) {
	for _, code := range broker.Jurisdictions(region) {
		for _, o := range s.opened {
			if o.cfg.Region != code {
				continue
			}
			if f, ok := o.raw.(adapters.ChangeFeed); ok {
				return f, o.cfg.Name
			}
		}
	}
	return nil, ""
}
