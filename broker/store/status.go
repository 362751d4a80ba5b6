package store

import (
	"context"
	"fmt"
	"time"
)

// Status is revocation as the store keeps it: the allocation of receipts'
// indexes in the status lists, the revocations, and the receipts that
// carried one subject's answer to one query.
type Status interface {
	// ReserveStatus reserves n consecutive status indexes, never handed
	// out before by any process on the database, and returns the first.
	ReserveStatus(ctx context.Context, n int) (int64, error)
	// Revoke records revocations; an index already revoked keeps its
	// first record (Revoke is idempotent).
	Revoke(ctx context.Context, rs ...Revocation) error
	// Revocations returns the revocations of indexes in [from, to), by
	// index.
	Revocations(ctx context.Context, from, to int64) ([]Revocation, error)
	// BySubject returns the decisions whose subject key is key, oldest
	// first.
	BySubject(ctx context.Context, key string) ([]Decision, error)
	// Recent returns up to limit decisions, newest first, of agency (all
	// agencies when "").
	Recent(ctx context.Context, agency string, limit int) ([]Decision, error)
}

// Revocation is one revoked receipt.
type Revocation struct {
	StatusIndex int64
	ReceiptID   string
	Agency      string // whom the receipt was issued to
	Reason      string
	DisputeID   string
	At          time.Time
}

func (g *group) ReserveStatus(ctx context.Context, n int) (int64, error) {
	if g.isClosed() {
		return 0, ErrClosed
	}
	if n <= 0 {
		return 0, fmt.Errorf("store: %w: reserve %d status indexes", ErrInvalid, n)
	}
	first, err := g.b.reserveStatus(ctx, n)
	if err != nil {
		return 0, fmt.Errorf("store: reserve status indexes: %w", err)
	}
	return first, nil
}

func (g *group) Revoke(ctx context.Context, rs ...Revocation) error {
	if g.isClosed() {
		return ErrClosed
	}
	for _, r := range rs {
		if r.StatusIndex < 0 || r.Reason == "" || r.At.IsZero() {
			return fmt.Errorf("store: %w: revocation %+v", ErrInvalid, r)
		}
	}
	if err := g.b.revoke(ctx, rs); err != nil {
		return fmt.Errorf("store: revoke: %w", err)
	}
	return nil
}

func (g *group) Revocations(ctx context.Context, from, to int64) ([]Revocation, error) {
	if g.isClosed() {
		return nil, ErrClosed
	}
	rs, err := g.b.revocations(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: revocations: %w", err)
	}
	return rs, nil
}

func (g *group) BySubject(ctx context.Context, key string) ([]Decision, error) {
	if g.isClosed() {
		return nil, ErrClosed
	}
	if key == "" {
		return nil, nil
	}
	ds, err := g.b.bySubject(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("store: decisions by subject: %w", err)
	}
	return ds, nil
}

func (g *group) Recent(ctx context.Context, agency string, limit int) ([]Decision, error) {
	if g.isClosed() {
		return nil, ErrClosed
	}
	if limit <= 0 || limit > 100000 {
		return nil, fmt.Errorf("store: %w: limit %d outside 1..100000", ErrInvalid, limit)
	}
	ds, err := g.b.recent(ctx, agency, limit)
	if err != nil {
		return nil, fmt.Errorf("store: recent decisions: %w", err)
	}
	return ds, nil
}

// SQLite.

func (s *sqliteDB) recent(ctx context.Context, agency string, limit int) ([]Decision, error) {
	return s.selectDecisions(ctx, `WHERE (? = '' OR d.agency = ?) ORDER BY d.decided_at DESC, d.digest LIMIT ?`, agency, agency, limit)
}

func (s *sqliteDB) bySubject(ctx context.Context, key string) ([]Decision, error) {
	return s.selectDecisions(ctx, `WHERE d.subject_key = ? ORDER BY d.decided_at, d.digest`, key)
}

// selectDecisions runs sqliteSelect with a WHERE (and ORDER) clause.
func (s *sqliteDB) selectDecisions(ctx context.Context, where string, args ...any) ([]Decision, error) {
	rows, err := s.db.QueryContext(ctx, sqliteSelect+" "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		d, err := sqliteScan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *sqliteDB) reserveStatus(ctx context.Context, n int) (int64, error) {
	var next int64
	err := s.db.QueryRowContext(ctx, `UPDATE status_allocation SET next = next + ? WHERE one = 1 RETURNING next`, n).Scan(&next)
	return next - int64(n), err
}

func (s *sqliteDB) revoke(ctx context.Context, rs []Revocation) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (status_index, receipt_id, agency, reason, dispute_id, revoked_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (status_index) DO NOTHING`,
			r.StatusIndex, r.ReceiptID, r.Agency, r.Reason, r.DisputeID, r.At.UTC().Format(sqliteTime)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *sqliteDB) revocations(ctx context.Context, from, to int64) ([]Revocation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT status_index, receipt_id, agency, reason, dispute_id, revoked_at FROM revocations
		WHERE status_index >= ? AND status_index < ? ORDER BY status_index`, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		var at string
		if err := rows.Scan(&r.StatusIndex, &r.ReceiptID, &r.Agency, &r.Reason, &r.DisputeID, &at); err != nil {
			return nil, err
		}
		if r.At, err = time.Parse(sqliteTime, at); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// PostgreSQL.

func (p *postgresDB) recent(ctx context.Context, agency string, limit int) ([]Decision, error) {
	return p.selectDecisions(ctx, `WHERE ($1 = '' OR d.agency = $1) ORDER BY d.decided_at DESC, d.digest LIMIT $2`, agency, limit)
}

func (p *postgresDB) bySubject(ctx context.Context, key string) ([]Decision, error) {
	return p.selectDecisions(ctx, `WHERE d.subject_key = $1 ORDER BY d.decided_at, d.digest`, key)
}

// selectDecisions runs pgSelect with a WHERE (and ORDER) clause.
func (p *postgresDB) selectDecisions(ctx context.Context, where string, args ...any) ([]Decision, error) {
	rows, err := p.pool.Query(ctx, pgSelect+" "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		d, err := pgScan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (p *postgresDB) reserveStatus(ctx context.Context, n int) (int64, error) {
	var next int64
	err := p.pool.QueryRow(ctx, `UPDATE status_allocation SET next = next + $1 RETURNING next`, n).Scan(&next)
	return next - int64(n), err
}

func (p *postgresDB) revoke(ctx context.Context, rs []Revocation) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, r := range rs {
		if _, err := tx.Exec(ctx, `INSERT INTO revocations (status_index, receipt_id, agency, reason, dispute_id, revoked_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (status_index) DO NOTHING`,
			r.StatusIndex, r.ReceiptID, r.Agency, r.Reason, r.DisputeID, r.At.UTC()); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (p *postgresDB) revocations(ctx context.Context, from, to int64) ([]Revocation, error) {
	rows, err := p.pool.Query(ctx, `SELECT status_index, receipt_id, agency, reason, dispute_id, revoked_at FROM revocations
		WHERE status_index >= $1 AND status_index < $2 ORDER BY status_index`, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		if err := rows.Scan(&r.StatusIndex, &r.ReceiptID, &r.Agency, &r.Reason, &r.DisputeID, &r.At); err != nil {
			return nil, err
		}
		r.At = r.At.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}
