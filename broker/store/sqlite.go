package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// sqliteMigrations are applied in order; the schema version is their count.
// Append, never edit.
var sqliteMigrations = []string{
	`CREATE TABLE IF NOT EXISTS decisions (
		digest     TEXT PRIMARY KEY,
		agency     TEXT NOT NULL,
		request_id TEXT NOT NULL,
		query_type TEXT NOT NULL,
		outcome    TEXT NOT NULL CHECK (outcome IN ('answered', 'not_found', 'denied', 'rejected')),
		reason     TEXT NOT NULL,
		replay     INTEGER NOT NULL CHECK (replay IN (0, 1)),
		receipt    BLOB NOT NULL,
		decided_at TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE UNIQUE INDEX IF NOT EXISTS decisions_agency_request_id
		ON decisions (agency, request_id) WHERE NOT replay AND request_id <> '';`,
	// Version 2: a rowid table. In version 1 (WITHOUT ROWID) each row,
	// receipt included, lived in the digest b-tree, whose interior cells
	// carry whole rows: a few rows per page, overflow chains, and every
	// lookup by digest or by (agency, request_id) crossed many pages. Now
	// both indexes hold only their keys and a rowid, and a row (a ~2 KB
	// receipt fits a 4 KB leaf) is one page of the table b-tree. Rows are
	// copied byte for byte, oldest first.
	`CREATE TABLE decisions_v2 (
		digest     TEXT NOT NULL,
		agency     TEXT NOT NULL,
		request_id TEXT NOT NULL,
		query_type TEXT NOT NULL,
		outcome    TEXT NOT NULL CHECK (outcome IN ('answered', 'not_found', 'denied', 'rejected')),
		reason     TEXT NOT NULL,
		replay     INTEGER NOT NULL CHECK (replay IN (0, 1)),
		receipt    BLOB NOT NULL,
		decided_at TEXT NOT NULL
	);
	INSERT INTO decisions_v2 (digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at)
		SELECT digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at
		FROM decisions ORDER BY decided_at, digest;
	DROP TABLE decisions;
	ALTER TABLE decisions_v2 RENAME TO decisions;
	CREATE UNIQUE INDEX decisions_digest ON decisions (digest);
	CREATE UNIQUE INDEX decisions_agency_request_id
		ON decisions (agency, request_id) WHERE NOT replay AND request_id <> '';`,
	// Version 3: the outcomes unavailable and internal_error. SQLite
	// cannot alter a CHECK constraint, so the table is rebuilt, rows copied
	// byte for byte in rowid order.
	`CREATE TABLE decisions_v3 (
		digest     TEXT NOT NULL,
		agency     TEXT NOT NULL,
		request_id TEXT NOT NULL,
		query_type TEXT NOT NULL,
		outcome    TEXT NOT NULL CHECK (outcome IN ('answered', 'not_found', 'denied', 'rejected', 'unavailable', 'internal_error')),
		reason     TEXT NOT NULL,
		replay     INTEGER NOT NULL CHECK (replay IN (0, 1)),
		receipt    BLOB NOT NULL,
		decided_at TEXT NOT NULL
	);
	INSERT INTO decisions_v3 (digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at)
		SELECT digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at
		FROM decisions ORDER BY rowid;
	DROP TABLE decisions;
	ALTER TABLE decisions_v3 RENAME TO decisions;
	CREATE UNIQUE INDEX decisions_digest ON decisions (digest);
	CREATE UNIQUE INDEX decisions_agency_request_id
		ON decisions (agency, request_id) WHERE NOT replay AND request_id <> '';`,
	// Version 4: quota counters, one row per agreement (id, version),
	// agency and window; period_start is the window's start in UTC
	// (sqliteTime). Small rows, looked up by their whole key: WITHOUT ROWID.
	`CREATE TABLE quota_usage (
		agency            TEXT NOT NULL,
		agreement_id      TEXT NOT NULL,
		agreement_version INTEGER NOT NULL,
		period            TEXT NOT NULL CHECK (period IN ('minute', 'day', 'month')),
		period_start      TEXT NOT NULL,
		used              INTEGER NOT NULL CHECK (used > 0),
		PRIMARY KEY (agency, agreement_id, agreement_version, period, period_start)
	) WITHOUT ROWID;`,
	// Version 5: the agreement each decision rests on ('' and 0 for a
	// decision that rests on none).
	`ALTER TABLE decisions ADD COLUMN agreement_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN agreement_version INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE decisions ADD COLUMN agreement_digest TEXT NOT NULL DEFAULT '';`,
	// Version 6: the transparency log (see tlog.go) and the message type of
	// each decision, which its leaf carries. One writer at a time holds the
	// database, so the next index is max(idx) + 1 in the writing
	// transaction.
	`ALTER TABLE decisions ADD COLUMN message_type TEXT NOT NULL DEFAULT '';
	CREATE TABLE tlog_integration (
		one  INTEGER PRIMARY KEY CHECK (one = 1),
		size INTEGER NOT NULL CHECK (size >= 0)
	);
	INSERT INTO tlog_integration (one, size) VALUES (1, 0);
	CREATE TABLE tlog_leaves (
		idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
		key  TEXT NOT NULL UNIQUE,
		data BLOB NOT NULL
	);
	CREATE TABLE tlog_hashes (
		idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
		hash BLOB NOT NULL CHECK (length(hash) = 32)
	);
	CREATE TABLE tlog_checkpoints (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		size       INTEGER NOT NULL CHECK (size >= 0),
		note       BLOB NOT NULL,
		created_at TEXT NOT NULL
	);
	CREATE INDEX tlog_checkpoints_size ON tlog_checkpoints (size);
	CREATE TABLE tlog_cosignatures (
		size        INTEGER NOT NULL,
		witness     TEXT NOT NULL,
		line        BLOB NOT NULL,
		received_at TEXT NOT NULL,
		PRIMARY KEY (size, witness)
	);`,
	// Version 7: what names each decision's receipt (its id and the digest
	// of its JWS, for feedback to cite) and the names of its answer fields.
	`ALTER TABLE decisions ADD COLUMN receipt_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN receipt_digest TEXT NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN answer_fields TEXT NOT NULL DEFAULT '';
	CREATE INDEX decisions_receipt_id ON decisions (receipt_id) WHERE receipt_id <> '';`,
	// Version 8: revocation. Each receipt's index in the status lists
	// (-1: issued before them), a keyed digest of the subject and query
	// (to find every receipt that carried an answer later corrected,
	// without keeping the subject), the allocator of indexes and the
	// revocations.
	`ALTER TABLE decisions ADD COLUMN status_index INTEGER NOT NULL DEFAULT -1;
	ALTER TABLE decisions ADD COLUMN subject_key TEXT NOT NULL DEFAULT '';
	CREATE INDEX decisions_subject_key ON decisions (subject_key) WHERE subject_key <> '';
	CREATE TABLE status_allocation (
		one  INTEGER PRIMARY KEY CHECK (one = 1),
		next INTEGER NOT NULL CHECK (next >= 0)
	);
	INSERT INTO status_allocation (one, next) VALUES (1, 0);
	CREATE TABLE revocations (
		status_index INTEGER PRIMARY KEY CHECK (status_index >= 0),
		receipt_id   TEXT NOT NULL,
		agency       TEXT NOT NULL,
		reason       TEXT NOT NULL,
		dispute_id   TEXT NOT NULL,
		revoked_at   TEXT NOT NULL
	);`,
	// Version 9: how long each decision took, from the request's Kafka
	// timestamp to the decision (microseconds; -1: not measured), for the
	// supervision reports' latency and on-time figures.
	`ALTER TABLE decisions ADD COLUMN latency_us INTEGER NOT NULL DEFAULT -1;
	CREATE INDEX decisions_decided_at ON decisions (decided_at);`,
}

