package directory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// Migrations are applied in order; the schema version is their count.
// Append, never edit. The two lists create the same tables.
var sqliteMigrations = []string{
	`CREATE TABLE directory_agencies (
		id             TEXT PRIMARY KEY,
		level          TEXT NOT NULL CHECK (level IN ('province', 'prefecture', 'county')),
		region         TEXT NOT NULL,
		name           TEXT NOT NULL,
		kind           TEXT NOT NULL,
		contact        TEXT NOT NULL,
		jwks           TEXT NOT NULL,
		encryption_jwk TEXT,
		status         TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
		docked_by      TEXT NOT NULL,
		docked_at      TEXT NOT NULL,
		updated_at     TEXT NOT NULL,
		version        INTEGER NOT NULL CHECK (version > 0)
	);
	CREATE TABLE directory_sources (
		name        TEXT PRIMARY KEY,
		level       TEXT NOT NULL CHECK (level IN ('province', 'prefecture', 'county')),
		region      TEXT NOT NULL,
		kind        TEXT NOT NULL CHECK (kind IN ('sql', 'http')),
		description TEXT NOT NULL,
		status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
		docked_by   TEXT NOT NULL,
		docked_at   TEXT NOT NULL,
		updated_at  TEXT NOT NULL,
		version     INTEGER NOT NULL CHECK (version > 0)
	);
	CREATE TABLE directory_changes (
		seq         INTEGER PRIMARY KEY CHECK (seq > 0),
		at          TEXT NOT NULL,
		actor       TEXT NOT NULL,
		entity      TEXT NOT NULL CHECK (entity IN ('agency', 'record_source')),
		id          TEXT NOT NULL,
		change      TEXT NOT NULL,
		note        TEXT NOT NULL,
		before_json TEXT,
		after_json  TEXT NOT NULL,
		digest      TEXT NOT NULL
	);
	CREATE TABLE directory_change_leaves (
		seq        INTEGER PRIMARY KEY REFERENCES directory_changes (seq),
		leaf_index INTEGER NOT NULL CHECK (leaf_index >= 0)
	);`,
}

var postgresMigrations = []string{
	`CREATE TABLE directory_agencies (
		id             text PRIMARY KEY,
		level          text NOT NULL CHECK (level IN ('province', 'prefecture', 'county')),
		region         text NOT NULL,
		name           text NOT NULL,
		kind           text NOT NULL,
		contact        text NOT NULL,
		jwks           text NOT NULL,
		encryption_jwk text,
		status         text NOT NULL CHECK (status IN ('active', 'suspended')),
		docked_by      text NOT NULL,
		docked_at      timestamptz NOT NULL,
		updated_at     timestamptz NOT NULL,
		version        integer NOT NULL CHECK (version > 0)
	);
	CREATE TABLE directory_sources (
		name        text PRIMARY KEY,
		level       text NOT NULL CHECK (level IN ('province', 'prefecture', 'county')),
		region      text NOT NULL,
		kind        text NOT NULL CHECK (kind IN ('sql', 'http')),
		description text NOT NULL,
		status      text NOT NULL CHECK (status IN ('active', 'suspended')),
		docked_by   text NOT NULL,
		docked_at   timestamptz NOT NULL,
		updated_at  timestamptz NOT NULL,
		version     integer NOT NULL CHECK (version > 0)
	);
	CREATE TABLE directory_changes (
		seq         bigint PRIMARY KEY CHECK (seq > 0),
		at          timestamptz NOT NULL,
		actor       text NOT NULL,
		entity      text NOT NULL CHECK (entity IN ('agency', 'record_source')),
		id          text NOT NULL,
		change      text NOT NULL,
		note        text NOT NULL,
		before_json text,
		after_json  text NOT NULL,
		digest      text NOT NULL
	);
	CREATE TABLE directory_change_leaves (
		seq        bigint PRIMARY KEY REFERENCES directory_changes (seq),
		leaf_index bigint NOT NULL CHECK (leaf_index >= 0)
	);`,
}

