package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certless/certless/translog"
)

// Health is what Inspect finds of a decision store. Inspect changes
// nothing: it neither creates nor migrates the schema, and its write is
// rolled back.
type Health struct {
	// Version is the schema version found (0: no schema); Want this
	// binary's.
	Version, Want int
	// Writable is nil when a decision row could be inserted, in a
	// transaction then rolled back; else why not (no INSERT grant, a
	// read-only replica or file, a lock held too long).
	Writable error
	// Sequenced is the number of leaves in the transparency log;
	// Checkpointed the size of its newest checkpoint and CheckpointAt when
	// that was stored (zero when there is none). Read only when the schema
	// is current.
	Sequenced, Checkpointed int64
	CheckpointAt            time.Time
	// OldestPending is the time of the first leaf after the newest
	// checkpoint (zero when every leaf is under it).
	OldestPending time.Time
}

// Migrated reports whether the schema is this binary's.
func (h Health) Migrated() bool { return h.Version == h.Want }

// ErrNotCreated: the SQLite file at the DSN does not exist.
var ErrNotCreated = errors.New("store: the SQLite file does not exist")

// Inspect connects to the decision store at dsn and reports its schema
// version, whether it takes a write, and the state of the transparency log.
// An error means the store could not be reached or read.
func Inspect(ctx context.Context, dsn string) (Health, error) {
	if isPostgres(dsn) {
		return inspectPostgres(ctx, dsn)
	}
	return inspectSQLite(ctx, dsn)
}

// probeDigest names the row of the rolled-back write.
func probeDigest() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "certless-doctor-probe-" + hex.EncodeToString(b)
}

func inspectPostgres(ctx context.Context, dsn string) (Health, error) {
	h := Health{Want: len(postgresMigrations)}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return h, fmt.Errorf("store: PostgreSQL DSN: %w", err)
	}
	where := fmt.Sprintf("PostgreSQL %s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return h, fmt.Errorf("store: connect %s: %w", where, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, pgVersionExists).Scan(&exists); err != nil {
		return h, fmt.Errorf("store: %s: read schema version: %w", where, err)
	}
	if exists {
		if err := conn.QueryRow(ctx, pgVersion).Scan(&h.Version); err != nil {
			return h, fmt.Errorf("store: %s: read schema version: %w", where, err)
		}
	}
	if !h.Migrated() {
		return h, nil
	}
	h.Writable = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, pgInsert, probeDigest(), "certless-doctor", "", "identity", Answered, "", false, []byte{},
			time.Now().UTC(), "", 0, "", "", "", "", "", -1, "", -1)
		if err != nil {
			return err
		}
		return errRollback
	})
	if errors.Is(h.Writable, errRollback) {
		h.Writable = nil
	}
	if err := conn.QueryRow(ctx, `SELECT size FROM tlog_sequence`).Scan(&h.Sequenced); err != nil {
		return h, fmt.Errorf("store: %s: read the log: %w", where, err)
	}
	err = conn.QueryRow(ctx, `SELECT size, created_at FROM tlog_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&h.Checkpointed, &h.CheckpointAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("store: %s: read the newest checkpoint: %w", where, err)
	}
	if h.Sequenced > h.Checkpointed {
		var leaf []byte
		if err := conn.QueryRow(ctx, `SELECT data FROM tlog_leaves WHERE idx = $1`, h.Checkpointed).Scan(&leaf); err != nil {
			return h, fmt.Errorf("store: %s: read leaf %d: %w", where, h.Checkpointed, err)
		}
		if h.OldestPending, err = leafTime(leaf); err != nil {
			return h, fmt.Errorf("store: %s: leaf %d: %w", where, h.Checkpointed, err)
		}
	}
	return h, nil
}

func leafTime(b []byte) (time.Time, error) {
	l, err := translog.ParseLeaf(b)
	if err != nil {
		return time.Time{}, err
	}
	return l.TimeOf()
}

// errRollback ends the probe's transaction without committing.
var errRollback = errors.New("rollback")

func inspectSQLite(ctx context.Context, dsn string) (Health, error) {
	h := Health{Want: len(sqliteMigrations)}
	if dsn == "" {
		return h, errors.New("store: empty DSN")
	}
	if strings.Contains(dsn, ":memory:") || strings.Contains(dsn, "mode=memory") {
		return h, errors.New("store: an in-memory SQLite store lives only inside its process")
	}
	if !strings.HasPrefix(dsn, "file:") {
		if _, err := os.Stat(dsn); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return h, fmt.Errorf("%w: %s", ErrNotCreated, dsn)
			}
			return h, fmt.Errorf("store: SQLite %s: %w", dsn, err)
		}
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("sqlite", dsn+sep+"_pragma=busy_timeout(2000)&_txlock=immediate")
	if err != nil {
		return h, fmt.Errorf("store: open SQLite %s: %w", dsn, err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'decisions_schema_version'`).Scan(&n); err != nil {
		return h, fmt.Errorf("store: SQLite %s: read schema version: %w", dsn, err)
	}
	if n == 1 {
		if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM decisions_schema_version`).Scan(&h.Version); err != nil {
			return h, fmt.Errorf("store: SQLite %s: read schema version: %w", dsn, err)
		}
	}
	if !h.Migrated() {
		return h, nil
	}
	h.Writable = func() error {
		tx, err := db.BeginTx(ctx, nil) // immediate: takes the write lock
		if err != nil {
			return err
		}
		defer tx.Rollback()
		_, err = tx.ExecContext(ctx, sqliteInsert, probeDigest(), "certless-doctor", "", "identity", Answered, "", 0, []byte{},
			time.Now().UTC().Format(sqliteTime), "", 0, "", "", "", "", "", -1, "", -1)
		return err
	}()
	if h.Sequenced, err = sqliteNext(ctx, db); err != nil {
		return h, fmt.Errorf("store: SQLite %s: read the log: %w", dsn, err)
	}
	var at string
	err = db.QueryRowContext(ctx, `SELECT size, created_at FROM tlog_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&h.Checkpointed, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return h, fmt.Errorf("store: SQLite %s: read the newest checkpoint: %w", dsn, err)
	default:
		if h.CheckpointAt, err = time.Parse(sqliteTime, at); err != nil {
			return h, fmt.Errorf("store: SQLite %s: newest checkpoint time %q: %w", dsn, at, err)
		}
	}
	if h.Sequenced > h.Checkpointed {
		var leaf []byte
		if err := db.QueryRowContext(ctx, `SELECT data FROM tlog_leaves WHERE idx = ?`, h.Checkpointed).Scan(&leaf); err != nil {
			return h, fmt.Errorf("store: SQLite %s: read leaf %d: %w", dsn, h.Checkpointed, err)
		}
		if h.OldestPending, err = leafTime(leaf); err != nil {
			return h, fmt.Errorf("store: SQLite %s: leaf %d: %w", dsn, h.Checkpointed, err)
		}
	}
	return h, nil
}