// sqliteTime is the stored form of DecidedAt: fixed width, so text order is
// time order.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

const (
	sqliteColumns = `digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at, agreement_id, agreement_version, agreement_digest, message_type, receipt_id, receipt_digest, answer_fields, status_index, subject_key, latency_us`
	// ON CONFLICT DO NOTHING without a target also skips a row that would
	// break the (agency, request_id) index; commit tells the two apart.
	sqliteInsert = `INSERT INTO decisions (` + sqliteColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqliteSelect = `SELECT d.digest, d.agency, d.request_id, d.query_type, d.outcome, d.reason, d.replay, d.receipt, d.decided_at,
		d.agreement_id, d.agreement_version, d.agreement_digest, d.message_type, d.receipt_id, d.receipt_digest, d.answer_fields,
		d.status_index, d.subject_key, d.latency_us, coalesce(l.idx, -1), coalesce(l.data, x'')
		FROM decisions d LEFT JOIN tlog_leaves l ON l.key = d.digest`
	sqliteGet          = sqliteSelect + ` WHERE d.digest = ?`
	sqliteByReceipt    = sqliteSelect + ` WHERE d.receipt_id = ? AND d.receipt_id <> ''`
	sqliteDigestByID   = `SELECT digest FROM decisions WHERE agency = ? AND request_id = ? AND NOT replay AND request_id <> ''`
	sqliteCount        = `SELECT count(*) FROM decisions`
	sqliteVersionTable = `CREATE TABLE IF NOT EXISTS decisions_schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`
)

