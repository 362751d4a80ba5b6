// Package sqldb is the plumbing shared by the packages that keep tables of
// their own in the decision store's database (the docking directory, result
// feedback): one *sql.DB on PostgreSQL (pgx) or SQLite (modernc.org/sqlite)
// selected by the DSN as broker/store selects it, versioned migrations, ?
// placeholders rewritten for PostgreSQL, times stored alike on both, and a
// write transaction that holds the package's own lock.
package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// Schema is a package's tables.
type Schema struct {
	// Name prefixes errors ("directory") and names the version table
	// (<name>_schema_version).
	Name string
	// SQLite and Postgres are the migrations, applied in order; the schema
	// version is their count. Append, never edit. The two lists create the
	// same tables.
	SQLite, Postgres []string
	// LockKey is the PostgreSQL advisory lock that serialises the package's
	// writers (and migrators) on one database.
	LockKey int64
}

// SQLiteTime is the stored form of a time in SQLite: fixed width, so text
// order is time order.
const SQLiteTime = "2006-01-02T15:04:05.000000Z"

// DB is the database with its dialect.
type DB struct {
	SQL    *sql.DB
	PG     bool
	schema Schema
}

// IsPostgres reports whether dsn names PostgreSQL.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to dsn and migrates s's tables (a current schema needs no
// DDL rights: a least-privilege role opens it).
func Open(ctx context.Context, dsn string, s Schema) (*DB, error) {
	if dsn == "" {
		return nil, fmt.Errorf("%s: empty DSN", s.Name)
	}
	d := &DB{PG: IsPostgres(dsn), schema: s}
	if d.PG {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("%s: PostgreSQL DSN: %w", s.Name, err)
		}
		db.SetMaxOpenConns(4)
		d.SQL = db
	} else {
		memory := dsn == ":memory:" || strings.Contains(dsn, ":memory:") || strings.Contains(dsn, "mode=memory")
		if strings.Contains(dsn, "?") && !strings.HasPrefix(dsn, "file:") {
			return nil, fmt.Errorf("%s: SQLite path %q contains '?': use a file: URI", s.Name, dsn)
		}
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		// As the decision store: another process may hold the write lock
		// (busy_timeout), commits are durable (FULL), and a write
		// transaction takes the lock at BEGIN (immediate).
		db, err := sql.Open("sqlite", dsn+sep+"_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("%s: open SQLite %s: %w", s.Name, dsn, err)
		}
		if memory {
			// Each connection to ":memory:" is its own database: keep one.
			db.SetMaxOpenConns(1)
			db.SetMaxIdleConns(1)
			db.SetConnMaxLifetime(0)
			db.SetConnMaxIdleTime(0)
		} else {
			db.SetMaxOpenConns(4)
		}
		d.SQL = db
	}
	if err := d.SQL.PingContext(ctx); err != nil {
		d.SQL.Close()
		return nil, fmt.Errorf("%s: connect: %w", s.Name, err)
	}
	if err := d.migrate(ctx); err != nil {
		d.SQL.Close()
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.SQL.Close() }

// Q rewrites the ? placeholders of query for PostgreSQL ($1, $2, ...).
func (d *DB) Q(query string) string {
	if !d.PG {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NormTime is t as stored: UTC, to the microsecond.
func NormTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// T is a time as the backend stores it.
func (d *DB) T(t time.Time) any {
	t = NormTime(t)
	if d.PG {
		return t
	}
	return t.Format(SQLiteTime)
}

// Time scans a stored time of either backend.
type Time struct{ T time.Time }

// Scan implements sql.Scanner.
func (x *Time) Scan(v any) error {
	switch v := v.(type) {
	case time.Time:
		x.T = NormTime(v)
	case string:
		return x.parse(v)
	case []byte:
		return x.parse(string(v))
	default:
		return fmt.Errorf("cannot scan %T as a time", v)
	}
	return nil
}

func (x *Time) parse(s string) error {
	t, err := time.Parse(SQLiteTime, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("stored time %q: %w", s, err)
		}
	}
	x.T = NormTime(t)
	return nil
}

// Write runs fn in a transaction that holds the schema's write lock
// (PostgreSQL: the advisory lock; SQLite: the database's, taken at BEGIN).
func (d *DB) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", d.schema.Name, err)
	}
	defer tx.Rollback()
	if d.PG {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, d.schema.LockKey); err != nil {
			return fmt.Errorf("%s: lock: %w", d.schema.Name, err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", d.schema.Name, err)
	}
	return nil
}

func (d *DB) migrate(ctx context.Context) error {
	table := d.schema.Name + "_schema_version"
	migrations, versionTable := d.schema.SQLite, `CREATE TABLE IF NOT EXISTS `+table+` (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`
	if d.PG {
		migrations, versionTable = d.schema.Postgres, `CREATE TABLE IF NOT EXISTS `+table+` (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL
		)`
	}
	// A current schema needs no DDL rights: look before taking the lock.
	if v, err := d.version(ctx, d.SQL); err == nil && v == len(migrations) {
		return nil
	}
	return d.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, versionTable); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		v, err := d.version(ctx, tx)
		if err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this binary's %d", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
			if _, err := tx.ExecContext(ctx, d.Q(`INSERT INTO `+table+` (version, applied_at) VALUES (?, ?)`), i+1, d.T(time.Now())); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
		}
		return nil
	})
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (d *DB) version(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM `+d.schema.Name+`_schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
