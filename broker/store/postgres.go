package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// postgresMigrations are applied in order; the schema version is their count.
// Append, never edit.
var postgresMigrations = []string{
	`CREATE TABLE IF NOT EXISTS decisions (
		digest     text PRIMARY KEY,
		agency     text NOT NULL,
		request_id text NOT NULL,
		query_type text NOT NULL,
		outcome    text NOT NULL CHECK (outcome IN ('answered', 'not_found', 'denied', 'rejected')),
		reason     text NOT NULL,
		replay     boolean NOT NULL,
		receipt    bytea NOT NULL,
		decided_at timestamptz NOT NULL
	);
	CREATE UNIQUE INDEX IF NOT EXISTS decisions_agency_request_id
		ON decisions (agency, request_id) WHERE NOT replay AND request_id <> '';`,
	// Version 2: the outcomes unavailable and internal_error.
	`ALTER TABLE decisions DROP CONSTRAINT IF EXISTS decisions_outcome_check;
	ALTER TABLE decisions ADD CONSTRAINT decisions_outcome_check
		CHECK (outcome IN ('answered', 'not_found', 'denied', 'rejected', 'unavailable', 'internal_error'));`,
	// Version 3: quota counters, one row per agreement (id, version),
	// agency and window.
	`CREATE TABLE quota_usage (
		agency            text NOT NULL,
		agreement_id      text NOT NULL,
		agreement_version integer NOT NULL,
		period            text NOT NULL CHECK (period IN ('minute', 'day', 'month')),
		period_start      timestamptz NOT NULL,
		used              bigint NOT NULL CHECK (used > 0),
		PRIMARY KEY (agency, agreement_id, agreement_version, period, period_start)
	);`,
	// Version 4: the agreement each decision rests on ('' and 0 for a
	// decision that rests on none).
	`ALTER TABLE decisions ADD COLUMN IF NOT EXISTS agreement_id text NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN IF NOT EXISTS agreement_version integer NOT NULL DEFAULT 0;
	ALTER TABLE decisions ADD COLUMN IF NOT EXISTS agreement_digest text NOT NULL DEFAULT '';`,
	// Version 5: the transparency log (see tlog.go) and the message type of
	// each decision, which its leaf carries.
	`ALTER TABLE decisions ADD COLUMN IF NOT EXISTS message_type text NOT NULL DEFAULT '';
	CREATE TABLE tlog_sequence (
		one  boolean PRIMARY KEY DEFAULT true CHECK (one),
		size bigint NOT NULL CHECK (size >= 0)
	);
	INSERT INTO tlog_sequence (size) VALUES (0);
	CREATE TABLE tlog_integration (
		one  boolean PRIMARY KEY DEFAULT true CHECK (one),
		size bigint NOT NULL CHECK (size >= 0)
	);
	INSERT INTO tlog_integration (size) VALUES (0);
	CREATE TABLE tlog_leaves (
		idx         bigint PRIMARY KEY CHECK (idx >= 0),
		key         text NOT NULL UNIQUE,
		data        bytea NOT NULL,
		appended_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE tlog_hashes (
		idx  bigint PRIMARY KEY CHECK (idx >= 0),
		hash bytea NOT NULL CHECK (length(hash) = 32)
	);
	CREATE TABLE tlog_checkpoints (
		id         bigserial PRIMARY KEY,
		size       bigint NOT NULL CHECK (size >= 0),
		note       bytea NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX tlog_checkpoints_size ON tlog_checkpoints (size);
	CREATE TABLE tlog_cosignatures (
		size        bigint NOT NULL,
		witness     text NOT NULL,
		line        bytea NOT NULL,
		received_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (size, witness)
	);`,
	// Version 6: what names each decision's receipt (its id and the digest
	// of its JWS, for feedback to cite) and the names of its answer fields.
	`ALTER TABLE decisions ADD COLUMN IF NOT EXISTS receipt_id text NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN IF NOT EXISTS receipt_digest text NOT NULL DEFAULT '';
	ALTER TABLE decisions ADD COLUMN IF NOT EXISTS answer_fields text NOT NULL DEFAULT '';
	CREATE INDEX IF NOT EXISTS decisions_receipt_id ON decisions (receipt_id) WHERE receipt_id <> '';`,
	// Version 7: revocation (see the SQLite migration 8).
	`ALTER TABLE decisions ADD COLUMN IF NOT EXISTS status_index bigint NOT NULL DEFAULT -1;
	ALTER TABLE decisions ADD COLUMN IF NOT EXISTS subject_key text NOT NULL DEFAULT '';
	CREATE INDEX IF NOT EXISTS decisions_subject_key ON decisions (subject_key) WHERE subject_key <> '';
	CREATE TABLE status_allocation (
		one  boolean PRIMARY KEY DEFAULT true CHECK (one),
		next bigint NOT NULL CHECK (next >= 0)
	);
	INSERT INTO status_allocation (next) VALUES (0);
	CREATE TABLE revocations (
		status_index bigint PRIMARY KEY CHECK (status_index >= 0),
		receipt_id   text NOT NULL,
		agency       text NOT NULL,
		reason       text NOT NULL,
		dispute_id   text NOT NULL,
		revoked_at   timestamptz NOT NULL
	);`,
	// Version 8: each decision's latency (see the SQLite migration 9).
	`ALTER TABLE decisions ADD COLUMN IF NOT EXISTS latency_us bigint NOT NULL DEFAULT -1;
	CREATE INDEX IF NOT EXISTS decisions_decided_at ON decisions (decided_at);`,
}