const (
	// sqliteTake counts one use unless the window is full: no row returned.
	sqliteTake = `INSERT INTO quota_usage (agency, agreement_id, agreement_version, period, period_start, used)
		VALUES (?, ?, ?, ?, ?, 1)
		ON CONFLICT (agency, agreement_id, agreement_version, period, period_start)
		DO UPDATE SET used = used + 1 WHERE used < ?
		RETURNING used`
	sqliteUsage = `SELECT used FROM quota_usage
		WHERE agency = ? AND agreement_id = ? AND agreement_version = ? AND period = ? AND period_start = ?`
)

// sqliteDB keeps its statements prepared: modernc.org/sqlite parses and
// plans the SQL of every unprepared call again.
type sqliteDB struct {
	db                                                  *sql.DB
	insertStmt, getStmt, idStmt, countStmt, receiptStmt *sql.Stmt
	// quotas is the handle quota counters are committed through: WAL with
	// synchronous=NORMAL, so a Take does not wait for the disk (a power cut
	// may forget the last uses; decisions stay fully durable through db).
	// The same handle as db for an in-memory database.
	quotas              *sql.DB
	takeStmt, usageStmt *sql.Stmt
	leafStmt            *sql.Stmt // appends one transparency-log leaf
}

func openSQLite(ctx context.Context, dsn string) (*sqliteDB, error) {
	if dsn == "" {
		return nil, errors.New("store: empty DSN")
	}
	memory := dsn == ":memory:" || strings.Contains(dsn, ":memory:") || strings.Contains(dsn, "mode=memory")
	if strings.Contains(dsn, "?") && !strings.HasPrefix(dsn, "file:") {
		return nil, fmt.Errorf("store: SQLite path %q contains '?': use a file: URI", dsn)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	// busy_timeout covers another process (or a second Open) holding the
	// write lock; FULL makes each WAL commit durable before Save returns;
	// immediate transactions take the write lock at BEGIN, so a batch never
	// fails half way on a lock upgrade.
	full := dsn + sep + "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", full)
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite %s: %w", dsn, err)
	}
	if memory {
		// Each connection to ":memory:" is its own database: keep exactly one.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	} else {
		db.SetMaxOpenConns(4)
		db.SetMaxIdleConns(4)
	}
	s := &sqliteDB{db: db, quotas: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: SQLite %s: %w", dsn, err)
	}
	if !memory {
		q, err := sql.Open("sqlite", dsn+sep+"_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("store: open SQLite %s: %w", dsn, err)
		}
		q.SetMaxOpenConns(2)
		q.SetMaxIdleConns(2)
		s.quotas = q
	}
	if err := s.prepare(ctx); err != nil {
		s.close()
		return nil, fmt.Errorf("store: SQLite %s: %w", dsn, err)
	}
	return s, nil
}

