package directory

import (
	"context"

	"github.com/certless/certless/internal/sqldb"
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

// schema is the directory's tables; LockKey serialises its writers (and
// migrators) on one database: changes are rare, and one writer at a time
// makes seq gapless.
var schema = sqldb.Schema{Name: "directory", SQLite: sqliteMigrations, Postgres: postgresMigrations, LockKey: 7236102365487124002}

func openDB(ctx context.Context, dsn string) (*sqldb.DB, error) { return sqldb.Open(ctx, dsn, schema) }
