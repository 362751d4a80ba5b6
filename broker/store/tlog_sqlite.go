package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

type sqliteTx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func sqliteNext(ctx context.Context, q sqliteTx) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, `SELECT coalesce(max(idx) + 1, 0) FROM tlog_leaves`).Scan(&n)
	return n, err
}

const sqliteInsertLeaf = `INSERT INTO tlog_leaves (idx, key, data) VALUES (?, ?, ?)`

// appendDecisionLeaves appends the leaves of the decisions this batch
// inserted, in its (immediate, so single-writer) transaction.
func (s *sqliteDB) appendDecisionLeaves(ctx context.Context, tx *sql.Tx, batch []Decision, inserted []bool, out []result) error {
	keys, data := leavesOf(batch, inserted)
	if len(keys) == 0 {
		return nil
	}
	next, err := sqliteNext(ctx, tx)
	if err != nil {
		return fmt.Errorf("sequence leaves: %w", err)
	}
	ins := tx.StmtContext(ctx, s.leafStmt)
	defer ins.Close()
	idx := make([]int64, len(keys))
	for k := range keys {
		idx[k] = next + int64(k)
		if _, err := ins.ExecContext(ctx, idx[k], keys[k], data[k]); err != nil {
			return fmt.Errorf("append leaf: %w", err)
		}
	}
	setLeafIndexes(keys, idx, data, out)
	return nil
}

func (s *sqliteDB) appendLeaf(ctx context.Context, key string, leaf []byte) (idx int64, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, `SELECT idx FROM tlog_leaves WHERE key = ?`, key).Scan(&idx)
	if err == nil {
		return idx, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if idx, err = sqliteNext(ctx, tx); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tlog_leaves (idx, key, data) VALUES (?, ?, ?)`, idx, key, leaf); err != nil {
		return 0, err
	}
	return idx, tx.Commit()
}

func (s *sqliteDB) sequenced(ctx context.Context) (int64, error) {
	return sqliteNext(ctx, s.db)
}

func (s *sqliteDB) integrate(ctx context.Context, max int, fn IntegrateFunc) (size int64, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT size FROM tlog_integration`).Scan(&size); err != nil {
		return 0, fmt.Errorf("read integration: %w", err)
	}
	leaves, err := sqliteReadLeaves(ctx, tx, size, max)
	if err != nil || len(leaves) == 0 {
		return size, err
	}
	idx := torchwood.RightEdge(size)
	hs, err := sqliteHashes(ctx, tx, idx)
	if err != nil {
		return 0, fmt.Errorf("read right edge of %d: %w", size, err)
	}
	edge := make([]translog.StoredHash, len(idx))
	for i := range idx {
		edge[i] = translog.StoredHash{Index: idx[i], Hash: hs[i]}
	}
	hashes, cp, err := integrate(size, edge, leaves, fn)
	if err != nil {
		return 0, err
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO tlog_hashes (idx, hash) VALUES (?, ?)`)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	for _, h := range hashes {
		if _, err := st.ExecContext(ctx, h.Index, h.Hash[:]); err != nil {
			return 0, fmt.Errorf("store hash %d: %w", h.Index, err)
		}
	}
	size += int64(len(leaves))
	if _, err := tx.ExecContext(ctx, `INSERT INTO tlog_checkpoints (size, note, created_at) VALUES (?, ?, ?)`,
		size, cp, time.Now().UTC().Format(sqliteTime)); err != nil {
		return 0, fmt.Errorf("store checkpoint: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tlog_integration SET size = ?`, size); err != nil {
		return 0, fmt.Errorf("advance integration: %w", err)
	}
	return size, tx.Commit()
}