// prepare prepares the statements of commit and the reads, once per
// connection that runs them; the schema must be current.
func (s *sqliteDB) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
		db    *sql.DB
	}{
		{&s.insertStmt, sqliteInsert, s.db}, {&s.getStmt, sqliteGet, s.db}, {&s.idStmt, sqliteDigestByID, s.db}, {&s.countStmt, sqliteCount, s.db}, {&s.receiptStmt, sqliteByReceipt, s.db},
		{&s.takeStmt, sqliteTake, s.quotas}, {&s.usageStmt, sqliteUsage, s.quotas},
		{&s.leafStmt, sqliteInsertLeaf, s.db},
	} {
		st, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	return nil
}

func (s *sqliteDB) migrate(ctx context.Context) error {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'decisions_schema_version'`).Scan(&n)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if n == 1 {
		v, err := sqliteVersion(ctx, s.db)
		if err != nil {
			return err
		}
		if v == len(sqliteMigrations) {
			return nil
		}
	}
	tx, err := s.db.BeginTx(ctx, nil) // immediate: one migrator at a time
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, sqliteVersionTable); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	v, err := sqliteVersion(ctx, tx)
	if err != nil {
		return err
	}
	if v > len(sqliteMigrations) {
		return fmt.Errorf("schema version %d is newer than this binary's %d", v, len(sqliteMigrations))
	}
	for i := v; i < len(sqliteMigrations); i++ {
		if _, err := tx.ExecContext(ctx, sqliteMigrations[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO decisions_schema_version (version, applied_at) VALUES (?, ?)`,
			i+1, time.Now().UTC().Format(sqliteTime)); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

type sqlQueryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func sqliteVersion(ctx context.Context, q sqlQueryer) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM decisions_schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v > len(sqliteMigrations) {
		return 0, fmt.Errorf("schema version %d is newer than this binary's %d", v, len(sqliteMigrations))
	}
	return v, nil
}

func (s *sqliteDB) commit(ctx context.Context, batch []Decision) (_ []result, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	ins := tx.StmtContext(ctx, s.insertStmt) // prepared once per connection, not per batch
	defer ins.Close()
	out := make([]result, len(batch))
	inserted := make([]bool, len(batch))
	for i, d := range batch {
		res, err := ins.ExecContext(ctx, d.Digest, d.Agency, d.RequestID, d.QueryType, d.Outcome, d.Reason,
			d.Replay, d.Receipt, d.DecidedAt.Format(sqliteTime), d.AgreementID, d.AgreementVersion, d.AgreementDigest, d.Type,
			d.ReceiptID, d.ReceiptDigest, strings.Join(d.AnswerFields, ","), d.StatusIndex, d.SubjectKey, d.LatencyMicros)
		if err != nil {
			return nil, fmt.Errorf("insert %s: %w", d.Digest, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("insert %s: %w", d.Digest, err)
		}
		if n == 1 {
			out[i], inserted[i] = result{d: d}, true
			continue
		}
		out[i], err = s.explain(ctx, tx, d)
		if err != nil {
			return nil, err
		}
	}
	if err := s.appendDecisionLeaves(ctx, tx, batch, inserted, out); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return out, nil
}

// explain says why d was not inserted: its digest is stored, or its id is
// held by another digest.
func (s *sqliteDB) explain(ctx context.Context, tx *sql.Tx, d Decision) (result, error) {
	stored, ok, err := sqliteGetRow(tx.StmtContext(ctx, s.getStmt).QueryRowContext(ctx, d.Digest))
	if err != nil {
		return result{}, fmt.Errorf("read back %s: %w", d.Digest, err)
	}
	if ok {
		return result{d: stored}, nil
	}
	var held string
	if err := tx.StmtContext(ctx, s.idStmt).QueryRowContext(ctx, d.Agency, d.RequestID).Scan(&held); err != nil {
		return result{}, fmt.Errorf("read back holder of %s: %w", d.Digest, err)
	}
	return result{err: &ConflictError{Agency: d.Agency, RequestID: d.RequestID, Digest: d.Digest, Held: held}}, nil
}

func sqliteGetRow(row *sql.Row) (Decision, bool, error) {
	d, err := sqliteScan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Decision{}, false, nil
	}
	if err != nil {
		return Decision{}, false, err
	}
	return d, true, nil
}

