package sqlsource

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certless/certless/adapters/records"
)

// seedChunk is how many persons Seed loads between progress reports.
const seedChunk = 5000

// Seed creates the record tables in the database at dsn (see DialectOf) if
// needed and loads records.Generate(seed, persons) into them, in one
// transaction, calling progress (if not nil) with the persons loaded so far.
// It refuses a database that already holds records (ErrNotEmpty). dsn must
// allow writing: for PostgreSQL an owner of the tables, not the reader role.
func Seed(ctx context.Context, dsn string, persons int, seed int64, progress func(done, total int)) error {
	return SeedWhere(ctx, dsn, persons, seed, nil, progress)
}

// SeedWhere is Seed loading only the records a bureau of the regions keep
// accepts holds (records.Batch.Where): a prefecture's own database. A nil
// keep loads everything.
func SeedWhere(ctx context.Context, dsn string, persons int, seed int64, keep func(region string) bool, progress func(done, total int)) error {
	return SeedThrough(ctx, dsn, persons, seed, keep, time.Time{}, progress)
}

// SeedThrough is SeedWhere followed by the change journal
// (records.Generator.Journal) through the day of through: recent
// cancellations, one per prefecture and day, up to that day. A zero
// through loads no journal.
func SeedThrough(ctx context.Context, dsn string, persons int, seed int64, keep func(region string) bool, through time.Time, progress func(done, total int)) error {
	if progress == nil {
		progress = func(int, int) {}
	}
	l, err := openLoader(ctx, dsn, false)
	if err != nil {
		return err
	}
	defer l.close()

	g := records.NewGenerator(seed, persons)
	progress(0, g.Total())
	var chunk records.Batch
	flush := func() error {
		if len(chunk.Persons) == 0 {
			return nil
		}
		if err := l.load(ctx, &chunk); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err() // database/sql reports a cancelled tx as closed statements
			}
			return fmt.Errorf("sqlsource: seed: %w", err)
		}
		chunk = records.Batch{}
		progress(g.Done(), g.Total())
		return nil
	}
	var journal []records.Batch
	for {
		b, ok := g.Next()
		if !ok {
			if !through.IsZero() && journal == nil {
				journal = append(g.Journal(through), records.Batch{})
			}
			if len(journal) == 0 {
				break
			}
			b, journal = journal[0], journal[1:]
		}
		if keep != nil {
			b = b.Where(keep)
		}
		chunk.Append(&b)
		if len(chunk.Persons) >= seedChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlsource: seed: %w", err)
	}
	if err := l.commit(ctx); err != nil {
		return fmt.Errorf("sqlsource: seed: commit: %w", err)
	}
	return nil
}

// openLoader opens a loading transaction on dsn: for a seed (extend
// false) of an empty database, else to add to the records there.
func openLoader(ctx context.Context, dsn string, extend bool) (loader, error) {
	if DialectOf(dsn) == Postgres {
		return newPGLoader(ctx, dsn, extend)
	}
	return newSQLiteLoader(ctx, dsn, extend)
}

// ExtendJournal adds to a database seeded with SeedThrough (or Seed) the
// change journal's days after the last cancellation it holds, through the
// day of through — what a dev data folder seeded days ago lacks. It
// returns the persons added (0 when the journal is current).
func ExtendJournal(ctx context.Context, dsn string, persons int, seed int64, keep func(region string) bool, through time.Time) (int, error) {
	l, err := openLoader(ctx, dsn, true)
	if err != nil {
		return 0, err
	}
	defer l.close()
	last, err := l.lastCancellation(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlsource: journal: %w", err)
	}
	g := records.NewGenerator(seed, persons)
	for {
		if _, ok := g.Next(); !ok {
			break
		}
	}
	var add records.Batch
	for _, b := range g.Journal(through) {
		if !b.Persons[0].CancelDate.After(last) {
			continue
		}
		if keep != nil {
			b = b.Where(keep)
		}
		add.Append(&b)
	}
	if len(add.Persons) == 0 {
		return 0, nil
	}
	if err := l.load(ctx, &add); err != nil {
		return 0, fmt.Errorf("sqlsource: journal: %w", err)
	}
	if err := l.commit(ctx); err != nil {
		return 0, fmt.Errorf("sqlsource: journal: commit: %w", err)
	}
	return len(add.Persons), nil
}

type loader interface {
	// lastCancellation is the latest cancellation day held.
	lastCancellation(ctx context.Context) (time.Time, error)
	load(ctx context.Context, b *records.Batch) error
	commit(ctx context.Context) error
	close()
}

