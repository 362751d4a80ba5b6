package sqlsource

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

var (
	//go:embed schema_postgres.sql
	postgresSchema string
	//go:embed schema_sqlite.sql
	sqliteSchema string
)

// Tables are the record tables, the only ones a reader may SELECT.
var Tables = []string{"households", "persons", "kinship", "former_names", "residences", "criminal_records"}

// Schema returns the DDL of the record tables for d. It is idempotent
// (CREATE ... IF NOT EXISTS).
func Schema(d Dialect) string {
	if d == Postgres {
		return postgresSchema
	}
	return sqliteSchema
}

// ErrNotEmpty is returned by Seed when the database already holds records.
var ErrNotEmpty = errors.New("sqlsource: the database already holds records")

// ReaderRoleSQL returns the statements that create the least-privilege
// PostgreSQL login role a Source connects as: it may connect to database
// and SELECT the record tables (in schema public), nothing else; its
// sessions default to read-only. Run them as an administrator after the
// schema exists. Role, database and password are quoted, not trusted.
func ReaderRoleSQL(database, role, password string) []string {
	r := pgx.Identifier{role}.Sanitize()
	return []string{
		"CREATE ROLE " + r + " WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 64 PASSWORD " + quoteLiteral(password),
		"ALTER ROLE " + r + " SET default_transaction_read_only = on",
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT CONNECT ON DATABASE " + pgx.Identifier{database}.Sanitize() + " TO " + r,
		"GRANT USAGE ON SCHEMA public TO " + r,
		"GRANT SELECT ON TABLE " + strings.Join(Tables, ", ") + " TO " + r,
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// CreateReaderRole connects to adminDSN (a PostgreSQL role allowed to create
// roles) and creates the reader role of ReaderRoleSQL for that database, or,
// when the role exists, resets its password and attributes and grants.
func CreateReaderRole(ctx context.Context, adminDSN, role, password string) error {
	if DialectOf(adminDSN) != Postgres {
		return errors.New("sqlsource: reader roles exist only in PostgreSQL")
	}
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("sqlsource: connect as administrator: %w", err)
	}
	defer conn.Close(context.Background())
	var db string
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT current_database(), EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&db, &exists); err != nil {
		return fmt.Errorf("sqlsource: reader role: %w", err)
	}
	stmts := ReaderRoleSQL(db, role, password)
	if exists {
		stmts[0] = strings.Replace(stmts[0], "CREATE ROLE", "ALTER ROLE", 1)
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("sqlsource: reader role: %w", err)
		}
	}
	return nil
}