// sqliteScan reads one row of sqliteSelect.
func sqliteScan(row interface{ Scan(...any) error }) (Decision, error) {
	var (
		d             Decision
		at, fieldList string
	)
	err := row.Scan(&d.Digest, &d.Agency, &d.RequestID, &d.QueryType, &d.Outcome, &d.Reason, &d.Replay, &d.Receipt, &at,
		&d.AgreementID, &d.AgreementVersion, &d.AgreementDigest, &d.Type, &d.ReceiptID, &d.ReceiptDigest, &fieldList, &d.StatusIndex, &d.SubjectKey, &d.LatencyMicros, &d.LeafIndex, &d.Leaf)
	if err != nil {
		return Decision{}, err
	}
	d.AnswerFields = splitFields(fieldList)
	if len(d.Leaf) == 0 {
		d.Leaf = nil
	}
	if d.DecidedAt, err = time.Parse(sqliteTime, at); err != nil {
		return Decision{}, fmt.Errorf("stored decided_at %q: %w", at, err)
	}
	return d, nil
}

func (s *sqliteDB) get(ctx context.Context, digest string) (Decision, bool, error) {
	return sqliteGetRow(s.getStmt.QueryRowContext(ctx, digest))
}

func (s *sqliteDB) byReceipt(ctx context.Context, receiptID string) (Decision, bool, error) {
	return sqliteGetRow(s.receiptStmt.QueryRowContext(ctx, receiptID))
}

func (s *sqliteDB) digestByRequestID(ctx context.Context, agency, requestID string) (string, bool, error) {
	var digest string
	err := s.idStmt.QueryRowContext(ctx, agency, requestID).Scan(&digest)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return digest, true, nil
}

func (s *sqliteDB) count(ctx context.Context) (int, error) {
	var n int
	err := s.countStmt.QueryRowContext(ctx).Scan(&n)
	return n, err
}

// takeBatch runs in an immediate transaction (_txlock=immediate): it holds
// the write lock from BEGIN, so batches, also from other processes on the
// file, run one after the other and each sees the counts the previous
// committed. Each item is all or nothing under a savepoint of its own.
func (s *sqliteDB) takeBatch(ctx context.Context, items []takeItem) (_ []bool, err error) {
	tx, err := s.quotas.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	st := tx.StmtContext(ctx, s.takeStmt)
	defer st.Close()
	oks := make([]bool, len(items))
	for i, it := range items {
		multi := len(it.ws) > 1
		if multi {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT take"); err != nil {
				return nil, fmt.Errorf("savepoint: %w", err)
			}
		}
		full := false
		for _, w := range it.ws {
			var used int
			err := st.QueryRowContext(ctx, it.k.agency, it.k.agreementID, it.k.version, w.period, w.start.Format(sqliteTime), w.limit).Scan(&used)
			if errors.Is(err, sql.ErrNoRows) {
				full = true
				break
			}
			if err != nil {
				return nil, fmt.Errorf("count %v %s window: %w", it.k, w.period, err)
			}
		}
		if multi {
			end := "RELEASE take"
			if full { // count nothing of this item
				end = "ROLLBACK TO take; RELEASE take"
			}
			if _, err := tx.ExecContext(ctx, end); err != nil {
				return nil, fmt.Errorf("%s: %w", end, err)
			}
		}
		oks[i] = !full
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return oks, nil
}

func (s *sqliteDB) usage(ctx context.Context, k quotaKey, windows []quotaWindow) ([]int, error) {
	used := make([]int, len(windows))
	for i, w := range windows {
		err := s.usageStmt.QueryRowContext(ctx, k.agency, k.agreementID, k.version, w.period, w.start.Format(sqliteTime)).Scan(&used[i])
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("read %s window: %w", w.period, err)
		}
	}
	return used, nil
}

func (s *sqliteDB) close() error {
	for _, st := range []*sql.Stmt{s.insertStmt, s.getStmt, s.idStmt, s.countStmt, s.receiptStmt, s.takeStmt, s.usageStmt, s.leafStmt} {
		if st != nil {
			st.Close()
		}
	}
	if s.quotas != s.db {
		s.quotas.Close()
	}
	return s.db.Close()
}