// pgLock serialises the directory's writers (and migrators) on one
// database: changes are rare, and one writer at a time makes seq gapless.
const pgLock = `SELECT pg_advisory_xact_lock(7236102365487124002)`

// sqliteTime is the stored form of a time in SQLite: fixed width, so text
// order is time order.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

// db is the database with its dialect.
type db struct {
	sql *sql.DB
	pg  bool
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func openDB(ctx context.Context, dsn string) (*db, error) {
	if dsn == "" {
		return nil, errors.New("directory: empty DSN")
	}
	d := &db{pg: isPostgres(dsn)}
	if d.pg {
		s, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("directory: PostgreSQL DSN: %w", err)
		}
		s.SetMaxOpenConns(4)
		d.sql = s
	} else {
		memory := dsn == ":memory:" || strings.Contains(dsn, ":memory:") || strings.Contains(dsn, "mode=memory")
		if strings.Contains(dsn, "?") && !strings.HasPrefix(dsn, "file:") {
			return nil, fmt.Errorf("directory: SQLite path %q contains '?': use a file: URI", dsn)
		}
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		// As the decision store: another process may hold the write lock
		// (busy_timeout), commits are durable (FULL), and a write
		// transaction takes the lock at BEGIN (immediate).
		s, err := sql.Open("sqlite", dsn+sep+"_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("directory: open SQLite %s: %w", dsn, err)
		}
		if memory {
			// Each connection to ":memory:" is its own database: keep one.
			s.SetMaxOpenConns(1)
			s.SetMaxIdleConns(1)
			s.SetConnMaxLifetime(0)
			s.SetConnMaxIdleTime(0)
		} else {
			s.SetMaxOpenConns(4)
		}
		d.sql = s
	}
	if err := d.sql.PingContext(ctx); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("directory: connect: %w", err)
	}
	if err := d.migrate(ctx); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("directory: %w", err)
	}
	return d, nil
}

// q rewrites the ? placeholders of query for PostgreSQL ($1, $2, ...).
func (d *db) q(query string) string {
	if !d.pg {
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

// t is a time as the backend stores it.
func (d *db) t(t time.Time) any {
	t = normTime(t)
	if d.pg {
		return t
	}
	return t.Format(sqliteTime)
}

// dbTime scans a stored time of either backend.
type dbTime struct{ t time.Time }

func (x *dbTime) Scan(v any) error {
	switch v := v.(type) {
	case time.Time:
		x.t = normTime(v)
	case string:
		return x.parse(v)
	case []byte:
		return x.parse(string(v))
	default:
		return fmt.Errorf("directory: cannot scan %T as a time", v)
	}
	return nil
}

func (x *dbTime) parse(s string) error {
	t, err := time.Parse(sqliteTime, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("directory: stored time %q: %w", s, err)
		}
	}
	x.t = normTime(t)
	return nil
}

// write runs fn in a transaction that holds the directory's write lock.
func (d *db) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("directory: begin: %w", err)
	}
	defer tx.Rollback()
	if d.pg {
		if _, err := tx.ExecContext(ctx, pgLock); err != nil {
			return fmt.Errorf("directory: lock: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("directory: commit: %w", err)
	}
	return nil
}

func (d *db) migrate(ctx context.Context) error {
	migrations, versionTable := sqliteMigrations, `CREATE TABLE IF NOT EXISTS directory_schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`
	if d.pg {
		migrations, versionTable = postgresMigrations, `CREATE TABLE IF NOT EXISTS directory_schema_version (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL
		)`
	}
	// A current schema needs no DDL rights: look before taking the lock.
	if v, err := d.schemaVersion(ctx, d.sql); err == nil && v == len(migrations) {
		return nil
	}
	return d.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, versionTable); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		v, err := d.schemaVersion(ctx, tx)
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
			if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO directory_schema_version (version, applied_at) VALUES (?, ?)`), i+1, d.t(time.Now())); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
		}
		return nil
	})
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (d *db) schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM directory_schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
