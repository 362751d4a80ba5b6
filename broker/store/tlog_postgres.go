package store

import (
	"context"
	"errors"
	"fmt"

	"filippo.io/torchwood"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

const (
	pgSequence     = `UPDATE tlog_sequence SET size = size + $1 RETURNING size`
	pgInsertLeaves = `INSERT INTO tlog_leaves (idx, key, data) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])`
	pgLatest       = `SELECT size, note FROM tlog_checkpoints ORDER BY id DESC LIMIT 1`
	pgCosigs       = `SELECT line FROM tlog_cosignatures WHERE size = $1 ORDER BY witness`
)

// pgAppendDecisionLeaves appends the leaves of the decisions this batch
// inserted, at the indexes the sequence row hands out, in the batch's
// transaction.
func pgAppendDecisionLeaves(ctx context.Context, tx pgx.Tx, batch []Decision, inserted []bool, out []result) error {
	keys, data := leavesOf(batch, inserted)
	if len(keys) == 0 {
		return nil
	}
	var end int64
	if err := tx.QueryRow(ctx, pgSequence, len(keys)).Scan(&end); err != nil {
		return fmt.Errorf("sequence leaves: %w", err)
	}
	idx := make([]int64, len(keys))
	for k := range keys {
		idx[k] = end - int64(len(keys)) + int64(k)
	}
	if _, err := tx.Exec(ctx, pgInsertLeaves, idx, keys, data); err != nil {
		return fmt.Errorf("append leaves: %w", err)
	}
	setLeafIndexes(keys, idx, data, out)
	return nil
}

// leavesOf lists the keys and leaves of the inserted decisions.
func leavesOf(batch []Decision, inserted []bool) (keys []string, data [][]byte) {
	for i, d := range batch {
		if inserted[i] {
			keys, data = append(keys, d.Digest), append(data, d.Leaf)
		}
	}
	return keys, data
}

// setLeafIndexes gives every result of an appended digest its leaf: the
// inserted row and any copy of it later in the batch, read back before its
// leaf existed.
func setLeafIndexes(keys []string, idx []int64, data [][]byte, out []result) {
	at := make(map[string]int, len(keys))
	for k, key := range keys {
		at[key] = k
	}
	for i := range out {
		if k, ok := at[out[i].d.Digest]; ok && out[i].err == nil {
			out[i].d.LeafIndex, out[i].d.Leaf = idx[k], data[k]
		}
	}
}

func (p *postgresDB) appendLeaf(ctx context.Context, key string, leaf []byte) (idx int64, err error) {
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var end int64
		if err := tx.QueryRow(ctx, pgSequence, 1).Scan(&end); err != nil {
			return fmt.Errorf("sequence leaf: %w", err)
		}
		// The sequence row is locked now: a concurrent append of the
		// same key has committed or waits behind this one.
		err := tx.QueryRow(ctx, `SELECT idx FROM tlog_leaves WHERE key = $1`, key).Scan(&idx)
		if err == nil {
			return errExists
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		idx = end - 1
		_, err = tx.Exec(ctx, `INSERT INTO tlog_leaves (idx, key, data) VALUES ($1, $2, $3)`, idx, key, leaf)
		return err
	})
	if errors.Is(err, errExists) {
		return idx, nil // rolled back: the sequence is as it was
	}
	return idx, err
}

var errExists = errors.New("leaf key exists")

func (p *postgresDB) sequenced(ctx context.Context) (n int64, err error) {
	err = p.pool.QueryRow(ctx, `SELECT size FROM tlog_sequence`).Scan(&n)
	return n, err
}

func (p *postgresDB) integrate(ctx context.Context, max int, fn IntegrateFunc) (size int64, err error) {
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT size FROM tlog_integration FOR UPDATE`).Scan(&size); err != nil {
			return fmt.Errorf("lock integration: %w", err)
		}
		leaves, err := pgReadLeaves(ctx, tx, size, max)
		if err != nil {
			return err
		}
		if len(leaves) == 0 {
			return nil
		}
		edge, err := pgEdge(ctx, tx, size)
		if err != nil {
			return err
		}
		hashes, cp, err := integrate(size, edge, leaves, fn)
		if err != nil {
			return err
		}
		idx := make([]int64, len(hashes))
		hs := make([][]byte, len(hashes))
		for i, h := range hashes {
			idx[i], hs[i] = h.Index, append([]byte(nil), h.Hash[:]...)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tlog_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])`, idx, hs); err != nil {
			return fmt.Errorf("store hashes: %w", err)
		}
		size += int64(len(leaves))
		if _, err := tx.Exec(ctx, `INSERT INTO tlog_checkpoints (size, note) VALUES ($1, $2)`, size, cp); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE tlog_integration SET size = $1`, size); err != nil {
			return fmt.Errorf("advance integration: %w", err)
		}
		return nil
	})
	return size, err
}

func pgEdge(ctx context.Context, q pgQuerier, size int64) ([]translog.StoredHash, error) {
	idx := torchwood.RightEdge(size)
	hs, err := pgHashes(ctx, q, idx)
	if err != nil {
		return nil, fmt.Errorf("read right edge of %d: %w", size, err)
	}
	out := make([]translog.StoredHash, len(idx))
	for i := range idx {
		out[i] = translog.StoredHash{Index: idx[i], Hash: hs[i]}
	}
	return out, nil
}

type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func pgHashes(ctx context.Context, q pgQuerier, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT idx, hash FROM tlog_hashes WHERE idx = ANY($1)`, indexes)
	if err != nil {
		return nil, err
	}
	got := make(map[int64]tlog.Hash, len(indexes))
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
	out := make([]tlog.Hash, len(indexes))
	for k, i := range indexes {
		h, ok := got[i]
		if !ok {
			return nil, missingHashes(len(got), len(indexes))
		}
		out[k] = h
	}
	return out, nil
}

