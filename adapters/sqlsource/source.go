package sqlsource

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
)

// Options tune a Source. The zero value is usable.
type Options struct {
	// Name is the source's name in answers; default "sql-postgres" or
	// "sql-sqlite".
	Name string
	// Now is the clock for queries without AsOf; default time.Now.
	Now func() time.Time
	// MaxConns bounds open connections; default 8.
	MaxConns int
}

// Source is an adapters.Source over a SQL database. It is safe for
// concurrent use.
type Source struct {
	q       querier
	answers *records.Source
}

var _ adapters.Source = (*Source)(nil)

// Open connects read-only to the records database at dsn (see DialectOf)
// and returns a Source over it. For PostgreSQL, dsn should name a role with
// SELECT on the record tables only (see ReaderRoleSQL); every session is
// also read-only (default_transaction_read_only). A SQLite file is opened
// with mode=ro and query_only. Open checks that the record tables can be
// read. Close releases the connections.
func Open(ctx context.Context, dsn string, opt Options) (*Source, error) {
	d := DialectOf(dsn)
	if opt.Name == "" {
		opt.Name = "sql-" + string(d)
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = 8
	}
	var q querier
	switch d {
	case Postgres:
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("sqlsource: PostgreSQL DSN: %w", err)
		}
		cfg.MaxConns = int32(min(opt.MaxConns, math.MaxInt32))
		// Startup parameters: every session is read-only from its first
		// statement, with no extra round trip per connection.
		rp := cfg.ConnConfig.RuntimeParams
		rp["default_transaction_read_only"] = "on"
		if rp["application_name"] == "" {
			rp["application_name"] = "certless-sqlsource"
		}
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("sqlsource: PostgreSQL pool: %w", err)
		}
		q = &pgQuerier{pool: pool}
	case SQLite:
		u, err := sqliteDSN(dsn, url.Values{
			"mode": {"ro"}, "_query_only": {"1"}, "_pragma": {"busy_timeout(5000)"},
		})
		if err != nil {
			return nil, err
		}
		db, err := sql.Open("sqlite", u)
		if err != nil {
			return nil, fmt.Errorf("sqlsource: open SQLite: %w", err)
		}
		db.SetMaxOpenConns(opt.MaxConns)
		db.SetMaxIdleConns(opt.MaxConns)
		sq, err := newSQLQuerier(ctx, db)
		if err != nil {
			db.Close()
			return nil, err
		}
		q = sq
	}
	s := &Source{q: q, answers: records.NewSource(opt.Name, store{q}, opt.Now)}
	// One lookup proves the connection, the schema and the SELECT grant.
	if _, err := (store{q}).Person(ctx, "000000000000000000"); err != nil {
		q.close()
		return nil, fmt.Errorf("sqlsource: check records: %w", err)
	}
	return s, nil
}

// Name implements adapters.Source.
func (s *Source) Name() string { return s.answers.Name() }

// Answer implements adapters.Source; see records.Source.Answer for the
// semantics. Errors are database or context errors, never "not found".
func (s *Source) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	return s.answers.Answer(ctx, q)
}

// Close releases the connections.
func (s *Source) Close() error { return s.q.close() }
