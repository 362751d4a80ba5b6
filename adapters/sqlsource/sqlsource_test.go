package sqlsource_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/adaptertest"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/internal/testenv"
)

var fixtures = adaptertest.Fixtures{Seed: 20261127, Persons: 3000}

// seededSQLite returns the path of a SQLite file holding the fixtures,
// seeded once per test binary and shared read-only.
var seededSQLite = sync.OnceValues(func() (string, error) {
	dir, err := tempDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "records.db")
	return path, sqlsource.Seed(context.Background(), path, fixtures.Persons, fixtures.Seed, nil)
})

func sqliteFixture(t testing.TB) string {
	t.Helper()
	path, err := seededSQLite()
	if err != nil {
		t.Fatalf("seed SQLite: %v", err)
	}
	return path
}

func openSource(t testing.TB, dsn string) *sqlsource.Source {
	t.Helper()
	s, err := sqlsource.Open(context.Background(), dsn, sqlsource.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteConformance(t *testing.T) {
	path := sqliteFixture(t)
	adaptertest.Run(t, func(t *testing.T) adapters.Source { return openSource(t, path) }, fixtures)
}

func TestSQLiteIsReadOnly(t *testing.T) {
	path := sqliteFixture(t)
	openSource(t, path) // the source opens it read-only without complaint
	// The same DSN the source uses refuses writes.
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM criminal_records"); err == nil {
		t.Fatal("read-only SQLite accepted a DELETE")
	}
}

func TestSeedRefusesAPopulatedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	var calls, last int
	err := sqlsource.Seed(context.Background(), "sqlite:"+path, 120, 1, func(done, total int) {
		calls++
		last = done
		if total != 120 {
			t.Errorf("total = %d", total)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 || last != 120 {
		t.Errorf("progress called %d times, last done %d", calls, last)
	}
	if err := sqlsource.Seed(context.Background(), path, 10, 1, nil); !errors.Is(err, sqlsource.ErrNotEmpty) {
		t.Fatalf("second seed: %v, want ErrNotEmpty", err)
	}
}

// TestSeedKeepsNoStat4Samples: the planner keeps its per-index row counts,
// but no sqlite_stat4 samples, which would make SQLite re-prepare every
// Source query at each call.
func TestSeedKeepsNoStat4Samples(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+sqliteFixture(t)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stat1, stat4 int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_stat1").Scan(&stat1); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*) FROM sqlite_stat4").Scan(&stat4); err != nil && !strings.Contains(err.Error(), "no such table") {
		t.Fatal(err)
	}
	if stat1 == 0 || stat4 != 0 {
		t.Errorf("sqlite_stat1 has %d rows, sqlite_stat4 %d: want some, none", stat1, stat4)
	}
}

func TestSeedHonoursCancellation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	ctx, cancel := context.WithCancel(context.Background())
	err := sqlsource.Seed(ctx, path, 20000, 1, func(done, _ int) {
		if done > 0 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// Nothing was committed: a new seed succeeds.
	if err := sqlsource.Seed(context.Background(), path, 10, 1, nil); err != nil {
		t.Fatalf("seed after a cancelled seed: %v", err)
	}
}

func TestOpenRefusesMissingTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE x (y)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlsource.Open(context.Background(), path, sqlsource.Options{}); err == nil {
		t.Fatal("Open accepted a database without record tables")
	}
}

func TestDialectOf(t *testing.T) {
	for dsn, want := range map[string]sqlsource.Dialect{
		"postgres://u@h/db":   sqlsource.Postgres,
		"postgresql://u@h/db": sqlsource.Postgres,
		"records.db":          sqlsource.SQLite,
		"sqlite:/tmp/r.db":    sqlsource.SQLite,
		"file:r.db?cache=1":   sqlsource.SQLite,
	} {
		if got := sqlsource.DialectOf(dsn); got != want {
			t.Errorf("DialectOf(%q) = %s", dsn, got)
		}
	}
}

// seededPostgres creates a fresh database, seeds the fixtures as the
// administrator, creates a reader role for it and returns the reader's DSN.
func seededPostgres(t testing.TB, persons int, seed int64) (admin, reader string) {
	t.Helper()
	admin = testenv.PostgresDB(t)
	ctx := context.Background()
	if err := sqlsource.Seed(ctx, admin, persons, seed, nil); err != nil {
		t.Fatalf("seed PostgreSQL: %v", err)
	}
	role := "certless_reader_" + testenv.Random(4)
	password := "pw'" + testenv.Random(8) // a quote, to prove quoting
	if err := sqlsource.CreateReaderRole(ctx, admin, role, password); err != nil {
		t.Fatalf("CreateReaderRole: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err != nil {
			t.Logf("drop reader role: %v", err)
			return
		}
		defer c.Close(context.Background())
		for _, s := range []string{"DROP OWNED BY " + pgx.Identifier{role}.Sanitize(), "DROP ROLE " + pgx.Identifier{role}.Sanitize()} {
			if _, err := c.Exec(context.Background(), s); err != nil {
				t.Logf("drop reader role: %v", err)
			}
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return admin, u.String()
}

func TestPostgresConformanceAsReaderRole(t *testing.T) {
	_, reader := seededPostgres(t, fixtures.Persons, fixtures.Seed)
	adaptertest.Run(t, func(t *testing.T) adapters.Source { return openSource(t, reader) }, fixtures)
}

func TestPostgresReaderRoleMaySelectOnly(t *testing.T) {
	admin, reader := seededPostgres(t, 50, 1)
	ctx := context.Background()
	// Creating the role again only resets it.
	u, _ := url.Parse(reader)
	pw, _ := u.User.Password()
	if err := sqlsource.CreateReaderRole(ctx, admin, u.User.Username(), pw); err != nil {
		t.Fatalf("CreateReaderRole again: %v", err)
	}
	conn, err := pgx.Connect(ctx, reader)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM persons").Scan(&n); err != nil || n != 50 {
		t.Fatalf("reader SELECT: %d, %v", n, err)
	}
	// The session default is read-only; a READ WRITE transaction shows that
	// the privileges, not only the default, refuse writes.
	for _, stmt := range []string{
		"INSERT INTO persons (id_number, name, sex, birth_date, household_id, relation) VALUES ('220102199001011234', 'x', 'M', '1990-01-01', 'h', 'head')",
		"DELETE FROM criminal_records",
		"UPDATE persons SET name = 'x'",
		"CREATE TABLE notes (x int)",
	} {
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, stmt)
		_ = tx.Rollback(ctx)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: err = %v, want insufficient_privilege (42501)", strings.Fields(stmt)[0], err)
		}
	}
	// And without asking for READ WRITE the session refuses too.
	if _, err := conn.Exec(ctx, "DELETE FROM kinship"); err == nil {
		t.Error("reader session accepted a DELETE")
	}
}

func TestPostgresSeedRefusesAPopulatedDatabase(t *testing.T) {
	admin, _ := seededPostgres(t, 10, 1)
	if err := sqlsource.Seed(context.Background(), admin, 10, 1, nil); !errors.Is(err, sqlsource.ErrNotEmpty) {
		t.Fatalf("second seed: %v, want ErrNotEmpty", err)
	}
}
