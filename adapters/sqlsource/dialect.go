// Package sqlsource answers record queries from police records in SQL
// databases: PostgreSQL (pgx) and embedded SQLite (modernc.org/sqlite, pure
// Go).
//
// Its promises:
//
//   - A Source only reads. Open connects read-only (SQLite mode=ro plus
//     query_only; PostgreSQL default_transaction_read_only) and is meant to
//     connect as a least-privilege role that may only SELECT the record
//     tables (see ReaderRoleSQL). Every statement is a fixed, parameterised
//     SELECT; no query text is built from input.
//   - Answers follow records.Source, the semantics every Certless record
//     source shares, and pass adaptertest.
//   - Seed loads the synthetic records of records.Generate into an empty
//     database in one transaction (COPY on PostgreSQL, multi-row INSERTs on
//     SQLite): a failed seed leaves no records behind.
//   - Errors never carry ID numbers or names.
package sqlsource

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Dialect names the SQL database kind.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DialectOf tells the dialect of a DSN: postgres:// and postgresql:// URLs
// are PostgreSQL; "sqlite:PATH", "file:PATH?..." and plain paths are SQLite.
func DialectOf(dsn string) Dialect {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return Postgres
	}
	return SQLite
}

// sqliteDSN turns a SQLite DSN (plain path, sqlite:PATH or file: URI) into a
// file: URI with the given extra parameters.
func sqliteDSN(dsn string, params url.Values) (string, error) {
	dsn = strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
	var path, query string
	if rest, ok := strings.CutPrefix(dsn, "file:"); ok {
		path, query, _ = strings.Cut(rest, "?")
	} else {
		path = dsn
	}
	if path == "" || path == ":memory:" {
		return "", fmt.Errorf("sqlsource: SQLite needs a database file, not %q", path)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("sqlsource: SQLite DSN parameters: %w", err)
	}
	for k, vs := range params {
		q.Del(k)
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: q.Encode()}
	return u.String(), nil
}

// rebind rewrites ? placeholders as $1, $2... for PostgreSQL.
func rebind(d Dialect, q string) string {
	if d != Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