const (
	pgColumns = `digest, agency, request_id, query_type, outcome, reason, replay, receipt, decided_at, agreement_id, agreement_version, agreement_digest, message_type, receipt_id, receipt_digest, answer_fields, status_index, subject_key, latency_us`
	// pgSelect reads a decision with its leaf, if it has one.
	pgSelect = `SELECT d.digest, d.agency, d.request_id, d.query_type, d.outcome, d.reason, d.replay, d.receipt, d.decided_at,
		d.agreement_id, d.agreement_version, d.agreement_digest, d.message_type, d.receipt_id, d.receipt_digest, d.answer_fields,
		d.status_index, d.subject_key, d.latency_us, coalesce(l.idx, -1), coalesce(l.data, ''::bytea)
		FROM decisions d LEFT JOIN tlog_leaves l ON l.key = d.digest`
	// ON CONFLICT DO NOTHING without a target also skips a row that would
	// break the (agency, request_id) index, without aborting the
	// transaction; commit tells the two cases apart afterwards.
	pgInsert        = `INSERT INTO decisions (` + pgColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT DO NOTHING`
	pgGet           = pgSelect + ` WHERE d.digest = $1`
	pgByReceipt     = pgSelect + ` WHERE d.receipt_id = $1 AND d.receipt_id <> ''`
	pgGetMany       = pgSelect + ` WHERE d.digest = ANY($1)`
	pgDigestByID    = `SELECT digest FROM decisions WHERE agency = $1 AND request_id = $2 AND NOT replay AND request_id <> ''`
	pgCount         = `SELECT count(*) FROM decisions`
	pgVersionExists = `SELECT to_regclass('decisions_schema_version') IS NOT NULL`
	pgVersion       = `SELECT coalesce(max(version), 0) FROM decisions_schema_version`
	pgVersionTable  = `CREATE TABLE IF NOT EXISTS decisions_schema_version (
		version    integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`
	// pgMigrateLock serialises concurrent migrators (brokers starting
	// together); CREATE ... IF NOT EXISTS alone races in PostgreSQL.
	pgMigrateLock = `SELECT pg_advisory_xact_lock(7236102365487124001)`
)

const (
	// pgTake counts one use unless the window is full: no row returned.
	// A new window's row racing another Take's is settled by ON CONFLICT;
	// an existing one is locked, and under READ COMMITTED the WHERE is
	// checked again against the count the lock holder committed.
	pgTake = `INSERT INTO quota_usage (agency, agreement_id, agreement_version, period, period_start, used)
		VALUES ($1, $2, $3, $4, $5, 1)
		ON CONFLICT (agency, agreement_id, agreement_version, period, period_start)
		DO UPDATE SET used = quota_usage.used + 1 WHERE quota_usage.used < $6::bigint
		RETURNING used`
	pgUsage = `SELECT period, used FROM quota_usage
		WHERE agency = $1 AND agreement_id = $2 AND agreement_version = $3
		AND (period, period_start) IN (SELECT * FROM unnest($4::text[], $5::timestamptz[]))`
)

// PostgresRoleSQL returns the statements that give role the least privilege
// a broker needs: read and append decisions, read the schema version, read,
// insert and update quota counters (Take); no UPDATE of decisions, no DELETE,
// TRUNCATE or DDL. Run them as the schema owner after Migrate. The role
// itself (LOGIN, password) is created by the operator, e.g.
//
//	CREATE ROLE certless_broker LOGIN PASSWORD '...';
func PostgresRoleSQL(role string) string {
	r := pgx.Identifier{role}.Sanitize()
	return strings.Join([]string{
		`GRANT USAGE ON SCHEMA public TO ` + r,
		`REVOKE ALL ON decisions, decisions_schema_version, quota_usage FROM ` + r,
		`GRANT SELECT, INSERT ON decisions TO ` + r,
		`GRANT SELECT ON decisions_schema_version TO ` + r,
		`GRANT SELECT, INSERT, UPDATE ON quota_usage TO ` + r,
		`REVOKE ALL ON tlog_sequence, tlog_integration, tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures FROM ` + r,
		`GRANT SELECT, UPDATE ON tlog_sequence, tlog_integration TO ` + r,
		`GRANT SELECT, INSERT ON tlog_leaves, tlog_hashes, tlog_checkpoints, tlog_cosignatures TO ` + r,
		`GRANT USAGE ON SEQUENCE tlog_checkpoints_id_seq TO ` + r,
		`REVOKE ALL ON status_allocation, revocations FROM ` + r,
		`GRANT SELECT, UPDATE ON status_allocation TO ` + r,
		`GRANT SELECT, INSERT ON revocations TO ` + r,
	}, ";\n") + ";\n"
}

// pgMaxConns bounds the store's connections: the flusher holds at most one
// (commit is never concurrent) and Get, DigestByRequestID and Count share the
// rest.
const pgMaxConns = 5

// postgresDB keeps every connection in one pgx pool. The pool replaces
// connections that a cancelled or failed batch broke, so commit needs no
// reconnect logic of its own.
type postgresDB struct {
	pool *pgxpool.Pool
}

func openPostgres(ctx context.Context, dsn string) (*postgresDB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL DSN: %w", err)
	}
	cfg.MaxConns = pgMaxConns
	cc := cfg.ConnConfig
	where := fmt.Sprintf("PostgreSQL %s@%s:%d/%s", cc.User, cc.Host, cc.Port, cc.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", where, err)
	}
	p := &postgresDB{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		p.close()
		return nil, fmt.Errorf("store: connect %s: %w", where, err)
	}
	if err := p.migrate(ctx); err != nil {
		p.close()
		return nil, fmt.Errorf("store: %s: %w", where, err)
	}
	return p, nil
}

func (p *postgresDB) migrate(ctx context.Context) error {
	var exists bool
	if err := p.pool.QueryRow(ctx, pgVersionExists).Scan(&exists); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if exists {
		var v int
		if err := p.pool.QueryRow(ctx, pgVersion).Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > len(postgresMigrations) {
			return fmt.Errorf("schema version %d is newer than this binary's %d", v, len(postgresMigrations))
		}
		if v == len(postgresMigrations) {
			return nil // nothing to do, and no DDL rights needed
		}
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgMigrateLock); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.Exec(ctx, pgVersionTable); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var v int
		if err := tx.QueryRow(ctx, pgVersion).Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > len(postgresMigrations) {
			return fmt.Errorf("schema version %d is newer than this binary's %d", v, len(postgresMigrations))
		}
		for i := v; i < len(postgresMigrations); i++ {
			if _, err := tx.Exec(ctx, postgresMigrations[i]); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO decisions_schema_version (version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
		}
		return nil
	})
}

func (p *postgresDB) commit(ctx context.Context, batch []Decision) ([]result, error) {
	out := make([]result, len(batch))
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, d := range batch {
			b.Queue(pgInsert, d.Digest, d.Agency, d.RequestID, d.QueryType, d.Outcome, d.Reason, d.Replay, d.Receipt, d.DecidedAt,
				d.AgreementID, d.AgreementVersion, d.AgreementDigest, d.Type, d.ReceiptID, d.ReceiptDigest, strings.Join(d.AnswerFields, ","), d.StatusIndex, d.SubjectKey, d.LatencyMicros)
		}
		br := tx.SendBatch(ctx, b) // one round trip for the whole batch
		var missing []string
		inserted := make([]bool, len(batch))
		for i, d := range batch {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return fmt.Errorf("insert %s: %w", d.Digest, err)
			}
			if tag.RowsAffected() == 1 {
				out[i], inserted[i] = result{d: d}, true
			} else {
				missing = append(missing, d.Digest)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("insert batch: %w", err)
		}
		if len(missing) > 0 {
			if err := p.explain(ctx, tx, batch, missing, out); err != nil {
				return err
			}
		}
		// Last, so the sequence row is locked for as short a time as can be.
		return pgAppendDecisionLeaves(ctx, tx, batch, inserted, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// explain fills out for the rows that were not inserted: their digest is
// stored (maybe earlier in this batch), or their id is held by another digest.
func (p *postgresDB) explain(ctx context.Context, tx pgx.Tx, batch []Decision, missing []string, out []result) error {
	rows, err := tx.Query(ctx, pgGetMany, missing)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	stored := make(map[string]Decision, len(missing))
	for rows.Next() {
		d, err := pgScan(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("read back: %w", err)
		}
		stored[d.Digest] = d
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	for i, d := range batch {
		if out[i].d.Digest != "" {
			continue // inserted
		}
		if s, ok := stored[d.Digest]; ok {
			out[i] = result{d: s}
			continue
		}
		var held string
		if err := tx.QueryRow(ctx, pgDigestByID, d.Agency, d.RequestID).Scan(&held); err != nil {
			return fmt.Errorf("read back holder of %s: %w", d.Digest, err)
		}
		out[i] = result{err: &ConflictError{Agency: d.Agency, RequestID: d.RequestID, Digest: d.Digest, Held: held}}
	}
	return nil
}

func pgScan(row pgx.Row) (Decision, error) {
	var d Decision
	var fieldList string
	err := row.Scan(&d.Digest, &d.Agency, &d.RequestID, &d.QueryType, &d.Outcome, &d.Reason, &d.Replay, &d.Receipt, &d.DecidedAt,
		&d.AgreementID, &d.AgreementVersion, &d.AgreementDigest, &d.Type, &d.ReceiptID, &d.ReceiptDigest, &fieldList, &d.StatusIndex, &d.SubjectKey, &d.LatencyMicros, &d.LeafIndex, &d.Leaf)
	d.AnswerFields = splitFields(fieldList)
	if len(d.Leaf) == 0 {
		d.Leaf = nil
	}
	d.DecidedAt = d.DecidedAt.UTC()
	return d, err
}

func (p *postgresDB) get(ctx context.Context, digest string) (Decision, bool, error) {
	d, err := pgScan(p.pool.QueryRow(ctx, pgGet, digest))
	if errors.Is(err, pgx.ErrNoRows) {
		return Decision{}, false, nil
	}
	return d, err == nil, err
}

func (p *postgresDB) byReceipt(ctx context.Context, receiptID string) (Decision, bool, error) {
	d, err := pgScan(p.pool.QueryRow(ctx, pgByReceipt, receiptID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Decision{}, false, nil
	}
	if err != nil {
		return Decision{}, false, err
	}
	return d, true, nil
}

func (p *postgresDB) digestByRequestID(ctx context.Context, agency, requestID string) (digest string, ok bool, err error) {
	err = p.pool.QueryRow(ctx, pgDigestByID, agency, requestID).Scan(&digest)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return digest, err == nil, err
}

func (p *postgresDB) count(ctx context.Context) (n int, err error) {
	err = p.pool.QueryRow(ctx, pgCount).Scan(&n)
	return n, err
}

// takeBatch runs the items in one transaction committed without waiting
// for the WAL flush (a crash of PostgreSQL may forget the last uses, well
// under a second; decisions stay fully durable). A one-window item (an
// agreement with a daily quota, say) is all or nothing by itself: runs of
// them are pipelined, so a batch of those is one round trip from BEGIN to
// COMMIT. An item with several windows runs under a savepoint and is rolled
// back to it when one window is full. Items come sorted, and windows month
// first, so concurrent batches lock rows in one order and cannot deadlock.
func (p *postgresDB) takeBatch(ctx context.Context, items []takeItem) (_ []bool, err error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	// The pool destroys a connection released inside a transaction, so a
	// failed ROLLBACK leaves nothing behind.
	defer conn.Release()
	defer func() {
		if err != nil {
			conn.Exec(ctx, "ROLLBACK")
		}
	}()
	oks := make([]bool, len(items))
	for i := range oks {
		oks[i] = true
	}
	// A round trip is a pgx.Batch and its plan: per statement, the item
	// whose upsert it is, or -1 for a statement without rows.
	b, plan := &pgx.Batch{}, []int{}
	queue := func(item int, sql string, args ...any) { b.Queue(sql, args...); plan = append(plan, item) }
	send := func() error {
		br := conn.SendBatch(ctx, b)
		for _, item := range plan {
			if item < 0 {
				if _, err := br.Exec(); err != nil {
					br.Close()
					return err
				}
				continue
			}
			var used int64
			switch err := br.QueryRow().Scan(&used); {
			case errors.Is(err, pgx.ErrNoRows): // full: this use is not counted
				oks[item] = false
			case err != nil:
				br.Close()
				return fmt.Errorf("count %v: %w", items[item].k, err)
			}
		}
		b, plan = &pgx.Batch{}, plan[:0]
		return br.Close()
	}
	queue(-1, "BEGIN")
	queue(-1, "SET LOCAL synchronous_commit = off")
	for i, it := range items {
		multi := len(it.ws) > 1
		if multi {
			queue(-1, "SAVEPOINT take")
		}
		for _, w := range it.ws {
			queue(i, pgTake, it.k.agency, it.k.agreementID, it.k.version, w.period, w.start, w.limit)
		}
		if !multi {
			continue // pipelined with the next ones
		}
		// Several windows: whether to keep them is known only once their
		// upserts answered.
		if err := send(); err != nil {
			return nil, fmt.Errorf("take: %w", err)
		}
		if oks[i] {
			queue(-1, "RELEASE SAVEPOINT take")
		} else { // count nothing of this item
			queue(-1, "ROLLBACK TO SAVEPOINT take")
		}
	}
	queue(-1, "COMMIT")
	if err := send(); err != nil {
		return nil, fmt.Errorf("take: %w", err)
	}
	return oks, nil
}

func (p *postgresDB) usage(ctx context.Context, k quotaKey, windows []quotaWindow) ([]int, error) {
	periods := make([]string, len(windows))
	starts := make([]time.Time, len(windows))
	for i, w := range windows {
		periods[i], starts[i] = w.period, w.start
	}
	rows, err := p.pool.Query(ctx, pgUsage, k.agency, k.agreementID, k.version, periods, starts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	used := make([]int, len(windows))
	for rows.Next() {
		var (
			period string
			n      int
		)
		if err := rows.Scan(&period, &n); err != nil {
			return nil, err
		}
		for i, w := range windows {
			if w.period == period {
				used[i] = n
			}
		}
	}
	return used, rows.Err()
}

func (p *postgresDB) close() error {
	p.pool.Close()
	return nil
}