// table describes how a record table is loaded.
type table struct {
	name string
	cols []string
	rows func(b *records.Batch, day func(time.Time) any) [][]any
}

var tables = []table{
	{"households", []string{"id", "head_id", "region_code"}, func(b *records.Batch, _ func(time.Time) any) [][]any {
		out := make([][]any, len(b.Households))
		for i, h := range b.Households {
			out[i] = []any{h.ID, h.HeadID, h.RegionCode}
		}
		return out
	}},
	{"persons", []string{"id_number", "name", "sex", "birth_date", "household_id", "relation", "cancel_reason", "cancel_date"}, func(b *records.Batch, day func(time.Time) any) [][]any {
		out := make([][]any, len(b.Persons))
		for i, p := range b.Persons {
			var reason any
			if p.CancelReason != "" {
				reason = p.CancelReason
			}
			out[i] = []any{p.IDNumber, p.Name, p.Sex, day(p.BirthDate), p.HouseholdID, p.Relation, reason, day(p.CancelDate)}
		}
		return out
	}},
	{"kinship", []string{"person_id", "relative_id", "relation"}, func(b *records.Batch, _ func(time.Time) any) [][]any {
		out := make([][]any, len(b.Kinship))
		for i, k := range b.Kinship {
			out[i] = []any{k.PersonID, k.RelativeID, k.Relation}
		}
		return out
	}},
	{"former_names", []string{"person_id", "seq", "name", "until_date"}, func(b *records.Batch, day func(time.Time) any) [][]any {
		out := make([][]any, len(b.FormerNames))
		for i, f := range b.FormerNames {
			out[i] = []any{f.PersonID, f.Seq, f.Name, day(f.Until)}
		}
		return out
	}},
	{"residences", []string{"person_id", "seq", "region_code", "from_date", "to_date"}, func(b *records.Batch, day func(time.Time) any) [][]any {
		out := make([][]any, len(b.Residences))
		for i, r := range b.Residences {
			out[i] = []any{r.PersonID, r.Seq, r.RegionCode, day(r.From), day(r.To)}
		}
		return out
	}},
	{"criminal_records", []string{"person_id", "seq", "offence", "court", "judgment_date", "sentence"}, func(b *records.Batch, day func(time.Time) any) [][]any {
		out := make([][]any, len(b.CriminalRecords))
		for i, c := range b.CriminalRecords {
			out[i] = []any{c.PersonID, c.Seq, c.Offence, c.Court, day(c.JudgmentDate), c.Sentence}
		}
		return out
	}},
}

// pgLoader COPYs into the tables inside one transaction.
type pgLoader struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

func newPGLoader(ctx context.Context, dsn string, extend bool) (*pgLoader, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlsource: seed: connect: %w", err)
	}
	l := &pgLoader{conn: conn}
	if err := l.begin(ctx, extend); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return l, nil
}

func (l *pgLoader) begin(ctx context.Context, extend bool) error {
	if _, err := l.conn.Exec(ctx, postgresSchema); err != nil {
		return fmt.Errorf("sqlsource: seed: create schema: %w", err)
	}
	tx, err := l.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("sqlsource: seed: %w", err)
	}
	l.tx = tx
	// Serialise concurrent seeds of one database; the emptiness check
	// below then holds until commit.
	if _, err := tx.Exec(ctx, "LOCK TABLE persons IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("sqlsource: seed: %w", err)
	}
	var has bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM persons)").Scan(&has); err != nil {
		return fmt.Errorf("sqlsource: seed: %w", err)
	}
	if has && !extend {
		return ErrNotEmpty
	}
	return nil
}

