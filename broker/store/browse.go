package store

import (
	"context"
	"fmt"
	"time"
)

// Browse is what the auditor console lists of the decisions: a page of
// them, newest first, by agency, period, outcome and reason. It never
// searches by subject (BySubject takes a keyed digest, not a person).
type Browse interface {
	Browse(ctx context.Context, f BrowseFilter) ([]Decision, error)
}

// MaxBrowse bounds one page of Browse.
const MaxBrowse = 500

// BrowseFilter selects decisions; an empty field does not filter. From and
// To bound decided_at to [From, To) when set.
type BrowseFilter struct {
	Agency, Outcome, Reason string
	From, To                time.Time
	// Limit is the page size (1..MaxBrowse), Offset the decisions skipped
	// (at most 1,000,000).
	Limit, Offset int
}

// Browse implements Browse.
func (g *group) Browse(ctx context.Context, f BrowseFilter) ([]Decision, error) {
	if g.isClosed() {
		return nil, ErrClosed
	}
	if f.Limit <= 0 || f.Limit > MaxBrowse || f.Offset < 0 || f.Offset > 1_000_000 {
		return nil, fmt.Errorf("store: %w: page of %d from %d (limit 1..%d, offset 0..1000000)", ErrInvalid, f.Limit, f.Offset, MaxBrowse)
	}
	from, to := f.From, f.To
	if from.IsZero() {
		from = time.Unix(0, 0)
	}
	if to.IsZero() {
		to = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	ds, err := g.b.browse(ctx, f.Agency, f.Outcome, f.Reason, from.UTC(), to.UTC(), f.Limit, f.Offset)
	if err != nil {
		return nil, fmt.Errorf("store: browse decisions: %w", err)
	}
	return ds, nil
}

func (s *sqliteDB) browse(ctx context.Context, agency, outcome, reason string, from, to time.Time, limit, offset int) ([]Decision, error) {
	return s.selectDecisions(ctx, `WHERE (? = '' OR d.agency = ?) AND (? = '' OR d.outcome = ?) AND (? = '' OR d.reason = ?)
		AND d.decided_at >= ? AND d.decided_at < ? ORDER BY d.decided_at DESC, d.digest LIMIT ? OFFSET ?`,
		agency, agency, outcome, outcome, reason, reason, from.Format(sqliteTime), to.Format(sqliteTime), limit, offset)
}

func (p *postgresDB) browse(ctx context.Context, agency, outcome, reason string, from, to time.Time, limit, offset int) ([]Decision, error) {
	return p.selectDecisions(ctx, `WHERE ($1 = '' OR d.agency = $1) AND ($2 = '' OR d.outcome = $2) AND ($3 = '' OR d.reason = $3)
		AND d.decided_at >= $4 AND d.decided_at < $5 ORDER BY d.decided_at DESC, d.digest LIMIT $6 OFFSET $7`,
		agency, outcome, reason, from, to, limit, offset)
}
