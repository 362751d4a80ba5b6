package store

import (
	"context"
	"fmt"
	"time"
)

// Row is what a supervision report reads of one decision: never the
// receipt, never a subject (SubjectKey is a keyed digest).
type Row struct {
	Agency, Query, Outcome, Reason, Type string
	SubjectKey                           string
	DecidedAt                            time.Time
	// LatencyMicros is -1 when not measured; LeafIndex -1 when the
	// decision predates the log.
	LatencyMicros, LeafIndex int64
}

// Rows is the decisions read by reports.
type Rows interface {
	// Rows calls fn with every decision decided in [from, to), in
	// decision time order; an error of fn stops it and is returned.
	Rows(ctx context.Context, from, to time.Time, fn func(Row) error) error
	// CountBetween is the number of decisions decided in [from, to).
	CountBetween(ctx context.Context, from, to time.Time) (int, error)
}

// Rows implements Rows.
func (g *group) Rows(ctx context.Context, from, to time.Time, fn func(Row) error) error {
	if g.isClosed() {
		return ErrClosed
	}
	if err := g.b.rows(ctx, from.UTC(), to.UTC(), fn); err != nil {
		return fmt.Errorf("store: decisions of [%s, %s): %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return nil
}

// CountBetween implements Rows.
func (g *group) CountBetween(ctx context.Context, from, to time.Time) (int, error) {
	if g.isClosed() {
		return 0, ErrClosed
	}
	n, err := g.b.countBetween(ctx, from.UTC(), to.UTC())
	if err != nil {
		return 0, fmt.Errorf("store: count decisions: %w", err)
	}
	return n, nil
}

const rowColumns = `d.agency, d.query_type, d.outcome, d.reason, d.message_type, d.subject_key, d.decided_at, d.latency_us, coalesce(l.idx, -1)
	FROM decisions d LEFT JOIN tlog_leaves l ON l.key = d.digest`

func (s *sqliteDB) rows(ctx context.Context, from, to time.Time, fn func(Row) error) error {
	rs, err := s.db.QueryContext(ctx, `SELECT `+rowColumns+` WHERE d.decided_at >= ? AND d.decided_at < ? ORDER BY d.decided_at, d.digest`,
		from.Format(sqliteTime), to.Format(sqliteTime))
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var r Row
		var at string
		if err := rs.Scan(&r.Agency, &r.Query, &r.Outcome, &r.Reason, &r.Type, &r.SubjectKey, &at, &r.LatencyMicros, &r.LeafIndex); err != nil {
			return err
		}
		if r.DecidedAt, err = time.Parse(sqliteTime, at); err != nil {
			return fmt.Errorf("stored decided_at %q: %w", at, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rs.Err()
}

func (s *sqliteDB) countBetween(ctx context.Context, from, to time.Time) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE decided_at >= ? AND decided_at < ?`, from.Format(sqliteTime), to.Format(sqliteTime)).Scan(&n)
	return n, err
}

func (p *postgresDB) rows(ctx context.Context, from, to time.Time, fn func(Row) error) error {
	rs, err := p.pool.Query(ctx, `SELECT `+rowColumns+` WHERE d.decided_at >= $1 AND d.decided_at < $2 ORDER BY d.decided_at, d.digest`, from, to)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var r Row
		if err := rs.Scan(&r.Agency, &r.Query, &r.Outcome, &r.Reason, &r.Type, &r.SubjectKey, &r.DecidedAt, &r.LatencyMicros, &r.LeafIndex); err != nil {
			return err
		}
		r.DecidedAt = r.DecidedAt.UTC()
		if err := fn(r); err != nil {
			return err
		}
	}
	return rs.Err()
}

func (p *postgresDB) countBetween(ctx context.Context, from, to time.Time) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE decided_at >= $1 AND decided_at < $2`, from, to).Scan(&n)
	return n, err
}