func (l *pgLoader) lastCancellation(ctx context.Context) (time.Time, error) {
	var t *time.Time
	if err := l.tx.QueryRow(ctx, "SELECT max(cancel_date) FROM persons").Scan(&t); err != nil || t == nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func pgDay(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func (l *pgLoader) load(ctx context.Context, b *records.Batch) error {
	for _, t := range tables {
		rows := t.rows(b, pgDay)
		if len(rows) == 0 {
			continue
		}
		if _, err := l.tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.cols, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy into %s: %w", t.name, err)
		}
	}
	return nil
}

func (l *pgLoader) commit(ctx context.Context) error {
	if err := l.tx.Commit(ctx); err != nil {
		return err
	}
	l.tx = nil
	_, err := l.conn.Exec(ctx, "ANALYZE "+strings.Join(Tables, ", "))
	return err
}

func (l *pgLoader) close() {
	if l.tx != nil {
		_ = l.tx.Rollback(context.Background())
	}
	_ = l.conn.Close(context.Background())
}

// sqliteRowsPerInsert is how many rows one INSERT statement carries.
const sqliteRowsPerInsert = 256

// sqliteLoader inserts with multi-row INSERTs inside one transaction.
type sqliteLoader struct {
	db    *sql.DB
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // full-size INSERT per table
}

func newSQLiteLoader(ctx context.Context, dsn string, extend bool) (*sqliteLoader, error) {
	u, err := sqliteDSN(dsn, url.Values{"_pragma": {"busy_timeout(5000)", "journal_mode(DELETE)", "synchronous(NORMAL)"}, "_txlock": {"immediate"}})
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", u)
	if err != nil {
		return nil, fmt.Errorf("sqlsource: seed: open SQLite: %w", err)
	}
	db.SetMaxOpenConns(1)
	l := &sqliteLoader{db: db, stmts: map[string]*sql.Stmt{}}
	if err := l.begin(ctx, extend); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *sqliteLoader) begin(ctx context.Context, extend bool) error {
	if _, err := l.db.ExecContext(ctx, sqliteSchema); err != nil {
		return fmt.Errorf("sqlsource: seed: create schema: %w", err)
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlsource: seed: %w", err)
	}
	l.tx = tx
	var has bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM persons)").Scan(&has); err != nil {
		return fmt.Errorf("sqlsource: seed: %w", err)
	}
	if has && !extend {
		return ErrNotEmpty
	}
	for _, t := range tables {
		st, err := tx.PrepareContext(ctx, insertSQL(t, sqliteRowsPerInsert))
		if err != nil {
			return fmt.Errorf("sqlsource: seed: %w", err)
		}
		l.stmts[t.name] = st
	}
	return nil
}

func insertSQL(t table, rows int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", len(t.cols)), ",") + ")"
	return "INSERT INTO " + t.name + " (" + strings.Join(t.cols, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

func sqliteDay(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Format(records.DateLayout)
}

func (l *sqliteLoader) load(ctx context.Context, b *records.Batch) error {
	for _, t := range tables {
		rows := t.rows(b, sqliteDay)
		for len(rows) > 0 {
			n := min(len(rows), sqliteRowsPerInsert)
			args := make([]any, 0, n*len(t.cols))
			for _, r := range rows[:n] {
				args = append(args, r...)
			}
			var err error
			if n == sqliteRowsPerInsert {
				_, err = l.stmts[t.name].ExecContext(ctx, args...)
			} else {
				_, err = l.tx.ExecContext(ctx, insertSQL(t, n), args...)
			}
			if err != nil {
				return fmt.Errorf("insert into %s: %w", t.name, err)
			}
			rows = rows[n:]
		}
	}
	return nil
}

func (l *sqliteLoader) commit(ctx context.Context) error {
	for _, st := range l.stmts {
		st.Close()
	}
	l.stmts = nil
	if err := l.tx.Commit(); err != nil {
		return err
	}
	l.tx = nil
	return sqliteAnalyze(ctx, l.db)
}

// sqliteAnalyze gathers the planner's statistics, keeping sqlite_stat1
// (rows per index key, all that a Source's key lookups need) and dropping
// the sqlite_stat4 samples: with samples, SQLite re-prepares a statement
// whose parameter a sampled index could use every time that parameter is
// bound to a new value (see sqlite3_prepare_v2), so each prepared Source
// query would be parsed and planned again on every call.
func sqliteAnalyze(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		return err
	}
	var samples bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat4')").Scan(&samples); err != nil || !samples {
		return err
	}
	_, err := db.ExecContext(ctx, "DELETE FROM sqlite_stat4")
	return err
}

func (l *sqliteLoader) close() {
	for _, st := range l.stmts {
		st.Close()
	}
	if l.tx != nil {
		_ = l.tx.Rollback()
	}
	_ = l.db.Close()
}

func (l *sqliteLoader) lastCancellation(ctx context.Context) (time.Time, error) {
	var d sql.NullString
	if err := l.tx.QueryRowContext(ctx, "SELECT max(cancel_date) FROM persons").Scan(&d); err != nil || !d.Valid {
		return time.Time{}, err
	}
	return time.Parse(records.DateLayout, d.String)
}