func pgReadLeaves(ctx context.Context, q pgQuerier, start int64, n int) ([][]byte, error) {
	rows, err := q.Query(ctx, `SELECT idx, data FROM tlog_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2`, start, n)
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

func (p *postgresDB) latestCheckpoint(ctx context.Context) ([]byte, error) {
	var (
		size int64
		b    []byte
	)
	err := p.pool.QueryRow(ctx, pgLatest).Scan(&size, &b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return p.withCosignatures(ctx, size, b)
}

func (p *postgresDB) withCosignatures(ctx context.Context, size int64, note []byte) ([]byte, error) {
	rows, err := p.pool.Query(ctx, pgCosigs, size)
	if err != nil {
		return nil, err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, err
	}
	return appendCosignatures(note, lines), nil
}

func (p *postgresDB) checkpointCovering(ctx context.Context, index int64, quorum int) ([]byte, error) {
	var (
		size int64
		b    []byte
	)
	err := p.pool.QueryRow(ctx, `SELECT c.size, c.note FROM tlog_checkpoints c
		WHERE c.size > $1 AND (SELECT count(*) FROM tlog_cosignatures s WHERE s.size = c.size) >= $2
		ORDER BY c.size, c.id LIMIT 1`, index, quorum).Scan(&size, &b)
	if errors.Is(err, pgx.ErrNoRows) {
		err = p.pool.QueryRow(ctx, `SELECT size, note FROM tlog_checkpoints WHERE size > $1 ORDER BY id DESC LIMIT 1`, index).Scan(&size, &b)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return p.withCosignatures(ctx, size, b)
}

func (p *postgresDB) checkpoints(ctx context.Context, fn func([]byte) error) error {
	rows, err := p.pool.Query(ctx, `SELECT c.note, coalesce((SELECT array_agg(s.line ORDER BY s.witness) FROM tlog_cosignatures s WHERE s.size = c.size), '{}')
		FROM tlog_checkpoints c ORDER BY c.id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			note  []byte
			lines [][]byte
		)
		if err := rows.Scan(&note, &lines); err != nil {
			return err
		}
		if err := fn(appendCosignatures(note, lines)); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (p *postgresDB) saveCosignature(ctx context.Context, size int64, witness string, line []byte) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO tlog_cosignatures (size, witness, line) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, size, witness, line)
	return err
}

func (p *postgresDB) readHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	return pgHashes(ctx, p.pool, indexes)
}

func (p *postgresDB) readLeaves(ctx context.Context, start int64, n int) ([][]byte, error) {
	return pgReadLeaves(ctx, p.pool, start, n)
}

func (p *postgresDB) leaf(ctx context.Context, key string) (idx int64, data []byte, ok bool, err error) {
	err = p.pool.QueryRow(ctx, `SELECT idx, data FROM tlog_leaves WHERE key = $1`, key).Scan(&idx, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, false, nil
	}
	return idx, data, err == nil, err
}

func (p *postgresDB) unlogged(ctx context.Context, limit int) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT d.digest FROM decisions d WHERE NOT EXISTS (SELECT 1 FROM tlog_leaves l WHERE l.key = d.digest)
		ORDER BY d.decided_at LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// appendCosignatures adds cosignature lines to a signed note.
func appendCosignatures(note []byte, lines [][]byte) []byte {
	if len(lines) == 0 {
		return note
	}
	out := append([]byte(nil), note...)
	for _, l := range lines {
		out = append(out, l...)
		if len(l) > 0 && l[len(l)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out
}

func (p *postgresDB) recentCheckpoints(ctx context.Context, n int) ([][]byte, error) {
	rows, err := p.pool.Query(ctx, `SELECT c.note, coalesce((SELECT array_agg(s.line ORDER BY s.witness) FROM tlog_cosignatures s WHERE s.size = c.size), '{}')
		FROM tlog_checkpoints c ORDER BY c.id DESC LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var (
			note  []byte
			lines [][]byte
		)
		if err := rows.Scan(&note, &lines); err != nil {
			return nil, err
		}
		out = append(out, appendCosignatures(note, lines))
	}
	return out, rows.Err()
}