func sqliteHashes(ctx context.Context, q sqliteTx, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	got := make(map[int64]tlog.Hash, len(indexes))
	for start := 0; start < len(indexes); start += 500 {
		chunk := indexes[start:min(start+500, len(indexes))]
		args := make([]any, len(chunk))
		for i, x := range chunk {
			args[i] = x
		}
		rows, err := q.QueryContext(ctx, `SELECT idx, hash FROM tlog_hashes WHERE idx IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var (
				i int64
				b []byte
			)
			if err := rows.Scan(&i, &b); err != nil {
				rows.Close()
				return nil, err
			}
			if len(b) != tlog.HashSize {
				rows.Close()
				return nil, fmt.Errorf("stored hash %d has %d bytes", i, len(b))
			}
			got[i] = tlog.Hash(b)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for k, i := range indexes {
		h, ok := got[i]
		if !ok {
			return nil, missingHashes(len(got), len(indexes))
		}
		out[k] = h
	}
	return out, nil
}

func sqliteReadLeaves(ctx context.Context, q sqliteTx, start int64, n int) ([][]byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT idx, data FROM tlog_leaves WHERE idx >= ? ORDER BY idx LIMIT ?`, start, n)
	if err != nil {
		return nil, fmt.Errorf("read leaves: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var (
			i int64
			b []byte
		)
		if err := rows.Scan(&i, &b); err != nil {
			return nil, fmt.Errorf("read leaves: %w", err)
		}
		if i != start+int64(len(out)) {
			break // a gap: only a tampered table has one; return what is contiguous
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (s *sqliteDB) latestCheckpoint(ctx context.Context) ([]byte, error) {
	var (
		size int64
		b    []byte
	)
	err := s.db.QueryRowContext(ctx, `SELECT size, note FROM tlog_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&size, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.withCosignatures(ctx, size, b)
}

func (s *sqliteDB) withCosignatures(ctx context.Context, size int64, note []byte) ([]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT line FROM tlog_cosignatures WHERE size = ? ORDER BY witness`, size)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines [][]byte
	for rows.Next() {
		var l []byte
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return appendCosignatures(note, lines), nil
}

func (s *sqliteDB) checkpointCovering(ctx context.Context, index int64, quorum int) ([]byte, error) {
	var (
		size int64
		b    []byte
	)
	err := s.db.QueryRowContext(ctx, `SELECT c.size, c.note FROM tlog_checkpoints c
		WHERE c.size > ? AND (SELECT count(*) FROM tlog_cosignatures s WHERE s.size = c.size) >= ?
		ORDER BY c.size, c.id LIMIT 1`, index, quorum).Scan(&size, &b)
	if errors.Is(err, sql.ErrNoRows) {
		err = s.db.QueryRowContext(ctx, `SELECT size, note FROM tlog_checkpoints WHERE size > ? ORDER BY id DESC LIMIT 1`, index).Scan(&size, &b)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.withCosignatures(ctx, size, b)
}

func (s *sqliteDB) checkpoints(ctx context.Context, fn func([]byte) error) error {
	type cp struct {
		size int64
		note []byte
	}
	rows, err := s.db.QueryContext(ctx, `SELECT size, note FROM tlog_checkpoints ORDER BY id`)
	if err != nil {
		return err
	}
	var all []cp
	for rows.Next() {
		var c cp
		if err := rows.Scan(&c.size, &c.note); err != nil {
			rows.Close()
			return err
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range all {
		b, err := s.withCosignatures(ctx, c.size, c.note)
		if err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqliteDB) saveCosignature(ctx context.Context, size int64, witness string, line []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO tlog_cosignatures (size, witness, line, received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		size, witness, line, time.Now().UTC().Format(sqliteTime))
	return err
}

func (s *sqliteDB) readHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	return sqliteHashes(ctx, s.db, indexes)
}

func (s *sqliteDB) readLeaves(ctx context.Context, start int64, n int) ([][]byte, error) {
	return sqliteReadLeaves(ctx, s.db, start, n)
}

func (s *sqliteDB) leaf(ctx context.Context, key string) (idx int64, data []byte, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT idx, data FROM tlog_leaves WHERE key = ?`, key).Scan(&idx, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, false, nil
	}
	return idx, data, err == nil, err
}

func (s *sqliteDB) unlogged(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT d.digest FROM decisions d WHERE NOT EXISTS (SELECT 1 FROM tlog_leaves l WHERE l.key = d.digest)
		ORDER BY d.decided_at LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *sqliteDB) recentCheckpoints(ctx context.Context, n int) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT size, note FROM tlog_checkpoints ORDER BY id DESC LIMIT ?`, n)
	if err != nil {
		return nil, err
	}
	type cp struct {
		size int64
		note []byte
	}
	var all []cp
	for rows.Next() {
		var c cp
		if err := rows.Scan(&c.size, &c.note); err != nil {
			rows.Close()
			return nil, err
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(all))
	for _, c := range all {
		b, err := s.withCosignatures(ctx, c.size, c.note)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
